"""The demo project: n2c2 2018 medication schema, synthetic discharge summaries, pre-labels,
five users and assignments in the three study conditions, and (for `clinann demo`) a finished study
by simulated physicians on some of the notes (app/demo/simulated.py). Loading it twice changes nothing.
"""

import hashlib
from importlib import resources

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Assignment,
    Batch,
    Document,
    PreAnnotationRun,
    Project,
    ProjectMember,
    Relation,
    User,
)
from app.domain.brat import check_offsets, parse_ann
from app.domain.label_schema import parse_label_schema, parse_study_settings
from app.domain.spans import SpanData
from app.domain.vocabulary import BatchStatus, Condition, RunStatus, SetOrigin, SetStatus, SpanStatus
from app.services import audit
from app.services.annotation_sets import add_spans, assign
from app.services.users import hash_password

DEMO_PROJECT = "Medication extraction (n2c2 2018 demo)"
# (role, user name, password): printed by `clinann demo`; demo data only.
DEMO_LOGINS = [
    ("admin", "admin", "demo-admin"),
    ("lead", "lead", "demo-lead"),
    ("annotator", "dr.adams", "demo-adams"),
    ("annotator", "dr.baker", "demo-baker"),
    ("annotator", "dr.chen", "demo-chen"),
]
DISPLAY_NAMES = {
    "admin": "Demo Admin",
    "lead": "Demo Lead",
    "dr.adams": "Dr. Adams",
    "dr.baker": "Dr. Baker",
    "dr.chen": "Dr. Chen",
}

_ENTITY_TYPES = [
    ("Drug", "#1f77b4", "d", "Medication name, brand or generic."),
    ("Strength", "#ff7f0e", "s", "Amount of drug in one unit: '25 mg'."),
    ("Dosage", "#2ca02c", "o", "Number of units taken: '2 tablets'."),
    ("Frequency", "#d62728", "f", "How often: 'twice daily', 'BID'."),
    ("Route", "#9467bd", "r", "Path into the body: 'PO', 'IV'."),
    ("Duration", "#8c564b", "u", "How long: 'for 7 days'."),
    ("Form", "#e377c2", "m", "Physical form: 'tablet', 'inhaler'."),
    ("Reason", "#17becf", "e", "The condition the drug is given for."),
    ("ADE", "#bcbd22", "a", "An adverse event caused by the drug."),
]
MEDICATION_SCHEMA = {
    "entity_types": [{"name": n, "color": c, "hotkey": k, "description": d} for n, c, k, d in _ENTITY_TYPES],
    "relation_types": [
        {"name": f"{n}-Drug", "head_types": [n], "tail_types": ["Drug"]} for n, *_ in _ENTITY_TYPES[1:]
    ],
    "span_attributes": [
        {
            "name": "certainty",
            "values": ["certain", "possible"],
            "default": "certain",
            "applies_to": ["Reason", "ADE"],
        },
    ],
    "document_questions": [
        {"key": "primary_diagnosis", "prompt": "Primary discharge diagnosis", "kind": "text"},
        {
            "key": "confidence",
            "prompt": "How confident are you in this annotation?",
            "kind": "scale",
            "scale_min": 1,
            "scale_max": 5,
        },
    ],
}
GUIDELINES = """Annotate every medication mention and its attributes (n2c2 2018 track 2).
- Drug: the medication name, brand or generic, including in lists.
- Strength, Dosage, Frequency, Route, Duration, Form: link each to its Drug.
- Reason: the condition the drug is given for. ADE: harm attributed to the drug.
Pre-labels from the language model are suggestions: accept, fix or delete each one."""


def _demo_notes() -> list[tuple[str, str, str, str]]:
    """(external id, text, gold .ann, pre-label .ann) for every demo note, checked."""
    folder = resources.files("app.demo") / "notes"
    notes = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".txt"):
            continue
        stem = entry.name[: -len(".txt")]
        # bytes, then decode: read_text would turn a CRLF into LF and shift every offset after it
        text = entry.read_bytes().decode("utf-8")
        gold = (folder / f"{stem}.ann").read_bytes().decode("utf-8")
        pre = (folder / f"{stem}.pre.ann").read_bytes().decode("utf-8")
        notes.append((f"discharge-{stem}", text, gold, pre))
    return notes


def _spans(ann: str, text: str, source: str):
    parsed = parse_ann(ann, source)
    check_offsets(parsed, text, source)
    spans = {}
    for entity_id, entity in parsed.entities.items():
        confidence = None
        for note in parsed.notes.get(entity_id, []):
            if note.startswith("confidence="):
                confidence = float(note.split("=", 1)[1])
        spans[entity_id] = SpanData(entity.label, entity.fragments, confidence=confidence)
    return spans, parsed.relations


