"""Batches of notes: upload, PHI screen, hold, release with a reason or reject, store all or nothing."""

import copy
import hashlib
import io
import re
import secrets
import zipfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import (
    AnnotationSet,
    Batch,
    Document,
    DocumentAnswer,
    PreAnnotationRun,
    Project,
    Relation,
    Span,
    SpanFragment,
    User,
)
from app.domain.brat import ANSWERS_SUFFIX, BINARY_VALUE
from app.domain.corpus_schema import extend_schema as widen_schema
from app.domain.jsonl import AnsweredDocument, ImportedRelationState, check_answers
from app.domain.label_schema import LabelSchema, LabelSchemaError, QuestionKind, parse_label_schema
from app.domain.phi import screen
from app.domain.spans import Fragment
from app.domain.uploads import (
    IGNORED,
    ImportedSpan,
    UploadLimits,
    UploadProblem,
    decode_text,
    first_differing_line,
    read_upload,
)
from app.domain.vocabulary import BatchStatus, RunStatus, SetOrigin, SetStatus, SpanStatus
from app.services import audit
from app.settings import Settings

UID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class BatchError(ValueError):
    """A request about a batch that cannot be carried out."""


@dataclass(frozen=True)
class Layer:
    """Where imported annotations go: a pre-annotation run (named), an annotator's set, or gold."""

    origin: SetOrigin
    source_name: str
    annotator_id: int | None = None

    @property
    def label(self) -> str:
        return self.source_name


@dataclass
class UploadOutcome:
    """What an upload did. A note is known by its name (file stem, JSONL ``id``) within the project:
    the same name with the same text is the stored note (its annotations a layer on it); another name
    with the same text is a note of its own; the same name with another text is refused."""

    status: str  # accepted, held, refused, or unchanged (nothing new: no batch made, nothing stored)
    batch_id: int | None = None
    project_id: int | None = None  # the project (made by the upload with new_project, when refused: None)
    stored: int = 0
    # Notes the project has already (same name, same text): not stored again.
    already_stored: list[str] = field(default_factory=list)
    # Of those, the ones whose annotations became a new layer on the stored note (a second
    # physician's brat export of the same notes, so their agreement can be measured).
    layers_added: list[str] = field(default_factory=list)
    # New notes whose text is that of another note (of the project or of this upload): (name, other).
    same_text: list[tuple[str, str]] = field(default_factory=list)
    # Notes whose name the project has with another text, left out because the caller said so.
    skipped: list[UploadProblem] = field(default_factory=list)
    # What the upload added to the project's schema (create, or extend_schema), one line each.
    schema_additions: list[str] = field(default_factory=list)
    batch_documents: int = 0  # the new notes of the batch (stored, or held with it)
    accounts_created: list[str] = field(default_factory=list)  # annotator folders' new, disabled accounts
    problems: list[UploadProblem] = field(default_factory=list)
    warnings: list[UploadProblem] = field(default_factory=list)
    phi_counts: dict[str, int] = field(default_factory=dict)
    flagged_documents: int = 0

    def notices(self) -> list[str]:
        """One line per note worth telling about, and per schema addition."""
        return [
            *(
                f"{name}: same text as {other} (stored as a note of its own)"
                for name, other in self.same_text
            ),
            *(f"{problem} (skipped)" for problem in self.skipped),
            *(f"schema: added {addition}" for addition in self.schema_additions),
            *(
                f"account '{login}' created for its folder, disabled until an admin sets its password"
                for login in self.accounts_created
            ),
        ]

    def summary(self) -> str:
        """The counts of what the upload did, in one line."""
        if self.status == "refused":
            return f"refused: {len(self.problems)} problems; nothing was stored"
        if self.status == "unchanged":
            parts = [f"{len(self.already_stored)} already in the project with the same text"]
            if self.skipped:
                parts.append(f"{len(self.skipped)} skipped (another text under that name)")
            return f"nothing to add ({'; '.join(parts)}): no batch was made and nothing was stored"
        verb = "held for review" if self.status == "held" else "stored"
        nothing_to_add = [n for n in self.already_stored if n not in self.layers_added]
        counted = [
            (len(self.layers_added), "notes given a further layer"),
            (len(self.same_text), "with the same text as another note"),
            (len(nothing_to_add), "already stored with nothing to add"),
            (len(self.skipped), "skipped (another text under that name)"),
            (len(self.schema_additions), "schema additions"),
            (len(self.accounts_created), "annotator accounts created"),
        ]
        stored = self.stored if self.status != "held" else self.batch_documents
        return "; ".join([f"{verb} {stored} notes", *(f"{n} {what}" for n, what in counted if n)])


def limits_of(settings: Settings) -> UploadLimits:
    return UploadLimits(
        max_file_bytes=int(settings.upload_max_file_mb * 1024 * 1024),
        max_batch_bytes=int(settings.upload_max_batch_mb * 1024 * 1024),
        max_documents=settings.upload_max_documents,
        zip_max_ratio=settings.zip_max_ratio,
    )


def resolve_layer(db: Session, layer: str | None) -> Layer:
    """``pre:NAME`` (default ``pre:imported``), ``gold``, or ``annotator:LOGIN``."""
    layer = (layer or "pre:imported").strip()
    if layer == "gold":
        return Layer(SetOrigin.gold, "gold")
    kind, _, name = layer.partition(":")
    if kind == "pre" and name.strip():
        if len(name.strip()) > 200:
            raise BatchError("layer: a source name has at most 200 characters")
        return Layer(SetOrigin.pre_annotation, name.strip())
    if kind == "annotator" and name.strip():
        user = db.scalar(select(User).where(User.username == name.strip().lower()))
        if user is None:
            raise BatchError(f"layer: no user '{name.strip()}'")
        return Layer(SetOrigin.annotator, f"annotator:{user.username}", user.id)
    raise BatchError("layer: pre:NAME, gold or annotator:LOGIN")


