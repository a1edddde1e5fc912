"""pre-annotation runs: response cache, study base, per-note attempts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "llm_responses",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("response_text", sa.Text(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_llm_responses")),
    )
    op.add_column(
        "pre_annotation_runs",
        sa.Column("is_study_base", sa.Boolean(), server_default="false", nullable=False),
    )
    op.create_index(
        "uq_pre_annotation_runs_one_study_base",
        "pre_annotation_runs",
        ["project_id"],
        unique=True,
        postgresql_where=sa.text("is_study_base"),
    )
    op.add_column(
        "pre_annotation_results", sa.Column("attempts", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "pre_annotation_results", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("pre_annotation_results", "started_at")
    op.drop_column("pre_annotation_results", "attempts")
    op.drop_index(
        "uq_pre_annotation_runs_one_study_base",
        table_name="pre_annotation_runs",
        postgresql_where=sa.text("is_study_base"),
    )
    op.drop_column("pre_annotation_runs", "is_study_base")
    op.drop_table("llm_responses")
