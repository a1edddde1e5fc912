"""Reading an upload into notes (and their annotations), or into problems naming file and line.

Accepted: plain ``.txt`` notes (with optional ``.ann`` beside them), a ``.zip`` of ``.txt``/``.ann``
pairs with an optional ``annotation.conf``, JSONL (one document per line) and CSV (id, text and
metadata columns). Text is kept exactly as decoded: a CRLF and a leading byte-order mark stay,
because brat offsets count them. Nothing here stores anything; a caller stores a batch only when
``problems`` is empty (all or nothing).
"""

import csv
import io
import posixpath
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from app.domain.spans import Fragment

MAX_ID_LENGTH = 200  # documents.external_id
NOTE_SUFFIXES = (".txt", ".ann", ".jsonl", ".csv", ".zip")
IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db")


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int = 5 * 1024 * 1024
    max_batch_bytes: int = 200 * 1024 * 1024
    max_documents: int = 20_000
    zip_max_ratio: float = 100.0


@dataclass(frozen=True)
class UploadProblem:
    """Something wrong with the upload, where it is (file, and line when known), and what."""

    file: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class ImportedSpan:
    id: str
    label: str
    fragments: tuple[Fragment, ...]
    attributes: dict[str, Any] = field(default_factory=dict)
    concept_system: str | None = None
    concept_code: str | None = None
    concept_name: str | None = None
    notes: tuple[str, ...] = ()
    confidence: float | None = None  # a pre-label's, where the file gives one (JSONL ``confidence``)
    status: str | None = None  # pending or confirmed where the file says (JSONL ``status``); else its layer's
    line: int | None = field(default=None, compare=False, kw_only=True)  # its line in the .ann
    attribute_lines: dict[str, int] = field(default_factory=dict, compare=False, kw_only=True)


@dataclass(frozen=True)
class ImportedRelation:
    id: str
    type: str
    head: str
    tail: str
    line: int | None = field(default=None, compare=False, kw_only=True)  # its line in the .ann


@dataclass
class ImportedDocument:
    external_id: str
    text: str
    source_file: str
    metadata: dict[str, Any] = field(default_factory=dict)
    spans: list[ImportedSpan] = field(default_factory=list)
    relations: list[ImportedRelation] = field(default_factory=list)
    unmodelled: list[str] = field(default_factory=list)
    has_annotations: bool = False


@dataclass
class UploadContents:
    documents: list[ImportedDocument] = field(default_factory=list)
    annotation_conf: str | None = None
    problems: list[UploadProblem] = field(default_factory=list)
    warnings: list[UploadProblem] = field(default_factory=list)
    total_bytes: int = 0