def _where_in_file(document: AnsweredDocument, line: int | None) -> tuple[str, int | None]:
    """The file and line an annotation comes from: a brat note's .ann line, a JSONL note's line."""
    if line and document.source_file.lower().endswith(".txt"):
        return document.source_file[:-4] + ".ann", line
    return document.source_file, document.line


def _schema_problems(documents: list[AnsweredDocument], schema: LabelSchema) -> list[UploadProblem]:
    known = {e.name for e in schema.entity_types}
    relation_types = {r.name for r in schema.relation_types}
    problems = []
    hint = "; import with the option to extend the schema to add it"
    for document in documents:
        unknown = [("label", s.label, s.line) for s in document.spans if s.label not in known] + [
            ("relation type", r.type, r.line) for r in document.relations if r.type not in relation_types
        ]
        first: dict[tuple[str, str], int | None] = {}
        for kind, name, line in unknown:  # once per name and note, at its first line
            first.setdefault((kind, name), line)
        for (kind, name), line in sorted(first.items()):
            file, where = _where_in_file(document, line)
            message = f"{kind} '{name}' is not in the project's schema{hint}"
            problems.append(UploadProblem(file, message, where))
        problems.extend(_attribute_problems(document, schema))
    return problems


def _attribute_problems(document: AnsweredDocument, schema: LabelSchema) -> list[UploadProblem]:
    """Attributes the schema defines must take its values and apply to the span's label.

    Attributes it does not define are kept as given, as before (an importing tool's ``confidence``).
    """
    definitions = {a.name: a for a in schema.span_attributes}
    problems = []
    for index, span in enumerate(document.spans):
        for name, value in span.attributes.items():
            definition = definitions.get(name)
            if definition is None or value is None:
                continue
            if definition.applies_to and span.label not in definition.applies_to:
                message = f"does not apply to {span.label} (only to {', '.join(definition.applies_to)})"
            elif isinstance(value, bool):
                # A binary brat attribute reads as True; the schema says so with one value (or "true").
                if len(definition.values) == 1 or BINARY_VALUE in definition.values:
                    continue
                message = f"needs a value, one of {', '.join(definition.values)}"
            elif isinstance(value, str) and value in definition.values:
                continue
            else:
                message = f"'{value}' is not one of {', '.join(definition.values)}"
            # A JSONL note names its line and the field; a brat note, the span's T id.
            where = f"spans[{index}].attributes.{name}" if document.line else f"{span.id} {name}"
            file, line = _where_in_file(document, span.attribute_lines.get(name) or span.line)
            problems.append(UploadProblem(file, f"{where}: {message}", line))
    return problems


def _checked_answers(
    documents: list[AnsweredDocument], schema: LabelSchema
) -> tuple[list[AnsweredDocument], list[UploadProblem]]:
    """The documents with their answers as they will be stored, and a problem per answer refused."""
    result, problems = [], []
    for document in documents:
        if not document.answers:
            result.append(document)
            continue
        stored, found = check_answers(
            schema.document_questions, document.answers, [s.id for s in document.spans]
        )
        # A sidecar's problems name the sidecar; a JSONL note's name its line.
        file, line = (
            (document.answers_file, None) if document.answers_file else (document.source_file, document.line)
        )
        problems.extend(UploadProblem(file, f"{where}: {message}", line) for where, message in found)
        result.append(replace(document, answers=stored))
    return result, problems


def _answer_files(files: list[tuple[str, bytes]], problems: list[UploadProblem]) -> dict[str, str]:
    """The ``.answers.json`` sidecars of an upload (as files or in its zips), decoded, by path.

    Called only once ``read_upload`` has passed every zip entry (sizes, ratios, paths, CRCs).
    """
    found: dict[str, bytes] = {}
    for name, raw in files:
        if name.lower().endswith(ANSWERS_SUFFIX):
            found[name] = raw
        elif name.lower().endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                for member in archive.infolist():
                    if member.is_dir() or any(part in member.filename for part in IGNORED):
                        continue
                    if member.filename.lower().endswith(ANSWERS_SUFFIX):
                        found[member.filename] = archive.read(member)
    decoded = {}
    for name, raw in found.items():
        text = decode_text(name, raw, problems)
        if text is not None:
            decoded[name] = text
    return decoded


def _where(problems: list[UploadProblem]) -> list[str]:
    # The audit log keeps where each problem was, not its message: messages may quote note text.
    return [f"{p.file}:{p.line}" if p.line else p.file for p in problems[:100]]


# A stretch in quotes: the opening quote follows no letter (not the apostrophe of "project's"), the
# closing one is followed by none (an apostrophe inside, as in 'O'Brien', does not close it).
_QUOTED = re.compile(r"(?<!\w)'(?:[^']|'(?=\w))*'(?!\w)")


def _reasons(problems: list[UploadProblem]) -> list[str]:
    """Why each problem refused the upload, for the audit log: the message with every quoted stretch
    (a line of an .ann, a note's name or text) left out, so the log says what was wrong, not what the
    notes say."""
    return [_QUOTED.sub("'…'", p.message) for p in problems[:100]]


def _document_json(document: AnsweredDocument) -> dict[str, Any]:
    return asdict(document)


def _document_from_json(data: dict[str, Any]) -> AnsweredDocument:
    spans = [
        ImportedSpan(
            **{**s, "fragments": tuple(Fragment(**f) for f in s["fragments"]), "notes": tuple(s["notes"])}
        )
        for s in data["spans"]
    ]
    # Batches held before answers and relation states were staged read with their defaults.
    relations = [ImportedRelationState(**r) for r in data["relations"]]
    return AnsweredDocument(**{**data, "spans": spans, "relations": relations})


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _upload_conf(text: str | None, outcome: UploadOutcome) -> dict[str, Any] | None:
    """The upload's annotation.conf, parsed; a line that cannot be read is a problem naming it."""
    from app.domain.brat import BratError, parse_annotation_conf

    if not text:
        return None
    try:
        return parse_annotation_conf(text)
    except BratError as error:
        outcome.problems.append(UploadProblem(error.source, error.message, error.line))
        return None


