"""Migrations are the only source of the schema: they round-trip and match the models."""

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import app.db.models  # noqa: F401  (tables on the metadata)
from app.db.base import Base
from app.db.migrate import downgrade, upgrade


def _tables(url: str) -> set[str]:
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq) as connection:
        return {
            row[0]
            for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }


def _differences(url: str) -> list:
    def include_name(name, type_, parent_names):
        return not (type_ == "table" and name and name.startswith("procrastinate_"))

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_name": include_name, "compare_type": True, "compare_server_default": True},
            )
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade_and_no_drift(postgres):
    url = postgres.create_database("clinann_migrations")
    upgrade(url)
    after_first = _tables(url)
    assert {
        "users",
        "documents",
        "spans",
        "span_fragments",
        "edit_events",
        "audit_events",
        "procrastinate_jobs",
    } <= after_first
    downgrade(url, "base")
    assert _tables(url) == {"alembic_version"}
    upgrade(url)
    assert _tables(url) == after_first
    assert _differences(url) == []


def test_every_model_table_is_made_by_the_migrations(database_url):
    assert {table.name for table in Base.metadata.sorted_tables} <= _tables(database_url)