def _users(db: Session) -> dict[str, User]:
    users = {}
    for role, username, password in DEMO_LOGINS:
        user = db.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(
                username=username,
                display_name=DISPLAY_NAMES[username],
                role=role,
                password_hash=hash_password(password),
            )
            db.add(user)
            db.flush()
            audit.record(
                db,
                "user.create",
                object_type="user",
                object_id=user.id,
                details={"username": username, "role": role, "source": "demo"},
            )
        users[username] = user
    return users


def _add_set(db: Session, document: Document, spans: dict, relations, **columns) -> AnnotationSet:
    annotation_set = AnnotationSet(document_id=document.id, **columns)
    db.add(annotation_set)
    db.flush()
    rows = add_spans(
        db,
        annotation_set,
        list(spans.values()),
        status=SpanStatus.pending
        if columns.get("origin") == SetOrigin.pre_annotation
        else SpanStatus.confirmed,
    )
    by_id = dict(zip(spans.keys(), rows, strict=True))
    for relation in relations:
        db.add(
            Relation(
                annotation_set_id=annotation_set.id,
                type=relation.type,
                head_span_id=by_id[relation.arg1].id,
                tail_span_id=by_id[relation.arg2].id,
            )
        )
    db.flush()
    return annotation_set


def seed_demo(sessions: sessionmaker[Session], *, finished_study: bool = False) -> str:
    """Load the demo once; later calls find it and return the same summary.

    ``finished_study`` (what `clinann demo` asks for) adds the study that simulated physicians
    finished on some of the notes (app/demo/simulated.py), so the dashboard has figures; a demo
    loaded without it gets it on a later call.
    """
    summary = _seed_project(sessions)
    if finished_study:
        summary += _seed_finished_study(sessions)
    return summary


def _seed_finished_study(sessions: sessionmaker[Session]) -> str:
    """The simulated finished study, in one transaction; '' if it is there already."""
    from app.demo import simulated

    with sessions.begin() as db:
        project = db.scalar(select(Project).where(Project.name == DEMO_PROJECT))
        added = not simulated.is_loaded(db)
        if added:
            references = {
                external_id: simulated.Reference.of(text, *_spans(gold_ann, text, external_id))
                for external_id, text, gold_ann, _ in _demo_notes()
            }
            simulated.simulate_study(db, project, references)
    return "; with a finished study by simulated physicians" if added else ""


def _seed_project(sessions: sessionmaker[Session]) -> str:
    schema = parse_label_schema(MEDICATION_SCHEMA).model_dump(mode="json")
    study = parse_study_settings({}).model_dump(mode="json")
    notes = _demo_notes()
    with sessions.begin() as db:
        users = _users(db)
        project = db.scalar(select(Project).where(Project.name == DEMO_PROJECT))
        if project is not None:
            count = db.scalar(select(func.count()).where(Document.project_id == project.id))
            return f"demo project already loaded ({count} notes)"
        lead, admin = users["lead"], users["admin"]
        annotators = [users["dr.adams"], users["dr.baker"], users["dr.chen"]]
        project = Project(
            name=DEMO_PROJECT,
            guidelines=GUIDELINES,
            label_schema=schema,
            study_settings=study,
            created_by=admin.id,
        )
        db.add(project)
        db.flush()
        for member in [lead, *annotators]:
            db.add(ProjectMember(project_id=project.id, user_id=member.id))
        batch = Batch(
            project_id=project.id,
            uploaded_by=admin.id,
            status=BatchStatus.accepted.value,
            file_names=[f"{external_id}.txt" for external_id, *_ in notes],
            document_count=len(notes),
            phi_report={"screened": len(notes), "findings": 0, "note": "synthetic demo notes"},
        )
        db.add(batch)
        run = PreAnnotationRun(
            project_id=project.id,
            name="Demo pre-labels (simulated recall-first LLM)",
            method="imported",
            status=RunStatus.succeeded.value,
            created_by=lead.id,
            configuration={"source": "app/demo/notes/*.pre.ann", "note": "simulated LLM output"},
        )
        db.add(run)
        db.flush()
        positions = {annotator.id: 0 for annotator in annotators}

        def queue(annotator: User, document: Document, condition: Condition, base=None) -> None:
            assign(
                db,
                project_id=project.id,
                document_id=document.id,
                annotator_id=annotator.id,
                condition=condition,
                queue_position=positions[annotator.id],
                base_set=base,
                is_calibration=positions[annotator.id] == 0,
            )
            positions[annotator.id] += 1

        for index, (external_id, text, gold_ann, pre_ann) in enumerate(notes):
            document = Document(
                project_id=project.id,
                batch_id=batch.id,
                external_id=external_id,
                text=text,
                sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                metadata_={"kind": "discharge summary", "synthetic": True},
            )
            db.add(document)
            db.flush()
            gold_spans, gold_relations = _spans(gold_ann, text, f"{external_id}.ann")
            pre_spans, _ = _spans(pre_ann, text, f"{external_id}.pre.ann")
            _add_set(
                db,
                document,
                gold_spans,
                gold_relations,
                origin=SetOrigin.gold.value,
                status=SetStatus.submitted.value,
            )
            pre_set = _add_set(
                db,
                document,
                pre_spans,
                [],
                origin=SetOrigin.pre_annotation.value,
                pre_annotation_run_id=run.id,
                status=SetStatus.submitted.value,
            )
            first = annotators[index % 3]
            second = annotators[(index + 1) % 3]
            # Counterbalanced: each physician sees notes in every condition, and every note is
            # done twice (agreement). Notes 0, 2, 4 carry a finished scratch pass that a second
            # physician refines (refine_human), as in the published human pipeline.
            if index in (0, 2, 4):
                finished = _add_set(
                    db,
                    document,
                    gold_spans,
                    gold_relations,
                    origin=SetOrigin.annotator.value,
                    annotator_id=first.id,
                    condition=Condition.scratch.value,
                    status=SetStatus.submitted.value,
                )
                db.add(
                    Assignment(
                        project_id=project.id,
                        document_id=document.id,
                        annotator_id=first.id,
                        condition=Condition.scratch.value,
                        queue_position=positions[first.id],
                        annotation_set_id=finished.id,
                        is_calibration=positions[first.id] == 0,
                    )
                )
                positions[first.id] += 1
                queue(second, document, Condition.refine_human, base=finished)
            elif index % 2 == 0:
                queue(first, document, Condition.scratch)
                queue(second, document, Condition.refine_llm, base=pre_set)
            else:
                queue(first, document, Condition.refine_llm, base=pre_set)
                queue(second, document, Condition.scratch)
        audit.record(
            db,
            "demo.load",
            user_id=admin.id,
            object_type="project",
            object_id=project.id,
            details={"documents": len(notes)},
        )
        return f"demo project loaded ({len(notes)} notes)"


