"""The closed vocabularies of the domain: roles, study conditions, statuses, edit kinds.

The database stores the string values and checks them with constraints built from these enums.
"""

from enum import StrEnum


class Role(StrEnum):
    admin = "admin"
    lead = "lead"
    annotator = "annotator"


class Condition(StrEnum):
    """Study condition of an annotator's set (shared/design/metrics.md, Time)."""

    scratch = "scratch"
    refine_llm = "refine_llm"
    refine_human = "refine_human"


class SetOrigin(StrEnum):
    """Where an annotation set comes from."""

    pre_annotation = "pre_annotation"  # an LLM, lexicon or imported model run
    annotator = "annotator"  # one physician's work
    gold = "gold"  # adjudicated by a lead
    imported = "imported"  # annotations uploaded from a file (brat, JSONL)


class SetStatus(StrEnum):
    open = "open"
    submitted = "submitted"
    skipped = "skipped"


class SpanStatus(StrEnum):
    """A pre-label stays `pending` until the physician accepts or changes it."""

    pending = "pending"
    confirmed = "confirmed"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


class StudyStatus(StrEnum):
    """A study runs its calibration batch first; the lead releases the rest after reading agreement."""

    calibration = "calibration"
    released = "released"


class BatchStatus(StrEnum):
    """A batch with PHI-screen hits is held until an admin releases (with a reason) or rejects it."""

    held = "held"
    accepted = "accepted"
    rejected = "rejected"


class EditKind(StrEnum):
    """Kinds of edit events: the action log of an annotation set (shared/design/domain.md)."""

    open = "open"
    close = "close"
    visible = "visible"
    hidden = "hidden"
    activity = "activity"
    add = "add"
    delete = "delete"
    modify = "modify"
    relabel = "relabel"
    accept = "accept"
    reject = "reject"
    accept_all = "accept_all"
    reject_all = "reject_all"  # the pre-labels named in `uids` (the ones the physician saw), at once
    undo = "undo"
    redo = "redo"
    relation_add = "relation_add"
    relation_delete = "relation_delete"
    relation_accept = "relation_accept"
    relation_reject = "relation_reject"
    attribute_set = "attribute_set"
    concept_set = "concept_set"
    answer = "answer"
    note = "note"
    submit = "submit"
    skip = "skip"
    # adjudication (gold sets only)
    propose = "propose"  # the gold set's first event: what every physician agreed on
    adopt = "adopt"  # keep a physician's version (a span with its attributes, or a relation)
    ambiguous = "ambiguous"  # keep a gold span as genuinely ambiguous, with its label distribution
    reopen = "reopen"  # a submitted gold set opened again for more adjudication


def values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]
