"""reject_all: the undecided pre-labels a physician saw, rejected in one edit (issue 19)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = (
    "open", "close", "visible", "hidden", "activity", "add", "delete", "modify", "relabel", "accept", "reject",
    "accept_all", "undo", "redo", "relation_add", "relation_delete", "attribute_set", "concept_set", "answer",
    "note", "submit", "skip", "relation_accept", "relation_reject", "propose", "adopt", "ambiguous", "reopen",
)  # fmt: skip
KINDS_AFTER = (*KINDS_BEFORE, "reject_all")


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_AFTER))


def downgrade() -> None:
    op.execute(f"DELETE FROM edit_events WHERE NOT ({_kinds(KINDS_BEFORE)})")
    op.drop_constraint("kind", "edit_events", type_="check")
    op.create_check_constraint("kind", "edit_events", _kinds(KINDS_BEFORE))
