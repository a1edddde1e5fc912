"""job queue: procrastinate's schema, in the same PostgreSQL

procrastinate is pinned in pyproject.toml; its schema file for that version is applied here so
that `clinann db upgrade` is the one way every table is made. A later procrastinate upgrade gets
its own revision applying procrastinate's migration files.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Straight to psycopg: the schema has literal '%' that a DBAPI parameter pass would parse.
    op.get_bind().connection.driver_connection.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, "
        "procrastinate_jobs, procrastinate_workers CASCADE"
    )
    # Functions and types carry version suffixes; drop whatever procrastinate made.
    op.execute(
        """
        DO $$
        DECLARE item record;
        BEGIN
          FOR item IN
            SELECT p.oid::regprocedure AS signature FROM pg_proc p
            JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
          LOOP
            EXECUTE 'DROP FUNCTION IF EXISTS ' || item.signature || ' CASCADE';
          END LOOP;
          FOR item IN
            SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%'
              AND t.typtype IN ('e', 'c')
          LOOP
            EXECUTE 'DROP TYPE IF EXISTS ' || quote_ident(item.typname) || ' CASCADE';
          END LOOP;
        END $$;
        """
    )
