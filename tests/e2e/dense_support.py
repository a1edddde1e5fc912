"""A dense note for the editor's e2e tests: the Chia criterion NCT00050349_inc (CC BY 4.0, Kury et al.
2020; tests/fixtures/chia/PROVENANCE.md), 54 spans with overlaps and 28 relations, as undecided
pre-labels of a refine_llm set, under the schema its annotation.conf makes (24 labels and more).

The note goes through the importer's own reader (read_upload, schema_for_corpus), so the world is
what an admin who uploaded the corpus would give a physician.
"""

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import AnnotationSet, Document, PreAnnotationRun, Project, Relation, Span, User
from app.domain.brat import parse_annotation_conf
from app.domain.brat_import import read_brat_document
from app.domain.corpus_schema import schema_for_corpus
from app.domain.spans import SpanData
from app.domain.uploads import UploadLimits, read_upload
from app.domain.vocabulary import Condition, SetOrigin, SetStatus, SpanStatus
from app.services.annotation_sets import add_spans, assign

CHIA = Path(__file__).resolve().parents[1] / "fixtures" / "chia" / "chia_with_scope"
DENSE_NOTE = "NCT00050349_inc"
# Pre-label confidences, in .ann order: some sure, some doubtful (below 0.5), as a run gives them.
CONFIDENCES = (0.95, 0.82, 0.64, 0.41, 0.27)


@dataclass
class DenseWorld:
    tag: str
    username: str
    user_id: int
    project_id: int
    set_id: int
    text: str
    labels: list[str]
    relation_types: list[str]
    uids: dict[str, str]  # brat id (T12) -> span uid in the set
    relation_uids: dict[str, str]  # brat id (R3) -> relation uid


def dense_contents():
    files = [(f"{DENSE_NOTE}.{ext}", (CHIA / f"{DENSE_NOTE}.{ext}").read_bytes()) for ext in ("txt", "ann")]
    files.append(("annotation.conf", (CHIA / "annotation.conf").read_bytes()))
    contents = read_upload(files, UploadLimits(), read_brat_document)
    assert not contents.problems, contents.problems
    conf = parse_annotation_conf(contents.annotation_conf or "")
    schema, _ = schema_for_corpus(conf, contents.documents)
    return contents.documents[0], schema


def build_dense_world(
    sessions: sessionmaker[Session],
    password_hash: str,
    *,
    study_settings: dict | None = None,
    questions: list[dict] | None = None,
) -> DenseWorld:
    document_in, schema = dense_contents()
    if questions:
        schema = {**schema, "document_questions": questions}
    tag = uuid.uuid4().hex[:10]
    with sessions.begin() as db:
        me = User(username=f"dense-{tag}", display_name=f"Dr Dense {tag}", role="annotator",
                  password_hash=password_hash)  # fmt: skip
        project = Project(name=f"Dense e2e {tag}", label_schema=schema, study_settings=study_settings or {})
        db.add_all([me, project])
        db.flush()
        run = PreAnnotationRun(
            project_id=project.id, name=f"llm {tag}", method="imported", status="succeeded"
        )
        document = Document(project_id=project.id, external_id=f"{DENSE_NOTE}-{tag}", text=document_in.text,
                            sha256=hashlib.sha256(document_in.text.encode()).hexdigest())  # fmt: skip
        db.add_all([run, document])
        db.flush()
        pre = AnnotationSet(document_id=document.id, origin=SetOrigin.pre_annotation.value,
                            pre_annotation_run_id=run.id, status=SetStatus.submitted.value)  # fmt: skip
        db.add(pre)
        db.flush()
        spans = [
            SpanData(s.label, s.fragments, confidence=CONFIDENCES[i % len(CONFIDENCES)])
            for i, s in enumerate(document_in.spans)
        ]
        rows = add_spans(db, pre, spans, status=SpanStatus.pending)
        by_brat = {s.id: row for s, row in zip(document_in.spans, rows, strict=True)}
        relations = []
        for r in document_in.relations:
            if r.head in by_brat and r.tail in by_brat:
                relation = Relation(
                    annotation_set_id=pre.id,
                    type=r.type,
                    head_span_id=by_brat[r.head].id,
                    tail_span_id=by_brat[r.tail].id,
                    status=SpanStatus.pending.value,
                )
                db.add(relation)
                relations.append((r.id, relation))
        db.flush()
        assignment = assign(db, project_id=project.id, document_id=document.id, annotator_id=me.id,
                            condition=Condition.refine_llm, queue_position=0, base_set=pre)  # fmt: skip
        return DenseWorld(
            tag=tag,
            username=me.username,
            user_id=me.id,
            project_id=project.id,
            set_id=assignment.annotation_set_id,
            text=document_in.text,
            labels=[e["name"] for e in schema["entity_types"]],
            relation_types=[r["name"] for r in schema["relation_types"]],
            uids={brat: row.uid for brat, row in by_brat.items()},
            relation_uids={brat: relation.uid for brat, relation in relations},
        )


def drop_dense_world(sessions: sessionmaker[Session], world: DenseWorld) -> None:
    with sessions.begin() as db:
        documents = select(Document.id).where(Document.project_id == world.project_id)
        db.execute(delete(AnnotationSet).where(AnnotationSet.document_id.in_(documents),
                                               AnnotationSet.base_set_id.is_not(None)))  # fmt: skip
        db.execute(delete(Project).where(Project.id == world.project_id))
        db.execute(delete(User).where(User.id == world.user_id))


def stored_relations(sessions, set_id: int) -> dict[str, tuple[str, str]]:
    """uid -> (type, status) of the set's relations in PostgreSQL."""
    with sessions() as db:
        rows = db.execute(select(Relation.uid, Relation.type, Relation.status)
                          .where(Relation.annotation_set_id == set_id)).all()  # fmt: skip
    return {uid: (type_, status) for uid, type_, status in rows}


def stored_labels(sessions, set_id: int) -> dict[str, tuple[str, str]]:
    with sessions() as db:
        rows = db.execute(
            select(Span.uid, Span.label, Span.status).where(Span.annotation_set_id == set_id)
        ).all()
    return {uid: (label, status) for uid, label, status in rows}
