"""A project ready for a study: notes with LLM pre-labels from the run marked as the study's base."""

import hashlib

from sqlalchemy.orm import Session

from app.db.models import AnnotationSet, Document, PreAnnotationRun, Project
from app.demo.seed import MEDICATION_SCHEMA
from app.domain.spans import Fragment, SpanData
from app.domain.vocabulary import SetOrigin, SetStatus, SpanStatus
from app.services.annotation_sets import add_spans


def project_with_pre_labels(db: Session, name: str, tag: str, documents: int) -> Project:
    """Inside the caller's transaction: ``documents`` short notes, each with one pending Drug pre-label
    ("aspirin") in a set of the study's base run."""
    project = Project(name=name, label_schema=MEDICATION_SCHEMA)
    db.add(project)
    db.flush()
    run = PreAnnotationRun(
        project_id=project.id, name="llm", method="imported", status="succeeded", is_study_base=True
    )
    db.add(run)
    db.flush()
    for i in range(documents):
        text = f"Note {tag}-{i}: aspirin 81 mg daily."
        document = Document(
            project_id=project.id,
            external_id=f"{tag}-{i:03}",
            text=text,
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        db.add(document)
        db.flush()
        pre = AnnotationSet(
            document_id=document.id,
            origin=SetOrigin.pre_annotation.value,
            pre_annotation_run_id=run.id,
            status=SetStatus.submitted.value,
        )
        db.add(pre)
        db.flush()
        start = text.index("aspirin")
        add_spans(db, pre, [SpanData("Drug", (Fragment(start, start + 7),))], SpanStatus.pending)
    return project