def _by_annotator_folder(
    documents: list[AnsweredDocument], problems: list[UploadProblem]
) -> list[AnsweredDocument]:
    """Each note as named within its annotator's folder, its layer that annotator's."""
    result = []
    for document in documents:
        folder, separator, name = document.external_id.partition("/")
        if not separator and document.source_file.endswith(f"/{document.external_id}.txt"):
            # One annotator's folder alone: the reader took it for the folder every note shares.
            folder = document.source_file.rsplit("/", 2)[-2]
            separator, name = "/", document.external_id
        if not separator:
            problems.append(
                UploadProblem(
                    document.source_file,
                    "with one folder per annotator, every note must be in an annotator's folder",
                )
            )
            continue
        result.append(replace(document, external_id=name, layer=f"annotator:{folder.lower()}"))
    return result


def _annotator_layers(
    db: Session,
    documents: list[AnsweredDocument],
    create: bool,
    actor_id: int | None,
    client_address: str | None,
    outcome: UploadOutcome,
) -> dict[str | None, Layer | None]:
    """The layer of each annotator folder; a folder naming no account is a problem, or with
    ``create`` a new annotator account, disabled until an admin sets its password (audited)."""
    from app.services.users import USERNAME, hash_password

    layers: dict[str | None, Layer | None] = {}
    for name in dict.fromkeys(d.layer for d in documents):
        login = name.removeprefix("annotator:")
        first = next(d for d in documents if d.layer == name)
        folder = first.source_file[: first.source_file.rfind(first.external_id)] or f"{login}/"
        user = db.scalar(select(User).where(User.username == login))
        if user is None and create and USERNAME.match(login):
            user = User(
                username=login,
                display_name=login,
                role="annotator",
                password_hash=hash_password(secrets.token_urlsafe(32)),  # nobody's: an admin sets one
                is_active=False,
                must_change_password=True,
            )
            db.add(user)
            db.flush()
            details = {"username": login, "role": "annotator", "active": False, "from": "import"}
            audit.record(
                db,
                "user.create",
                user_id=actor_id,
                object_type="user",
                object_id=user.id,
                client_address=client_address,
                details=details,
            )
            outcome.accounts_created.append(login)
        if user is None:
            hint = (
                "add the account first, or import with the option to create annotators"
                if USERNAME.match(login)
                else "a user name is 2-64 lower-case letters, digits, '.', '_' or '-'"
            )
            outcome.problems.append(UploadProblem(folder, f"no annotator account '{login}' ({hint})"))
            continue
        layers[name] = Layer(SetOrigin.annotator, f"annotator:{user.username}", user.id)
    return layers


def _sort_by_name(
    db: Session,
    project_id: int,
    incoming: list[AnsweredDocument],
    layer: Layer | None,
    outcome: UploadOutcome,
    skip_mismatched: bool,
) -> tuple[list[AnsweredDocument], list[AnsweredDocument]]:
    """The notes to store and the annotations to add as layers on stored notes, by name.

    A note whose name the project has with another text is a problem naming it and the first line
    that differs (or, with ``skip_mismatched``, left out and reported); nothing is ever dropped
    because its text equals another note's.
    """
    names = list(dict.fromkeys(d.external_id for d in incoming))
    stored = dict(
        db.execute(
            select(Document.external_id, Document.sha256).where(
                Document.project_id == project_id, Document.external_id.in_(names)
            )
        ).all()
    )
    digests = {_sha(d.text) for d in incoming}
    # The first note of each text, of the project (any name) and then of this upload.
    named_by_text: dict[str, str] = {}
    for digest, name in db.execute(
        select(Document.sha256, Document.external_id)
        .where(Document.project_id == project_id, Document.sha256.in_(list(digests)))
        .order_by(Document.id)
    ):
        named_by_text.setdefault(digest, name)
    fresh: list[AnsweredDocument] = []
    layered: list[AnsweredDocument] = []
    mismatched: list[tuple[AnsweredDocument, str | None]] = []  # and the text it differs from, if new
    first_here: dict[str, AnsweredDocument] = {}  # one folder per annotator: a name comes once per folder
    for document in incoming:
        name, digest = document.external_id, _sha(document.text)
        if name in first_here:  # another annotator's copy of a note of this upload
            if _sha(first_here[name].text) != digest:
                mismatched.append((document, first_here[name].text))
            elif document.has_annotations and (layer is not None or document.layer is not None):
                layered.append(document)
            continue
        if name in stored:
            if stored[name] != digest:
                mismatched.append((document, None))
                continue
            if name not in outcome.already_stored:
                outcome.already_stored.append(name)
            if document.has_annotations and (layer is not None or document.layer is not None):
                layered.append(document)
            continue
        first_here[name] = document
        other = named_by_text.setdefault(digest, name)
        if other != name:
            outcome.same_text.append((name, other))
        fresh.append(document)
    if mismatched:
        texts = dict(
            db.execute(
                select(Document.external_id, Document.text).where(
                    Document.project_id == project_id,
                    Document.external_id.in_([d.external_id for d, here in mismatched if here is None]),
                )
            ).all()
        )
        for document, here in mismatched:
            name = document.external_id
            line = first_differing_line(texts[name] if here is None else here, document.text)
            where = "in the project" if here is None else f"in {first_here[name].source_file}"
            problem = UploadProblem(
                document.source_file,
                f"note '{name}' is {where} with another text (they differ from line {line} on)",
                line,
            )
            (outcome.skipped if skip_mismatched else outcome.problems).append(problem)
    return fresh, layered


