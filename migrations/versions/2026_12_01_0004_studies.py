"""studies: committed designs, the calibration gate, assignments waiting for release or their base

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pre_annotation_run_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('calibration', 'released')", name=op.f("ck_studies_status")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_studies_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pre_annotation_run_id"],
            ["pre_annotation_runs.id"],
            name=op.f("fk_studies_pre_annotation_run_id_pre_annotation_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_studies_project_id_projects"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
    )
    op.create_index(op.f("ix_studies_project_id"), "studies", ["project_id"], unique=False)
    op.add_column("assignments", sa.Column("study_id", sa.Integer(), nullable=True))
    op.add_column("assignments", sa.Column("base_assignment_id", sa.Integer(), nullable=True))
    op.add_column(
        "assignments",
        sa.Column("released_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True),
    )
    op.create_index(op.f("ix_assignments_study_id"), "assignments", ["study_id"], unique=False)
    op.create_index(
        op.f("ix_assignments_base_assignment_id"), "assignments", ["base_assignment_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_assignments_study_id_studies"),
        "assignments",
        "studies",
        ["study_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_foreign_key(
        op.f("fk_assignments_base_assignment_id_assignments"),
        "assignments",
        "assignments",
        ["base_assignment_id"],
        ["id"],
        ondelete="RESTRICT",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_assignments_base_assignment_id_assignments"), "assignments", type_="foreignkey"
    )
    op.drop_constraint(op.f("fk_assignments_study_id_studies"), "assignments", type_="foreignkey")
    op.drop_index(op.f("ix_assignments_base_assignment_id"), table_name="assignments")
    op.drop_index(op.f("ix_assignments_study_id"), table_name="assignments")
    op.drop_column("assignments", "released_at")
    op.drop_column("assignments", "base_assignment_id")
    op.drop_column("assignments", "study_id")
    op.drop_index(op.f("ix_studies_project_id"), table_name="studies")
    op.drop_table("studies")
