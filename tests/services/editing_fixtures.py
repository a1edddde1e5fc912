"""A small project for editing tests: one note text, and an annotator's set in each condition."""

import hashlib
from dataclasses import dataclass

from app.db.models import AnnotationSet, Document, PreAnnotationRun, Project, User
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services.annotation_sets import add_spans, assign

# Emoji outside the BMP, a combining accent, CRLF, a tab and a leading byte-order mark: offsets are
# code points of exactly this text.
NOTE = "\ufeffPt 😀 given Metformin 500 mg PO BID.\r\nCafe\u0301: aspirin\t81 mg daily for 7 days.\r\n"
METFORMIN = NOTE.index("Metformin")
ASPIRIN = NOTE.index("aspirin")


@dataclass
class EditingWorld:
    project_id: int
    annotator_id: int
    other_annotator_id: int
    sets: dict[str, int]  # condition -> the annotator's set id
    pre_set_id: int


SEVERITIES = ["mild", "moderate", "severe"]
FINDINGS = ["fever", "rash", "nausea"]
# The editing project's entity types, with relations, span attributes and one question of each kind.
ANNOTATION_SCHEMA = {
    "entity_types": [
        {"name": "Drug", "color": "#1f77b4", "hotkey": "d"},
        {"name": "Strength", "color": "#ff7f0e", "hotkey": "s"},
        {"name": "Reason", "color": "#2ca02c", "hotkey": "r"},
        {"name": "ADE", "color": "#d62728", "hotkey": "a"},
    ],
    "relation_types": [
        {"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]},
        {"name": "Reason-Drug", "head_types": ["Reason", "ADE"], "tail_types": ["Drug"]},
    ],
    "span_attributes": [
        {"name": "negation", "values": ["affirmed", "negated"], "default": "affirmed"},
        {"name": "certainty", "values": ["certain", "possible"], "applies_to": ["Reason", "ADE"]},
    ],
    "document_questions": [
        {"key": "primary_diagnosis", "prompt": "Primary diagnosis", "kind": "text", "required": True},
        {"key": "severity", "prompt": "Severity", "kind": "choice", "choices": SEVERITIES},
        {"key": "findings", "prompt": "Findings", "kind": "multi_choice", "choices": FINDINGS},
        {"key": "confidence", "prompt": "Confidence", "kind": "scale", "scale_min": 1, "scale_max": 5},
        {"key": "evidence", "prompt": "Supporting evidence", "kind": "evidence"},
    ],
}  # fmt: skip


def build_world(
    sessions, password_hash: str, study_settings: dict | None = None, label_schema: dict | None = None
) -> EditingWorld:
    with sessions.begin() as db:
        annotator = User(username="dr.a", display_name="Dr A", role="annotator", password_hash=password_hash)
        other = User(username="dr.b", display_name="Dr B", role="annotator", password_hash=password_hash)
        project = Project(
            name="Editing",
            label_schema=label_schema or MEDICATION_SCHEMA,
            study_settings=study_settings or {},
        )
        db.add_all([annotator, other, project])
        db.flush()
        run = PreAnnotationRun(project_id=project.id, name="llm", method="imported", status="succeeded")
        db.add(run)
        documents = {}
        for condition in Condition:
            documents[condition] = Document(
                project_id=project.id,
                external_id=f"note-{condition.value}",
                text=NOTE,
                sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
            )
            db.add(documents[condition])
        db.flush()
        pre = AnnotationSet(
            document_id=documents[Condition.refine_llm].id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=run.id,
            status=SetStatus.submitted.value,
        )
        human = AnnotationSet(
            document_id=documents[Condition.refine_human].id,
            origin=SetOrigin.annotator.value,
            annotator_id=other.id,
            condition=Condition.scratch.value,
            status=SetStatus.submitted.value,
        )
        db.add_all([pre, human])
        db.flush()
        add_spans(
            db,
            pre,
            [
                SpanData("Drug", (Fragment(METFORMIN, METFORMIN + 9),), confidence=0.9),
                SpanData("Strength", (Fragment(METFORMIN + 10, METFORMIN + 16),), confidence=0.8),
                SpanData("Drug", (Fragment(ASPIRIN, ASPIRIN + 7),), confidence=0.7),
            ],
            status=SpanStatus.pending,
        )
        add_spans(db, human, [SpanData("Drug", (Fragment(METFORMIN, METFORMIN + 9),))])
        bases = {Condition.scratch: None, Condition.refine_llm: pre, Condition.refine_human: human}
        sets = {}
        for position, condition in enumerate(Condition):
            assignment = assign(
                db,
                project_id=project.id,
                document_id=documents[condition].id,
                annotator_id=annotator.id,
                condition=condition,
                queue_position=position,
                base_set=bases[condition],
            )
            sets[condition.value] = assignment.annotation_set_id
        return EditingWorld(project.id, annotator.id, other.id, sets, pre.id)
