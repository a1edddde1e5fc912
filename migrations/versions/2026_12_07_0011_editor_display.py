"""the physician's choice of label display in the editor (full or compact), kept with the account

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("editor_display", sa.String(8), server_default="full", nullable=False))
    op.create_check_constraint(
        op.f("ck_users_editor_display_known"), "users", "editor_display IN ('full', 'compact')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_editor_display_known"), "users", type_="check")
    op.drop_column("users", "editor_display")