def decode_text(name: str, raw: bytes, problems: list[UploadProblem]) -> str | None:
    """Strict UTF-8, no NUL bytes, not empty; the text exactly as decoded (BOM and CR kept)."""
    if not raw.strip():
        problems.append(UploadProblem(name, "the file is empty"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        problems.append(UploadProblem(name, f"invalid UTF-8 at byte {error.start}", line))
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        problems.append(UploadProblem(name, "contains a NUL byte: not a text file", line))
        return None
    return text


def _safe_member(name: str) -> bool:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in name.replace("\\", "/").split("/")


# An archive inside the upload's archive is refused rather than unpacked: each would get a size budget
# of its own (a zip of zips multiplies what one upload unpacks to).
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar", ".zst")


def _entry_refusal(member: zipfile.ZipInfo) -> str | None:
    """Why a zip entry is refused: a symbolic link (its "text" would be the link's target), a device,
    a FIFO or a socket, or an archive of its own. None for a plain file."""
    mode = member.external_attr >> 16  # the Unix mode, when a Unix zip tool wrote one
    kind = stat.S_IFMT(mode)
    if kind and kind != stat.S_IFREG:
        what = "a symbolic link" if kind == stat.S_IFLNK else "a device, FIFO or socket"
        return f"{what} is not a note file: refused"
    if member.filename.lower().endswith(ARCHIVE_SUFFIXES):
        return "an archive inside the archive is refused: unpack it and upload its files"
    return None


class _Reader:
    def __init__(self, limits: UploadLimits, brat_reader):
        self.limits = limits
        # (external id, text, ann, source) -> (ImportedDocument, problems, warnings)
        self.brat_reader = brat_reader
        self.result = UploadContents()
        self.texts: dict[str, tuple[str, str]] = {}  # stem -> (file name, text)
        self.anns: dict[str, tuple[str, str]] = {}
        self.blank_texts: dict[str, tuple[str, bytes]] = {}  # stem -> (file name, raw white space)

    def problem(self, file: str, message: str, line: int | None = None) -> None:
        self.result.problems.append(UploadProblem(file, message, line))

    def add_file(self, name: str, raw: bytes) -> None:
        lower = name.lower()
        if lower.endswith(".zip"):
            self.add_zip(name, raw)
            return
        self.result.total_bytes += len(raw)  # a zip counts by what it unpacks to
        if len(raw) > self.limits.max_file_bytes:
            self.problem(
                name, f"{len(raw):,} bytes is over the limit of {self.limits.max_file_bytes:,} per file"
            )
            return
        if posixpath.basename(lower) == "annotation.conf":
            text = decode_text(name, raw, self.result.problems)
            if text is not None:
                self.result.annotation_conf = text
            return
        stem, suffix = posixpath.splitext(name)
        if suffix.lower() not in (".txt", ".ann", ".jsonl", ".csv"):
            self.result.warnings.append(
                UploadProblem(name, "not a note (.txt, .ann, .jsonl, .csv): left out")
            )
            return
        if suffix.lower() == ".txt" and raw and not raw.strip():
            self.blank_texts[stem] = (name, raw)  # fine beside an .ann (a brat pair with nothing in it)
            return
        text = decode_text(name, raw, self.result.problems) if suffix.lower() != ".ann" or raw.strip() else ""
        if text is None:
            return
        if suffix.lower() in (".txt", ".ann"):
            seen = self.texts if suffix.lower() == ".txt" else self.anns
            if stem in seen:
                self.problem(name, f"the same file also comes from {seen[stem][0]}")
                return
            seen[stem] = (name, text)
        elif suffix.lower() == ".jsonl":
            self.add_jsonl(name, text)
        else:
            self.add_csv(name, text)

    def add_zip(self, name: str, raw: bytes) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(raw))
            members = archive.infolist()
        except zipfile.BadZipFile:
            self.problem(name, "not a readable zip file")
            return
        total = 0
        for member in members:
            where = f"{name}:{member.filename}"
            if member.is_dir() or any(part in member.filename for part in IGNORED):
                continue
            if not _safe_member(member.filename):
                self.problem(where, "a path outside the archive (absolute or with '..') is refused")
                return
            if refusal := _entry_refusal(member):
                self.problem(where, refusal)
                return
            if member.file_size > self.limits.max_file_bytes:
                self.problem(
                    where,
                    f"{member.file_size:,} bytes is over the limit of "
                    f"{self.limits.max_file_bytes:,} per file",
                )
                return
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size > 1024 and ratio > self.limits.zip_max_ratio:
                self.problem(
                    where,
                    f"compressed {ratio:.0f}:1, over the limit of "
                    f"{self.limits.zip_max_ratio:.0f}:1 (a zip bomb?)",
                )
                return
            total += member.file_size
            if total > self.limits.max_batch_bytes:
                self.problem(name, f"unpacks to more than {self.limits.max_batch_bytes:,} bytes")
                return
        for member in members:
            if member.is_dir() or any(part in member.filename for part in IGNORED):
                continue
            try:
                with archive.open(member) as handle:
                    # read at most the declared size + 1: a lying header cannot inflate past the limit
                    data = handle.read(member.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError):
                self.problem(
                    f"{name}:{member.filename}", "damaged or unreadable entry (encrypted, or a bad CRC)"
                )
                return
            if len(data) > member.file_size:
                self.problem(f"{name}:{member.filename}", "entry larger than its header says")
                return
            self.add_file(member.filename, data)

    def add_jsonl(self, name: str, text: str) -> None:
        from app.domain.jsonl import JsonlError, parse_jsonl

        try:
            for document in parse_jsonl(text, name):
                self.result.documents.append(document.to_imported(name))
        except JsonlError as error:
            self.problem(name, error.message, error.line)

    def add_csv(self, name: str, text: str) -> None:
        # Excel's "CSV UTF-8" starts with a byte-order mark that would rename the first column
        reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
        columns = reader.fieldnames or []
        if "id" not in columns or "text" not in columns:
            self.problem(name, f"needs the columns id and text (found: {', '.join(columns) or 'none'})", 1)
            return
        for row in reader:
            line = reader.line_num
            if None in row:
                self.problem(name, "more values than columns", line)
                continue
            external_id, note = (row.get("id") or "").strip(), row.get("text") or ""
            if not external_id:
                self.problem(name, "id is empty", line)
                continue
            if not note.strip():
                self.problem(name, f"text of {external_id} is empty", line)
                continue
            metadata = {k: v for k, v in row.items() if k not in ("id", "text") and v not in (None, "")}
            self.result.documents.append(ImportedDocument(external_id, note, name, metadata))

    def finish(self) -> UploadContents:
        for stem, (name, raw) in self.blank_texts.items():
            if stem in self.anns:
                # A corpus comes back whole: a blank note of a brat pair is stored as it is.
                self.texts[stem] = (name, raw.decode("ascii"))
                self.result.warnings.append(UploadProblem(name, "only white space: stored as it is"))
            else:
                self.problem(name, "the file holds only white space")
        for stem, (ann_name, _) in self.anns.items():
            if stem not in self.texts:
                self.problem(ann_name, "an .ann file needs its .txt beside it")
        # A note's id is its path without extension, less the folder every note shares (a zipped
        # folder's name): ids stay short, and same-named notes in different folders stay apart.
        common = (
            posixpath.commonpath(list(self.texts))
            if len(self.texts) > 1
            else posixpath.dirname(next(iter(self.texts), ""))
        )
        if common in self.texts:
            common = posixpath.dirname(common)
        for stem, (txt_name, text) in self.texts.items():
            external_id = stem[len(common) :].lstrip("/") if common else stem
            if stem in self.anns:
                ann_name, ann = self.anns[stem]
                document, problems, warnings = self.brat_reader(external_id, text, ann, ann_name)
                document.source_file = txt_name
                self.result.problems.extend(problems)
                self.result.warnings.extend(warnings)
                self.result.documents.append(document)
            else:
                self.result.documents.append(ImportedDocument(external_id, text, txt_name))
        seen: dict[str, str] = {}
        for document in self.result.documents:
            if len(document.external_id) > MAX_ID_LENGTH:
                self.problem(
                    document.source_file,
                    f"note id is {len(document.external_id)} characters long; at most {MAX_ID_LENGTH}",
                )
            if document.external_id in seen:
                self.problem(
                    document.source_file,
                    f"note id '{document.external_id}' also comes from {seen[document.external_id]}",
                )
            seen.setdefault(document.external_id, document.source_file)
        if len(self.result.documents) > self.limits.max_documents:
            self.problem(
                "(batch)",
                f"{len(self.result.documents):,} notes is over the limit of "
                f"{self.limits.max_documents:,} per batch",
            )
        if self.result.total_bytes > self.limits.max_batch_bytes:
            self.problem(
                "(batch)",
                f"{self.result.total_bytes:,} bytes is over the limit of "
                f"{self.limits.max_batch_bytes:,} per batch",
            )
        if not self.result.documents and not self.result.problems:
            self.problem("(batch)", "no notes found (.txt, .zip, .jsonl or .csv)")
        return self.result


def first_differing_line(stored: str, incoming: str) -> int:
    """The number (from 1) of the first line of ``incoming`` that is not the same line of ``stored``."""
    old, new = stored.splitlines(keepends=True), incoming.splitlines(keepends=True)
    for number, (a, b) in enumerate(zip(old, new, strict=False), 1):
        if a != b:
            return number
    return min(len(old), len(new)) + 1


def read_upload(files: list[tuple[str, bytes]], limits: UploadLimits, brat_reader) -> UploadContents:
    """Read every file of an upload; ``problems`` says what is wrong, and where."""
    reader = _Reader(limits, brat_reader)
    for name, raw in files:
        reader.add_file(name, raw)
    return reader.finish()


def labels_of(documents: list[ImportedDocument]) -> dict[str, Any]:
    """The labels the documents use, in the shape brat.label_schema_from_conf takes as data labels."""
    entities: dict[str, None] = {}
    relations: dict[str, dict[str, list[str]]] = {}
    attributes: dict[str, dict[str, list[str]]] = {}
    for document in documents:
        label_of = {s.id: s.label for s in document.spans}
        for span in document.spans:
            entities.setdefault(span.label)
            for name, value in span.attributes.items():
                found = attributes.setdefault(name, {"values": [], "applies_to": []})
                value = "true" if value is True else str(value)
                for key, item in (("values", value), ("applies_to", span.label)):
                    if item not in found[key]:
                        found[key].append(item)
        for relation in document.relations:
            found = relations.setdefault(relation.type, {"head_types": [], "tail_types": []})
            for side, arg in (("head_types", relation.head), ("tail_types", relation.tail)):
                if arg in label_of and label_of[arg] not in found[side]:
                    found[side].append(label_of[arg])
    return {"entities": list(entities), "relations": relations, "attributes": attributes}
