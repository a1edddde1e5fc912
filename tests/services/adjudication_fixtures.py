"""A note two physicians annotated differently, and a lead to adjudicate it.

ana and ben agree on Metformin, its strength and the relation between them, and on the primary
diagnosis; they dispute "diabetes" (Reason or ADE) and the severity; only ana marked "Nausea".
"""

import hashlib
from dataclasses import dataclass

from app.db.models import AnnotationSet, Document, DocumentAnswer, Project, ProjectMember, Relation, User
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import SetOrigin, SetStatus
from app.services.annotation_sets import add_spans
from tests.services.editing_fixtures import ANNOTATION_SCHEMA

TEXT = "Metformin 500 mg for diabetes. Aspirin 81 mg daily. Nausea after aspirin."
METFORMIN = (0, 9)
STRENGTH = (10, 16)
DIABETES = (TEXT.index("diabetes"), TEXT.index("diabetes") + 8)
ASPIRIN = (TEXT.index("Aspirin"), TEXT.index("Aspirin") + 7)
NAUSEA = (TEXT.index("Nausea"), TEXT.index("Nausea") + 6)


@dataclass
class AdjudicationWorld:
    project_id: int
    document_id: int
    lead_id: int
    annotator_ids: dict[str, int]
    sets: dict[str, int]  # physician login -> submitted set


def _span(label: str, extent: tuple[int, int], **attributes) -> SpanData:
    return SpanData(label, (Fragment(*extent),), attributes=attributes)


def physician_set(db, document_id: int, annotator_id: int, spans: list[SpanData], relations, answers) -> int:
    annotation_set = AnnotationSet(
        document_id=document_id,
        origin=SetOrigin.annotator.value,
        annotator_id=annotator_id,
        condition="scratch",
        status=SetStatus.submitted.value,
    )
    db.add(annotation_set)
    db.flush()
    rows = add_spans(db, annotation_set, spans)
    for relation_type, head, tail in relations:
        db.add(
            Relation(
                annotation_set_id=annotation_set.id,
                type=relation_type,
                head_span_id=rows[head].id,
                tail_span_id=rows[tail].id,
            )
        )
    for key, value in answers.items():
        db.add(DocumentAnswer(annotation_set_id=annotation_set.id, question_key=key, value=value))
    db.flush()
    return annotation_set.id


def add_note(db, project_id: int, external_id: str, text: str = TEXT) -> Document:
    document = Document(
        project_id=project_id,
        external_id=external_id,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )
    db.add(document)
    db.flush()
    return document


def build_adjudication_world(sessions, password_hashes) -> AdjudicationWorld:
    with sessions.begin() as db:
        lead = User(username="lead", display_name="Lead", role="lead", password_hash=password_hashes["lead"])
        ana = User(
            username="ana",
            display_name="Dr Ana",
            role="annotator",
            password_hash=password_hashes["annotator"],
        )
        ben = User(
            username="ben",
            display_name="Dr Ben",
            role="annotator",
            password_hash=password_hashes["annotator"],
        )
        project = Project(name="Adjudication", label_schema=ANNOTATION_SCHEMA)
        db.add_all([lead, ana, ben, project])
        db.flush()
        db.add(ProjectMember(project_id=project.id, user_id=lead.id))  # leads see only their projects
        document = add_note(db, project.id, "note-1")
        sets = {
            "ana": physician_set(
                db,
                document.id,
                ana.id,
                [
                    _span("Drug", METFORMIN, negation="affirmed"),
                    _span("Strength", STRENGTH),
                    _span("Reason", DIABETES, certainty="certain"),
                    _span("Drug", ASPIRIN),
                    _span("ADE", NAUSEA),
                ],
                [("Strength-Drug", 1, 0), ("Reason-Drug", 2, 0)],
                {"primary_diagnosis": "diabetes", "severity": "mild"},
            ),
            "ben": physician_set(
                db,
                document.id,
                ben.id,
                [
                    _span("Drug", METFORMIN, negation="affirmed"),
                    _span("Strength", STRENGTH),
                    _span("ADE", DIABETES, certainty="possible"),
                    _span("Drug", ASPIRIN),
                ],
                [("Strength-Drug", 1, 0)],
                {"primary_diagnosis": "diabetes", "severity": "moderate"},
            ),
        }
        return AdjudicationWorld(project.id, document.id, lead.id, {"ana": ana.id, "ben": ben.id}, sets)