def upload_batch(
    sessions: sessionmaker[Session],
    settings: Settings,
    project_id: int,
    files: list[tuple[str, bytes]],
    *,
    actor_id: int | None,
    layer: str | None = None,
    client_address: str | None = None,
    skip_mismatched: bool = False,
    extend_schema: bool = False,
    annotator_from_folder: bool = False,
    create_annotators: bool = False,
    new_project: tuple[str, dict[str, Any]] | None = None,
) -> UploadOutcome:
    """Read, check and screen an upload; store it, hold it for PHI review, or refuse it whole.

    ``skip_mismatched``: notes whose name the project has with another text are left out (and
    reported) instead of refusing the upload. ``extend_schema``: labels, relation types, attributes
    and values the data uses beyond the project's schema are added to it (listed in
    ``schema_additions``, audited) instead of refusing the upload. ``annotator_from_folder``: the
    upload has one folder per annotator (``corpus/ann1/note.txt``, as brat and bratiaa users keep
    them); each folder's annotations are that annotator's set of the note named by the rest of the
    path, and with ``create_annotators`` a folder naming no account creates it, disabled until an
    admin sets its password. ``new_project`` (name, schema): the project is created with the notes, in
    the same transaction (``project_id`` unused), so a refused import leaves no project behind.
    """
    from app.domain.brat_import import attach_answer_files, read_brat_document

    contents = read_upload(files, limits_of(settings), read_brat_document)
    file_names = [name for name, _ in files]
    outcome = UploadOutcome(status="refused", problems=contents.problems, warnings=contents.warnings)
    answer_files = _answer_files(files, outcome.problems) if not outcome.problems else {}
    # The reader leaves out what is not a note; a sidecar is read here instead.
    outcome.warnings = [w for w in outcome.warnings if not w.file.lower().endswith(ANSWERS_SUFFIX)]
    incoming, sidecar_problems = attach_answer_files(contents.documents, answer_files)
    outcome.problems.extend(sidecar_problems)
    if annotator_from_folder:
        incoming = _by_annotator_folder(incoming, outcome.problems)
    with sessions.begin() as db:
        # A new project and accounts made for annotator folders are undone if the upload is refused.
        undo = db.begin_nested()
        if new_project is not None:
            from app.services.projects import ProjectError, add_project

            try:
                project = add_project(db, *new_project, actor_id=actor_id)
            except (ProjectError, LabelSchemaError) as error:
                raise BatchError(f"project: {error}") from None
            project_id = project.id
        project = db.get(Project, project_id)
        outcome.project_id = project_id
        if project is None:
            raise BatchError(f"project: no project {project_id}")
        try:
            resolved = None if annotator_from_folder else resolve_layer(db, layer)
        except BatchError as error:
            outcome.problems.append(UploadProblem("(batch)", str(error)))
            resolved = None
        layers = {None: resolved}
        if annotator_from_folder and not outcome.problems:
            layers.update(
                _annotator_layers(db, incoming, create_annotators, actor_id, client_address, outcome)
            )
        extended: dict[str, Any] | None = None
        fresh: list[AnsweredDocument] = []
        layered: list[AnsweredDocument] = []
        if not outcome.problems:
            fresh, layered = _sort_by_name(db, project_id, incoming, resolved, outcome, skip_mismatched)
            kept = [*fresh, *layered]  # a skipped note's annotations are not checked: not stored
            schema = LabelSchema.model_validate(project.label_schema)
            problems = _schema_problems(kept, schema)
            conf = _upload_conf(contents.annotation_conf, outcome)
            proposed = widen_schema(project.label_schema, kept, conf)[1] if conf else []
            if proposed and not extend_schema and not problems:
                outcome.warnings.append(
                    UploadProblem(
                        "annotation.conf",
                        f"declares what the project's schema lacks ({'; '.join(proposed[:10])}): not added; "
                        "upload again with the option to extend the schema to add it",
                    )
                )
            if (problems or proposed) and extend_schema:
                # Widened only if the rest holds: a refused upload leaves the schema as it was.
                wider, outcome.schema_additions = widen_schema(project.label_schema, kept, conf)
                try:
                    schema = parse_label_schema(wider)
                except LabelSchemaError as error:
                    outcome.problems.extend(UploadProblem("(schema)", f"{f}: {m}") for f, m in error.problems)
                else:
                    extended, problems = schema.model_dump(mode="json"), _schema_problems(kept, schema)
            outcome.problems.extend(problems)
            fresh, answer_problems = _checked_answers(fresh, schema)
            outcome.problems.extend(answer_problems)
            layered, answer_problems = _checked_answers(layered, schema)
            outcome.problems.extend(answer_problems)
        if outcome.problems:
            undo.rollback()
            outcome.accounts_created.clear()
            refused = {
                "files": file_names[:100],
                "problems": _where(outcome.problems),
                "reasons": _reasons(outcome.problems),
            }
            if new_project is not None:
                project_id = outcome.project_id = None
                refused["new_project"] = new_project[0]
            audit.record(
                db,
                "batch.refused",
                user_id=actor_id,
                object_type="project",
                object_id=project_id,
                client_address=client_address,
                details=refused,
            )
            return outcome
        if extended is not None:
            before = project.label_schema
            project.label_schema = extended
            audit.record(
                db,
                "project.schema_extend",
                user_id=actor_id,
                object_type="project",
                object_id=project_id,
                client_address=client_address,
                details={"additions": outcome.schema_additions, "before": before, "after": extended},
            )
        report: dict[str, Any] = {"screened": len(fresh), "documents": {}, "counts": {}}
        for document in fresh:
            hits = screen(document.text).hits
            if hits:
                report["documents"][document.external_id] = [[h.kind, h.start, h.end] for h in hits]
                for hit in hits:
                    report["counts"][hit.kind] = report["counts"].get(hit.kind, 0) + 1
        report["flagged"] = len(report["documents"])
        report["already_stored"] = outcome.already_stored
        outcome.phi_counts, outcome.flagged_documents = report["counts"], report["flagged"]
        outcome.batch_documents = len(fresh)
        held = bool(report["documents"])
        batch = Batch(
            project_id=project_id,
            uploaded_by=actor_id,
            file_names=file_names[:1000],
            document_count=len(fresh),
            status=(BatchStatus.held if held else BatchStatus.accepted).value,
            phi_report=report,
            layer="annotator:(one per folder)" if annotator_from_folder else (layer or "pre:imported"),
            staged={
                "documents": [_document_json(d) for d in fresh],
                "layers": [_document_json(d) for d in layered],
            }
            if held
            else None,
        )
        db.add(batch)
        db.flush()
        outcome.batch_id = batch.id
        if held:
            outcome.status = "held"
        else:
            _store(db, project, batch, fresh, layers)
            outcome.layers_added = _attach_layers(db, project, batch, layered, layers)
            outcome.status, outcome.stored = "accepted", len(fresh)
        if not fresh and not outcome.layers_added and extended is None and new_project is None:
            # Nothing new (every note stored already, with its layers): an empty batch would only be
            # offered in the lead's pickers. Say so, and keep nothing but the audit event.
            undo.rollback()
            outcome.status, outcome.batch_id, outcome.stored = "unchanged", None, 0
            outcome.accounts_created.clear()
            audit.record(
                db,
                "batch.nothing_new",
                user_id=actor_id,
                object_type="project",
                object_id=project_id,
                client_address=client_address,
                details={
                    "files": file_names[:100],
                    "already_stored": len(outcome.already_stored),
                    "skipped": _where(outcome.skipped),
                },
            )
            return outcome
        audit.record(
            db,
            "batch.upload",
            user_id=actor_id,
            object_type="batch",
            object_id=batch.id,
            client_address=client_address,
            details={
                "files": file_names[:100],
                "documents": len(fresh),
                "status": outcome.status,
                "already_stored": len(outcome.already_stored),
                "same_text": len(outcome.same_text),
                "skipped": _where(outcome.skipped),
                "phi_counts": report["counts"],
            },
        )
    return outcome


