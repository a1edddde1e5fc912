"""adjudication: gold sets edited by leads, ambiguous gold spans keeping their label distribution,
and each note's agreement kept for the adjudication queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = (
    "open", "close", "visible", "hidden", "activity", "add", "delete", "modify", "relabel", "accept", "reject",
    "accept_all", "undo", "redo", "relation_add", "relation_delete", "attribute_set", "concept_set", "answer",
    "note", "submit", "skip", "relation_accept", "relation_reject",
)  # fmt: skip
KINDS_AFTER = (*KINDS_BEFORE, "propose", "adopt", "ambiguous", "reopen")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    # How many physicians gave each label (and "O" for none) where gold keeps a genuinely ambiguous span.
    op.add_column("spans", sa.Column("label_distribution", postgresql.JSONB(), nullable=True))
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_AFTER))
    # One adjudicated gold set per note: every lead continues the same one (imported gold has no adjudicator).
    op.create_index(
        "uq_annotation_sets_adjudicated_gold",
        "annotation_sets",
        ["document_id"],
        unique=True,
        postgresql_where=sa.text("origin = 'gold' AND annotator_id IS NOT NULL"),
    )
    op.create_table(
        "adjudication_statistics",
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("candidates", sa.Integer(), nullable=False),
        sa.Column("disputed", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_adjudication_statistics_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("document_id", name=op.f("pk_adjudication_statistics")),
    )


def downgrade() -> None:
    op.drop_table("adjudication_statistics")
    op.drop_index("uq_annotation_sets_adjudicated_gold", table_name="annotation_sets")
    op.execute(f"DELETE FROM edit_events WHERE NOT ({_kinds(KINDS_BEFORE)})")
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_BEFORE))
    op.drop_column("spans", "label_distribution")