SIMULATED_ENDPOINT = "Simulated LLM (demo)"
# Noise of the simulated model: it misses some labels, adds a few, gets some boundaries and labels
# wrong, like a recall-first LLM would; the demo says plainly that these pre-labels are simulated.
SIMULATED_NOISE = {"missed": 0.15, "spurious": 0.02, "jitter": 0.1, "wrong_label": 0.05, "seed": 2018}


def start_simulated_llm(sessions: sessionmaker[Session], avoid_port: int | None = None):
    """Start the fake OpenAI-compatible server over the demo's gold and point the demo endpoint at it.

    Returns the running server (the caller stops it) and the endpoint's name. The port is new on every
    start, so the endpoint is updated in place: running the demo twice leaves one endpoint.
    """
    from app.db.models import LlmEndpoint
    from app.llm.fake_server import FakeBehaviour, FakeLlmServer, GoldNote

    notes = []
    for _, text, gold_ann, _ in _demo_notes():
        spans, relations = _spans(gold_ann, text, "gold")
        contiguous = {key: span for key, span in spans.items() if len(span.fragments) == 1}
        index = {key: i for i, key in enumerate(contiguous)}
        notes.append(
            GoldNote(
                text,
                [(s.label, s.fragments[0].start, s.fragments[0].end) for s in contiguous.values()],
                [
                    (r.type, index[r.arg1], index[r.arg2])
                    for r in relations
                    if r.arg1 in index and r.arg2 in index
                ],
            )
        )

    def started() -> FakeLlmServer:
        server = FakeLlmServer(notes, parse_label_schema(MEDICATION_SCHEMA), FakeBehaviour(**SIMULATED_NOISE))
        server.start()
        return server

    server = started()
    # The OS may hand out the port the app is about to listen on (one just probed free by whoever
    # chose it): take another, started before this one stops so it cannot be the same.
    while avoid_port is not None and server.base_url.endswith(f":{avoid_port}/v1"):
        previous, server = server, started()
        previous.stop()
    base_url = server.base_url
    with sessions.begin() as db:
        endpoint = db.scalar(select(LlmEndpoint).where(LlmEndpoint.name == SIMULATED_ENDPOINT))
        if endpoint is None:
            endpoint = LlmEndpoint(name=SIMULATED_ENDPOINT, model=server.model)
            db.add(endpoint)
        endpoint.base_url = base_url
        endpoint.model = server.model
        endpoint.parameters = {"max_concurrency": 8, "timeout_seconds": 30, "structured_output": True,
                               "max_attempts": 3, "backoff_seconds": 0.5, "simulated": True}  # fmt: skip
        endpoint.is_active = True
    return server, SIMULATED_ENDPOINT