# ---- a held batch: a decision per flagged note, then release (or reject) the batch -----------------

NOTE_DECISIONS = ("release", "exclude", "mask")
_WORD = re.compile(r"[^\W\d_]{2,}")


def _reason_in_words(reason: str | None, why: str) -> str:
    """The admin's reason, stripped; refused unless it says something in words (two words or more,
    10 characters or more): it is what an auditor reads later."""
    reason = (reason or "").strip()
    if len(reason) < 10 or len(_WORD.findall(reason)) < 2:
        raise BatchError(f"reason: say in words {why} (10 characters or more)")
    return reason


def _held(db: Session, batch_id: int) -> Batch:
    batch = db.scalar(select(Batch).where(Batch.id == batch_id).with_for_update())
    if batch is None or batch.status != BatchStatus.held.value:
        raise BatchError(f"batch {batch_id} is not held for review")
    return batch


def _undecided(report: dict[str, Any], name: str) -> bool:
    """A flagged note still waiting for a decision (a masking that left hits counts as none)."""
    decision = (report.get("decisions") or {}).get(name)
    return decision is None or (decision["decision"] == "mask" and bool(decision.get("remaining")))


def _counts(hits: list[list[Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, _, _ in hits:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@dataclass(frozen=True)
class NoteDecision:
    """What a decision on a flagged note did."""

    note: str
    decision: str
    undecided: int  # flagged notes of the batch still waiting for a decision
    remaining_hits: int = 0  # after a masking: hits the screen still finds (normally 0)


def decide_note(
    sessions: sessionmaker[Session],
    batch_id: int,
    note: str,
    decision: str,
    reason: str,
    *,
    actor_id: int | None,
    now: datetime,
    client_address: str | None = None,
) -> NoteDecision:
    """Decide one flagged note of a held batch, with the admin's reason, in one transaction:
    ``release`` it (its hits are not identifiers), ``exclude`` it (it will not be imported; its text is
    erased now), or ``mask`` its hits with typed placeholders (its staged annotations' offsets move
    with the text). The batch stays held until it is released or rejected."""
    from app.domain.phi import PhiHit
    from app.domain.phi_masking import mask_until_clean, moved_fragments, moved_range, placeholders_after

    if decision not in NOTE_DECISIONS:
        raise BatchError("decision: release, exclude or mask")
    reason = _reason_in_words(reason, "why you decide so")
    with sessions.begin() as db:
        batch = _held(db, batch_id)
        # Copies all the way down: the loaded values must stay as loaded, or the change is not seen.
        report = copy.deepcopy(batch.phi_report or {})
        flagged = report.get("documents") or {}
        if note not in flagged:
            raise BatchError(f"note: '{note}' is not a flagged note of batch {batch_id}")
        decisions = dict(report.get("decisions") or {})
        before = decisions.get(note)
        if before and before["decision"] == "exclude":
            raise BatchError(f"note: '{note}' is excluded already (its text is erased)")
        if before and before["decision"] == decision and not _undecided(report, note):
            raise BatchError(
                f"decision: '{note}' is {'masked' if decision == 'mask' else 'released'} already"
            )
        if before and before["decision"] == "mask" and decision == "release" and not before.get("remaining"):
            raise BatchError(f"decision: '{note}' is masked: no hit is left to release")
        staged = copy.deepcopy(batch.staged or {})
        copies = [d for d in staged.get("documents", []) if d["external_id"] == note]
        layered = [d for d in staged.get("layers", []) if d["external_id"] == note]  # other folders' copies
        hits = (before or {}).get("remaining") if before and before["decision"] == "mask" else flagged[note]
        record: dict[str, Any] = {
            "decision": decision,
            "reason": reason,
            "by": actor_id,
            "at": now.isoformat(),
            "hits": _counts(hits),
        }
        details: dict[str, Any] = {"note": note, "reason": reason, "hits": record["hits"]}
        remaining: tuple[PhiHit, ...] = ()
        if decision == "exclude":
            staged["documents"] = [d for d in staged.get("documents", []) if d["external_id"] != note]
            staged["layers"] = [d for d in staged.get("layers", []) if d["external_id"] != note]
            batch.document_count = len(staged["documents"])
        elif decision == "mask":
            [document] = copies
            steps, remaining = mask_until_clean(
                document["text"],
                [PhiHit(kind, start, end) for kind, start, end in hits],
                lambda t: screen(t).hits,
            )
            earlier = [PhiHit(*p) for p in (before or {}).get("placeholders", [])]
            for version in [document, *layered]:
                if version["text"] != document["text"]:
                    raise BatchError(f"note: the copies of '{note}' differ; exclude it instead")
            for version in [*layered, document]:  # the note itself last: the copies compare with its text
                version["text"] = steps[-1].text
                for span in version["spans"]:
                    fragments = moved_fragments(steps, [Fragment(**f) for f in span["fragments"]])
                    span["fragments"] = [{"start": f.start, "end": f.end} for f in fragments]
            moved = [PhiHit(p.kind, *moved_range(steps, p.start, p.end)) for p in earlier]
            placed = sorted([*moved, *placeholders_after(steps)], key=lambda h: (h.start, h.end))
            record["placeholders"] = [[p.kind, p.start, p.end] for p in placed]
            record["remaining"] = [[h.kind, h.start, h.end] for h in remaining]
            details.update(placeholders=len(placed), remaining=_counts(record["remaining"]))
        decisions[note] = record
        report["decisions"] = decisions
        batch.phi_report, batch.staged = report, staged  # new objects: JSONB columns are written whole
        audit.record(
            db,
            f"batch.note_{decision}",
            user_id=actor_id,
            object_type="batch",
            object_id=batch.id,
            client_address=client_address,
            details=details,
        )
        undecided = sum(1 for name in flagged if _undecided(report, name))
        return NoteDecision(note, decision, undecided, len(remaining))


def release_batch(
    sessions: sessionmaker[Session],
    batch_id: int,
    reason: str,
    *,
    actor_id: int | None,
    now: datetime,
    client_address: str | None = None,
) -> int:
    """Store a held batch after an admin has read its PHI report: every note not excluded, masked
    ones as masked. The reason (for the flagged notes still undecided, released with the batch) goes
    to the audit log; once every flagged note has its own decision, it may be left out."""
    with sessions.begin() as db:
        batch = db.scalar(select(Batch).where(Batch.id == batch_id).with_for_update())
        report = copy.deepcopy((batch.phi_report if batch is not None else None) or {})
        undecided = [name for name in report.get("documents") or {} if _undecided(report, name)]
        if undecided or (reason or "").strip():
            reason = _reason_in_words(reason, "why these hits are not identifiers")
        else:
            reason = None
        if batch is None or batch.status != BatchStatus.held.value:
            raise BatchError(f"batch {batch_id} is not held for review")
        documents = [_document_from_json(d) for d in (batch.staged or {}).get("documents", [])]
        layered = [_document_from_json(d) for d in (batch.staged or {}).get("layers", [])]
        if not documents and not layered:
            raise BatchError("batch: every note of it is excluded, so nothing is left to store; reject it")
        project = db.get(Project, batch.project_id)
        # Notes stored since the upload may clash with the held ones: say which, store nothing.
        ids = set(
            db.scalars(
                select(Document.external_id).where(
                    Document.project_id == project.id,
                    Document.external_id.in_([d.external_id for d in documents]),
                )
            )
        )
        clashes = sorted({d.external_id for d in documents if d.external_id in ids})
        if clashes:
            raise BatchError(f"notes stored since this upload clash with it: {', '.join(clashes[:20])}")
        # A batch of annotator folders names each note's layer; any other, one for the batch.
        named = {d.layer for d in [*documents, *layered] if d.layer is not None}
        layers = {None: None if named else resolve_layer(db, batch.layer)}
        layers.update({name: resolve_layer(db, name) for name in named})
        _store(db, project, batch, documents, layers)
        _attach_layers(db, project, batch, layered, layers)
        decisions = dict(report.get("decisions") or {})
        for name in undecided:  # the record keeps each flagged note's fate
            decisions[name] = {
                **decisions.get(name, {}),
                "decision": "release",
                "with_batch": True,
                "reason": reason,
                "by": actor_id,
                "at": now.isoformat(),
            }
        report["decisions"] = decisions
        batch.status, batch.staged, batch.phi_report = BatchStatus.accepted.value, None, report
        batch.document_count = len(documents)
        batch.phi_override_reason, batch.decided_by, batch.decided_at = reason, actor_id, now
        fates = [d["decision"] for d in decisions.values()]
        audit.record(
            db,
            "batch.phi_override",
            user_id=actor_id,
            object_type="batch",
            object_id=batch.id,
            client_address=client_address,
            details={
                "reason": reason,
                "documents": len(documents),
                "phi_counts": report.get("counts"),
                "released_with_batch": len(undecided),
                "decided": {kind: fates.count(kind) for kind in NOTE_DECISIONS if kind in fates},
            },
        )
        return len(documents)


def reject_batch(
    sessions: sessionmaker[Session],
    batch_id: int,
    *,
    actor_id: int | None,
    now: datetime,
    client_address: str | None = None,
) -> int:
    """Refuse a held batch; its staged notes are erased. Returns how many notes were erased."""
    with sessions.begin() as db:
        batch = _held(db, batch_id)
        erased = len((batch.staged or {}).get("documents", []))
        batch.status, batch.staged, batch.decided_by, batch.decided_at = (
            BatchStatus.rejected.value,
            None,
            actor_id,
            now,
        )
        report = batch.phi_report or {}
        audit.record(
            db,
            "batch.reject",
            user_id=actor_id,
            object_type="batch",
            object_id=batch.id,
            client_address=client_address,
            details={
                "phi_counts": report.get("counts"),
                "documents_erased": erased,
                "flagged": {name: _counts(hits) for name, hits in (report.get("documents") or {}).items()},
            },
        )
        return erased


def notes_to_erase(sessions: sessionmaker[Session], batch_id: int) -> int | None:
    """How many notes rejecting the batch would erase (None: the batch is not held)."""
    with sessions() as db:
        batch = db.get(Batch, batch_id)
        if batch is None or batch.status != BatchStatus.held.value:
            return None
        return len((batch.staged or {}).get("documents", []))


def _store(
    db: Session,
    project: Project,
    batch: Batch,
    documents: list[AnsweredDocument],
    layers: dict[str | None, Layer | None],
) -> None:
    """Insert the notes and their annotations with a few bulk statements (big batches stay fast)."""
    if not documents:
        return
    document_ids = db.scalars(
        insert(Document).returning(Document.id, sort_by_parameter_order=True),
        [
            {
                "project_id": project.id,
                "batch_id": batch.id,
                "external_id": d.external_id,
                "text": d.text,
                "sha256": _sha(d.text),
                "metadata_": d.metadata,
            }
            for d in documents
        ],
    ).all()
    for name, layer in layers.items():  # the upload's layer (None), or one per annotator folder
        annotated = [
            (document_ids[i], d) for i, d in enumerate(documents) if d.has_annotations and d.layer == name
        ]
        if layer is not None and annotated:
            _store_layer(db, project, batch, annotated, layer)


def _attach_layers(
    db: Session,
    project: Project,
    batch: Batch,
    documents: list[AnsweredDocument],
    layers: dict[str | None, Layer | None],
) -> list[str]:
    """Annotations of notes the project has already: a new layer on the stored note, unless that
    layer is there already. Returns the notes that got one (once each)."""
    added: list[str] = []
    for name, layer in layers.items():
        group = [d for d in documents if d.layer == name]
        if group and layer is not None:
            added.extend(n for n in _attach_layer(db, project, batch, group, layer) if n not in added)
    return added


def _attach_layer(
    db: Session, project: Project, batch: Batch, documents: list[AnsweredDocument], layer: Layer
) -> list[str]:
    if not documents:
        return []
    by_name = {
        name: (document_id, digest)
        for name, document_id, digest in db.execute(
            select(Document.external_id, Document.id, Document.sha256).where(
                Document.project_id == project.id,
                Document.external_id.in_([d.external_id for d in documents]),
            )
        )
    }
    same_layer = (
        AnnotationSet.origin == layer.origin.value,
        AnnotationSet.annotator_id.is_not_distinct_from(layer.annotator_id),
        AnnotationSet.source_name.is_not_distinct_from(layer.source_name),
    )
    taken = set(db.scalars(select(AnnotationSet.document_id).where(
        AnnotationSet.document_id.in_([i for i, _ in by_name.values()]), *same_layer)))  # fmt: skip
    pairs, seen = [], set()
    for document in documents:
        document_id, digest = by_name.get(document.external_id, (None, None))
        if (
            document_id is None
            or digest != _sha(document.text)
            or document_id in taken
            or document_id in seen
        ):
            continue
        seen.add(document_id)
        pairs.append((document_id, document))
    _store_layer(db, project, batch, pairs, layer)
    return [d.external_id for _, d in pairs]


def _store_layer(
    db: Session, project: Project, batch: Batch, annotated: list[tuple[int, AnsweredDocument]], layer: Layer
) -> None:
    """The annotations of stored notes as one layer (sets, spans, fragments, relations, answers), in bulk."""
    if not annotated:
        return
    run_id = None
    if layer.origin == SetOrigin.pre_annotation:
        run = db.scalar(
            select(PreAnnotationRun).where(
                PreAnnotationRun.project_id == project.id,
                PreAnnotationRun.name == layer.source_name,
                PreAnnotationRun.method == "imported",
            )
        )
        if run is None:
            run = PreAnnotationRun(
                project_id=project.id,
                name=layer.source_name,
                method="imported",
                status=RunStatus.succeeded.value,
                configuration={"batch": batch.id},
            )
            db.add(run)
            db.flush()
        run_id = run.id
    set_ids = db.scalars(
        insert(AnnotationSet).returning(AnnotationSet.id, sort_by_parameter_order=True),
        [
            {
                "document_id": document_id,
                "origin": layer.origin.value,
                "annotator_id": layer.annotator_id,
                "pre_annotation_run_id": run_id,
                "status": SetStatus.submitted.value,
                "source_name": layer.source_name,
                "unmodelled_lines": d.unmodelled,
            }
            for document_id, d in annotated
        ],
    ).all()
    span_rows, span_keys = [], []
    status = (
        SpanStatus.pending.value if layer.origin == SetOrigin.pre_annotation else SpanStatus.confirmed.value
    )
    uid_of: dict[tuple[int, str], str] = {}  # (set, span id in the file) -> stored uid
    for set_id, (_, document) in zip(set_ids, annotated, strict=True):
        used: set[str] = set()
        for position, span in enumerate(document.spans):
            uid = span.id if UID.match(span.id) and span.id not in used else f"s{position}"
            used.add(uid)
            uid_of.setdefault((set_id, span.id), uid)
            span_rows.append(
                {
                    "annotation_set_id": set_id,
                    "uid": uid,
                    "label": span.label,
                    "attributes": span.attributes,
                    "concept_system": span.concept_system,
                    "concept_code": span.concept_code,
                    "concept_name": span.concept_name,
                    "notes": list(span.notes),
                    # What the file says (an undecided pre-label marked in an export), else the layer's.
                    "status": span.status or status,
                    "confidence": _confidence(span),
                }
            )
            span_keys.append((set_id, span.id, span))
    span_ids = (
        db.scalars(insert(Span).returning(Span.id, sort_by_parameter_order=True), span_rows).all()
        if span_rows
        else []
    )
    fragment_rows, id_of = [], {}
    for span_id, (set_id, original_id, span) in zip(span_ids, span_keys, strict=True):
        id_of[(set_id, original_id)] = span_id
        fragment_rows.extend(
            {"span_id": span_id, "ordinal": k, "start": f.start, "end": f.end}
            for k, f in enumerate(span.fragments)
        )
    if fragment_rows:
        db.execute(insert(SpanFragment), fragment_rows)
    relation_rows = []
    for set_id, (_, document) in zip(set_ids, annotated, strict=True):
        used = set()
        for position, relation in enumerate(document.relations):
            uid = relation.id if UID.match(relation.id) and relation.id not in used else f"r{position}"
            used.add(uid)
            relation_rows.append(
                {
                    "annotation_set_id": set_id,
                    "uid": uid,
                    "type": relation.type,
                    "head_span_id": id_of[(set_id, relation.head)],
                    "tail_span_id": id_of[(set_id, relation.tail)],
                    # What the file says, else as the layer's spans: a pre-label waits for a decision.
                    "status": relation.status or status,
                    "confidence": relation.confidence,
                }
            )
    if relation_rows:
        db.execute(insert(Relation), relation_rows)
    questions = LabelSchema.model_validate(project.label_schema).document_questions
    evidence = {q.key for q in questions if q.kind == QuestionKind.evidence}
    answer_rows = [
        {
            "annotation_set_id": set_id,
            "question_key": key,
            # Evidence names spans by their id in the file; stored, by their uid.
            "value": [uid_of[(set_id, v)] for v in value] if key in evidence else value,
        }
        for set_id, (_, document) in zip(set_ids, annotated, strict=True)
        for key, value in document.answers.items()
    ]
    if answer_rows:
        db.execute(insert(DocumentAnswer), answer_rows)


def _confidence(span: ImportedSpan) -> float | None:
    """A pre-label's confidence, when the importing tool wrote one (JSONL ``confidence``, brat note
    ``confidence=0.87``)."""
    if span.confidence is not None:
        return span.confidence
    value = span.attributes.get("confidence")
    for note in span.notes:
        if note.startswith("confidence="):
            value = note.split("=", 1)[1]
    try:
        number = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and 0 <= number <= 1 else None


def batch_overview(sessions: sessionmaker[Session], rows: int = 100) -> dict[str, Any]:
    """Projects to upload into and the latest batches."""
    with sessions() as db:
        projects = list(db.scalars(select(Project).order_by(Project.name)))
        names = {p.id: p.name for p in projects}
        batches = list(db.scalars(select(Batch).order_by(Batch.id.desc()).limit(rows)))
    return {"projects": projects, "batches": [(b, names.get(b.project_id, "")) for b in batches]}


def batch_choices(sessions: sessionmaker[Session], project_id: int) -> list[Batch]:
    """The project's batches a lead can pick (a run's notes, a study's, a dashboard filter): those
    whose notes are in the project. A held or rejected batch, or one that stored no note, is none."""
    holds_notes = select(Document.id).where(Document.batch_id == Batch.id).exists()
    with sessions() as db:
        return list(
            db.scalars(
                select(Batch)
                .where(
                    Batch.project_id == project_id, Batch.status == BatchStatus.accepted.value, holds_notes
                )
                .order_by(Batch.id)
            )
        )


@dataclass(frozen=True)
class FlaggedNote:
    """A note the screen flagged, with its hits in context while its text is kept, and the admin's
    decision on it (None: undecided)."""

    external_id: str
    counts: dict[str, int]
    excerpts: list[tuple[str, str, str, str]]  # kind, text before, the hit (or placeholder), text after
    decision: str | None = None  # release, exclude, mask
    reason: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    with_batch: bool = False  # released with the batch, not on its own
    undecided: bool = True
    remaining: dict[str, int] = field(default_factory=dict)  # hits still found after a masking


@dataclass(frozen=True)
class BatchDetail:
    batch: Batch
    project_name: str
    flagged: list[FlaggedNote]
    staged_documents: int = 0  # the notes a rejection would erase
    stored_documents: int = 0  # the batch's notes in the project
    decided_by: str | None = None  # who released or rejected the batch
    uploaded_by: str | None = None

    @property
    def undecided(self) -> int:
        return sum(1 for note in self.flagged if note.undecided)

    @property
    def excluded(self) -> int:
        return sum(1 for note in self.flagged if note.decision == "exclude")


def _excerpts(text: str, hits: list[list[Any]], context: int) -> list[tuple[str, str, str, str]]:
    return [
        (kind, text[max(0, start - context) : start], text[start:end], text[end : end + context])
        for kind, start, end in hits
    ]


def batch_detail(sessions: sessionmaker[Session], batch_id: int, context: int = 30) -> BatchDetail | None:
    """A batch with its PHI report; while held, each hit shown in its context for the admin's review
    (a masked note's placeholders in theirs), with the decision taken on each flagged note."""
    with sessions() as db:
        batch = db.get(Batch, batch_id)
        if batch is None:
            return None
        project = db.get(Project, batch.project_id)
        staged = (batch.staged or {}).get("documents", [])
        texts = {d["external_id"]: d["text"] for d in staged}
        report = batch.phi_report or {}
        decisions = report.get("decisions") or {}
        user_ids = {d.get("by") for d in decisions.values()} | {batch.decided_by, batch.uploaded_by}
        names = dict(
            db.execute(
                select(User.id, User.display_name).where(User.id.in_([i for i in user_ids if i is not None]))
            ).all()
        )
        stored = db.scalar(select(func.count()).select_from(Document).where(Document.batch_id == batch.id))
    flagged = []
    for external_id, hits in (report.get("documents") or {}).items():
        decision = decisions.get(external_id) or {}
        text = texts.get(external_id)
        if text is None:
            excerpts = []
        elif decision.get("decision") == "mask":
            shown = sorted(
                [*decision.get("placeholders", []), *decision.get("remaining", [])], key=lambda h: h[1]
            )
            excerpts = _excerpts(text, shown, context)
        else:
            excerpts = _excerpts(text, hits, context)
        flagged.append(
            FlaggedNote(
                external_id,
                _counts(hits),
                excerpts,
                decision=decision.get("decision"),
                reason=decision.get("reason"),
                decided_by=names.get(decision.get("by")),
                decided_at=datetime.fromisoformat(decision["at"]) if decision.get("at") else None,
                with_batch=bool(decision.get("with_batch")),
                undecided=_undecided(report, external_id),
                remaining=_counts(decision.get("remaining") or []),
            )
        )
    return BatchDetail(
        batch,
        project.name if project else "",
        flagged,
        staged_documents=len(staged),
        stored_documents=stored or 0,
        decided_by=names.get(batch.decided_by),
        uploaded_by=names.get(batch.uploaded_by),
    )
