"""relations pre-labelled like spans (status, confidence, accept and reject events); concept
vocabularies with trigram search

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = (
    "open", "close", "visible", "hidden", "activity", "add", "delete", "modify", "relabel", "accept", "reject",
    "accept_all", "undo", "redo", "relation_add", "relation_delete", "attribute_set", "concept_set", "answer",
    "note", "submit", "skip",
)  # fmt: skip
KINDS_AFTER = (*KINDS_BEFORE, "relation_accept", "relation_reject")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    op.add_column(
        "relations", sa.Column("status", sa.String(length=16), server_default="confirmed", nullable=False)
    )
    op.add_column("relations", sa.Column("confidence", sa.Double(), nullable=True))
    op.create_check_constraint("status", "relations", "status IN ('pending', 'confirmed')")
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_AFTER))

    # Fuzzy concept search; an external server needs the extension installed (pg_trgm ships with PostgreSQL).
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "vocabularies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("system", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=100), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("source_name", sa.String(length=300), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("concept_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("term_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("uploaded_by", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_vocabularies_uploaded_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vocabularies")),
        sa.UniqueConstraint("name", name=op.f("uq_vocabularies_name")),
    )
    op.create_table(
        "concepts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vocabulary_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("preferred_term", sa.Text(), nullable=False),
        sa.Column("semantic_type", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["vocabulary_id"],
            ["vocabularies.id"],
            name=op.f("fk_concepts_vocabulary_id_vocabularies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concepts")),
        sa.UniqueConstraint("vocabulary_id", "code", name=op.f("uq_concepts_vocabulary_id_code")),
    )
    op.create_table(
        "concept_terms",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("concept_id", sa.Integer(), nullable=False),
        sa.Column("vocabulary_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("normalised", sa.Text(), nullable=False),
        sa.Column("is_preferred", sa.Boolean(), server_default="false", nullable=False),
        sa.ForeignKeyConstraint(
            ["concept_id"],
            ["concepts.id"],
            name=op.f("fk_concept_terms_concept_id_concepts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vocabulary_id"],
            ["vocabularies.id"],
            name=op.f("fk_concept_terms_vocabulary_id_vocabularies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_concept_terms")),
    )
    op.create_index(op.f("ix_concept_terms_concept_id"), "concept_terms", ["concept_id"])
    op.create_index(
        "ix_concept_terms_vocabulary_normalised",
        "concept_terms",
        ["vocabulary_id", "normalised"],
        postgresql_ops={"normalised": "text_pattern_ops"},
    )
    op.create_index(
        "ix_concept_terms_normalised_trgm",
        "concept_terms",
        ["normalised"],
        postgresql_using="gin",
        postgresql_ops={"normalised": "gin_trgm_ops"},
    )
    op.create_table(
        "project_vocabularies",
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("vocabulary_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_vocabularies_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["vocabulary_id"],
            ["vocabularies.id"],
            name=op.f("fk_project_vocabularies_vocabulary_id_vocabularies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "vocabulary_id", name=op.f("pk_project_vocabularies")),
    )


def downgrade() -> None:
    op.drop_table("project_vocabularies")
    op.drop_index("ix_concept_terms_normalised_trgm", table_name="concept_terms")
    op.drop_index("ix_concept_terms_vocabulary_normalised", table_name="concept_terms")
    op.drop_index(op.f("ix_concept_terms_concept_id"), table_name="concept_terms")
    op.drop_table("concept_terms")
    op.drop_table("concepts")
    op.drop_table("vocabularies")
    op.execute("DELETE FROM edit_events WHERE kind IN ('relation_accept', 'relation_reject')")
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_BEFORE))
    op.drop_constraint("status", "relations", type_="check")
    op.drop_column("relations", "confidence")
    op.drop_column("relations", "status")
