"""A fake OpenAI-compatible LLM on loopback that answers from gold annotations, with controlled noise.

For tests, benchmarks and the demo: a real HTTP server on a real port (``ThreadingHTTPServer`` in a
background thread), so the client, its retries and its concurrency limit are exercised for real.
The answer to a prompt is rendered from the gold spans of the chunk, written independently from the
wire contract (/tmp/contract/CONTRACT.md) so that the resolver can be tested against it.

Every random choice is a hash of (seed, chunk text, span or token), never a shared generator, so a
prompt gets the same answer whatever the order or concurrency of the requests. Faults that must pass
on retry (errors, time-outs, broken bodies) also hash the number of times that prompt was seen.

``served`` records what each request got, including ``returned_spans``: the spans (chunk offsets) that
a correct resolver reads from the answer, so pipeline tests can compute the recall they should see.

Augmentation prompts (app.domain.augmentation: AUGMENT_PHRASE in the system message) get the passage
back with the segment reworded: clinical paraphrases of the text outside the markers, which depend on
the variant asked for, and a lead-in ("Of note, ") where that alone would not make the variant new.
The markers and their text are left exactly as they were. ``augment_faults`` (by chance) and
``augment_fault_by_variant`` (always) spoil the answer in one of the ways AUGMENT_FAULTS name, each
of which the app must reject.
"""

import argparse
import hashlib
import itertools
import json
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from app.domain.augmentation import (
    AUGMENT_PHRASE,
    PASSAGE_END,
    PASSAGE_START,
    REWRITE_CLOSE,
    REWRITE_OPEN,
)
from app.domain.label_schema import LabelSchema
from app.domain.tokens import Token, token_index_at, tokenize

TEXT_START = "Text:\n<<<\n"
TEXT_END = "\n>>>"
IOB_PHRASE = "one line per token"
DIRECT_PHRASE = "list the entities"
GARBAGE_ANSWER = "I cannot help with that."
QUIRKS = ("code_fence", "prose", "yaml_for_json", "wrong_case", "misspell")
_WORD = re.compile(r"\w")
_ALPHA_WORD = re.compile(r"[^\W\d_]{5,}")
# How an augmentation answer can be spoiled; the reason app.domain.augmentation rejects each with is
# in the comment (freedom "light" for change_entity_text).
AUGMENT_FAULTS = (
    "drop_marker",  # the first marker taken off its text: dropped_marker (lost_relation_argument)
    "invent_marker",  # a word outside the markers marked with a new id: invented_marker
    "unbalance",  # one closing ]] removed: unbalanced_marker
    "break_marker",  # one header written [[Label #id without its colon: broken_marker
    "change_context",  # a word of the context around the segment changed: changed_context
    "wrong_label",  # one marker given another label of the schema: changed_label
    "unknown_label",  # one marker given the label Nonsense: unknown_label
    "change_entity_text",  # a word of one marker's text changed: changed_entity_text
    "prose_only",  # prose, no passage: no_passage
)
PROSE_AUGMENT_ANSWER = "Here is a reworded version: the patient was started on the same medication."
UNKNOWN_LABEL = "Nonsense"
# A marker's header, or a run of closing brackets (which may hold the marked text's own "]").
_MARKUP = re.compile(r"\[\[([A-Za-z][A-Za-z0-9_\-]*)#(\d+):[ ]?|\]{2,}")
_VARIANT = re.compile(r"\bvariant (\d+) of \d+")
# The fake model's clinical paraphrases; variant K says each the K-th way (in turn).
_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "reported": ("said", "stated", "noted"),
    "reports": ("says", "states", "notes"),
    "given": ("started on", "put on", "prescribed"),
    "patient": ("pt",),
    "daily": ("every day", "once a day", "each day"),
    "with": ("alongside", "along with", "together with"),
    "and": ("plus", "as well as"),
    "started": ("began", "commenced"),
    "stopped": ("discontinued", "held"),
    "denies": ("reports no", "has no"),
    "history of": ("hx of",),
    "due to": ("because of", "owing to"),
    "after": ("following",),
    "increased": ("raised", "uptitrated"),
    "decreased": ("lowered", "reduced"),
}
_PARAPHRASE = re.compile(
    r"(?<!\w)(" + "|".join(sorted(map(re.escape, _PARAPHRASES), key=len, reverse=True)) + r")(?!\w)",
    re.IGNORECASE,
)
# None is a prefix of another (lower-cased too), so different sequences of them are different strings.
_LEAD_INS = (
    "Of note, ",
    "Also, ",
    "Then ",
    "In addition, ",
    "Later, ",
    "Again, ",
    "Meanwhile, ",
    "Notably, ",
)
_TITLE_WORD = re.compile(r"[A-Z][a-z]+(?![^\W\d_])")
_LETTERS = re.compile(r"[^\W\d_]+")
_ALNUM = re.compile(r"[A-Za-z]+|[0-9]+")


@dataclass
class GoldNote:
    """A note's text and its gold annotation: spans (label, start, end) and relations (type, head, tail)."""

    text: str
    spans: list[tuple[str, int, int]] = field(default_factory=list)  # note offsets
    relations: list[tuple[str, int, int]] = field(default_factory=list)  # indices into spans


@dataclass
class FakeBehaviour:
    """How far from the gold the fake model strays, and which faults its server shows."""

    missed: float = 0  # fraction of gold spans left out
    spurious: float = 0  # chance that a word token outside gold spans becomes a made-up span
    jitter: float = 0  # fraction of spans with one boundary moved by one token
    wrong_label: float = 0  # fraction of spans given another entity type
    latency_ms: float = 0  # added to every request
    errors: dict[int, float] = field(default_factory=dict)  # status -> chance per request
    retry_after_seconds: float | None = None  # sent as Retry-After with every 429 and 503
    timeout_rate: float = 0  # chance per request of hanging for hang_seconds before answering
    hang_seconds: float = 5.0
    garbage_rate: float = 0  # chance per chunk of answering prose with no entities
    garbage_first: int = 0  # the first N requests of each distinct prompt get prose with no entities
    malformed_rate: float = 0  # chance per request of a 200 whose body is not a chat completion
    quirks: list[str] = field(default_factory=list)  # any of QUIRKS
    fail_first: int = 0  # the first N requests of each distinct prompt get fail_first_status
    fail_first_status: int = 500
    hang_first: int = 0  # the first N requests of each distinct prompt hang for hang_seconds
    malformed_first: int = 0  # the first N requests of each distinct prompt get a broken 200 body
    structured_output: bool = True  # False: a request with response_format gets 400, like older servers
    # Augmentation answers: fault -> chance per request (at most one fault an answer; the chances add
    # up, like errors'), and faults that variant K always gets (before any drawn by chance).
    augment_faults: dict[str, float] = field(default_factory=dict)  # any of AUGMENT_FAULTS
    augment_fault_by_variant: dict[int, str] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.quirks) - set(QUIRKS))
        if unknown:
            raise ValueError(f"unknown quirks {unknown}; known: {', '.join(QUIRKS)}")
        unknown = sorted(set(self.augment_faults) | set(self.augment_fault_by_variant.values()))
        unknown = [name for name in unknown if name not in AUGMENT_FAULTS]
        if unknown:
            raise ValueError(f"unknown augment faults {unknown}; known: {', '.join(AUGMENT_FAULTS)}")


@dataclass(frozen=True)
class ServedAnswer:
    """What one chat-completion request got; spans are (label, start, end) in chunk offsets."""

    chunk_text: str  # for an augmentation: the segment without its markers
    prompt_schema: str | None  # "iob_token", "direct_chunk", "augment", or None when the prompt says none
    gold_spans_in_chunk: list[tuple[str, int, int]]  # for an augmentation: the segment's markers
    # What the answer means, after noise; [] for a fault. For an augmentation: the spans the rewritten
    # segment marks, in offsets of the rewritten segment without markers.
    returned_spans: list[tuple[str, int, int]]
    status: int
    variant: int | None = None  # an augmentation's variant K
    augment_fault: str | None = None  # the one of AUGMENT_FAULTS the augmentation answer shows


@dataclass(frozen=True)
class RequestSeen:
    """The parts of a request a test may check; never the key itself nor the messages."""

    path: str
    auth_scheme: str | None  # "Bearer" for Authorization: Bearer ..., None without the header
    api_key_header: bool  # Azure's ``api-key`` header was present
    api_version: str | None  # Azure's ``?api-version=``
    structured: bool  # the request carried a response_format
    model: str | None


@dataclass(frozen=True)
class AugmentPrompt:
    """What an augmentation prompt asks for: the passage (context, marked segment) and the variant."""

    left: str  # the context before the segment, as the passage has it
    marked: str  # the segment, with its markers
    right: str
    variant: int  # K of "variant K of N"; 1 when the prompt does not say
    text: str  # the segment without markers
    spans: list[tuple[str, int, int]]  # its markers: (label, start, end) in ``text``


@dataclass
class _Piece:
    """A piece of a marked segment: text, a marker's header, or a run of closing brackets."""

    kind: str  # "text", "open" or "close"
    raw: str
    depth: int = 0  # text: how many markers are open around it
    label: str = ""  # open
    ident: int = 0  # open
    closing: tuple[int, ...] = ()  # close: the opens (indices of pieces) the run closes


@dataclass
class _Mention:
    label: str
    start: int
    end: int
    groups: tuple[int, ...]


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by the parts: the fake's only source of randomness."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _text_of(content: Any) -> str:
    """A message's text, whether given as a string or as OpenAI content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def chunk_of(messages: Sequence[dict[str, Any]]) -> str | None:
    """The chunk of the last user message: between the first TEXT_START and the last TEXT_END."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    content = _text_of(users[-1].get("content"))
    start = content.find(TEXT_START)
    end = content.rfind(TEXT_END)
    if start < 0 or end < start + len(TEXT_START) - 1:
        return None
    # An empty chunk shares the marker's last newline with the end marker.
    return content[start + len(TEXT_START) : end] if end >= start + len(TEXT_START) else ""


def prompt_schema_of(messages: Sequence[dict[str, Any]], response_format: Any) -> str | None:
    """Which answer the prompt asks for, from the system message's phrases (or the JSON schema's name)."""
    system = " ".join(
        _text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"
    )
    if AUGMENT_PHRASE in system:
        return "augment"
    if IOB_PHRASE in system:
        return "iob_token"
    if DIRECT_PHRASE in system:
        return "direct_chunk"
    if isinstance(response_format, dict):
        name = (response_format.get("json_schema") or {}).get("name")
        if name in ("iob_token", "direct_chunk"):
            return name
    return None


def augment_prompt_of(messages: Sequence[dict[str, Any]]) -> AugmentPrompt | None:
    """The passage of the last user message (between PASSAGE_START and the last PASSAGE_END), cut at the
    first <rewrite> and the last </rewrite>, and the variant asked for before it; None without one."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    content = _text_of(users[-1].get("content"))
    start = content.find(PASSAGE_START)
    end = content.rfind(PASSAGE_END)
    if start < 0 or end < start + len(PASSAGE_START):
        return None
    passage = content[start + len(PASSAGE_START) : end]
    opened, closed = passage.find(REWRITE_OPEN), passage.rfind(REWRITE_CLOSE)
    if opened < 0 or closed < opened + len(REWRITE_OPEN):
        return None
    marked = passage[opened + len(REWRITE_OPEN) : closed]
    _, text, spans = _parsed(marked)
    variant = _VARIANT.search(content[:start])  # not in the passage: the note may say "variant"
    return AugmentPrompt(
        left=passage[:opened],
        marked=marked,
        right=passage[closed + len(REWRITE_CLOSE) :],
        variant=int(variant.group(1)) if variant else 1,
        text=text,
        spans=spans,
    )


def _parsed(marked: str) -> tuple[list[_Piece], str, list[tuple[str, int, int]]]:
    """A marked segment's pieces, its text without markers, and the spans it marks (label, start, end).

    Brackets of the text itself are read as app.domain.augmentation.decode documents: a "[" just before
    a header is text, and a run of "]" closes the open markers innermost first, each after the "]" that
    match its text's own "[" (with at least a "]]" left for it); a "]" left over is text after them.
    """
    pieces: list[_Piece] = []
    plain: list[str] = []
    stack: list[tuple[int, int]] = []  # (index of the open piece, where its text starts in plain)
    spans: list[tuple[str, int, int]] = []
    position = 0
    for match in _MARKUP.finditer(marked):
        if match.start() > position:
            pieces.append(_Piece("text", marked[position : match.start()], depth=len(stack)))
            plain.extend(marked[position : match.start()])
        position = match.end()
        if match.group(1) is not None:
            stack.append((len(pieces), len(plain)))
            pieces.append(_Piece("open", match.group(), label=match.group(1), ident=int(match.group(2))))
            continue
        left, closing = len(match.group()), []
        while left >= 2 and stack:
            opened, start = stack[-1]
            inner = plain[start:]
            if left >= 3 and inner.count("[") > inner.count("]"):
                plain.append("]")
                left -= 1
                continue
            stack.pop()
            closing.append(opened)
            spans.append((pieces[opened].label, start, len(plain)))
            left -= 2
        plain.extend("]" * left)
        pieces.append(_Piece("close", match.group(), depth=len(stack), closing=tuple(closing)))
    if position < len(marked):
        pieces.append(_Piece("text", marked[position:], depth=len(stack)))
        plain.extend(marked[position:])
    return pieces, "".join(plain), sorted(spans, key=lambda span: (span[1], -span[2], span[0]))


def _paraphrased(text: str, variant: int) -> str:
    """Text with the words of the paraphrase table said the variant's way, in the word's case."""

    def say(match: re.Match[str]) -> str:
        word = match.group()
        if not word.isascii():  # "ſ" matches "s" when cases are ignored; non-ASCII text stays as it is
            return word
        ways = _PARAPHRASES[word.lower()]
        said = ways[(variant - 1) % len(ways)]
        if word.isupper() and len(word) > 1:
            return said.upper()
        return said[0].upper() + said[1:] if word[0].isupper() else said

    return _PARAPHRASE.sub(say, text)


def _lead_ins() -> Iterator[str]:
    """ "", then every lead-in, then every two of them ("Of note, also, "), and so on: all different."""
    yield ""
    for n in itertools.count(1):
        for leads in itertools.product(_LEAD_INS, repeat=n):
            yield leads[0] + "".join(lead[0].lower() + lead[1:] for lead in leads[1:])


def _reworded(marked: str, variant: int) -> str:
    """The marked segment reworded outside its markers, differently for each variant and never as it was.

    Variant K says the table's words the K-th way; where that gives the segment back, or the text of a
    variant before K, a lead-in goes first (the first of _lead_ins that makes it new)."""
    pieces = _parsed(marked)[0]
    used: set[str] = set()
    result = marked
    for k in range(1, max(variant, 1) + 1):
        said = [
            _paraphrased(piece.raw, k) if piece.kind == "text" and piece.depth == 0 else piece.raw
            for piece in pieces
        ]
        for lead in _lead_ins():
            result = _led_in(pieces, said, lead)
            if result != marked and result not in used:
                break
        used.add(result)
    return result


def _led_in(pieces: list[_Piece], said: list[str], lead: str) -> str:
    """The segment with a lead-in after its leading blanks, lower-casing the title-case ASCII word after."""
    if not lead:
        return "".join(said)
    if not pieces or pieces[0].kind != "text":
        return lead + "".join(said)
    first = said[0]
    blank = len(first) - len(first.lstrip())
    rest = first[blank:]
    if _TITLE_WORD.match(rest):
        rest = rest[0].lower() + rest[1:]
    return first[:blank] + lead + rest + "".join(said[1:])


def _altered(text: str, draw: float) -> str:
    """The text with one ASCII word's first letter in the other case or one number plus one (chosen by
    `draw`), or with " too" after it when it has neither: always another text."""
    found = list(_ALNUM.finditer(text))
    if not found:
        return f"{text} too"
    match = found[int(draw * len(found))]
    word = match.group()
    new = str(int(word) + 1) if word.isdigit() else word[0].swapcase() + word[1:]
    return text[: match.start()] + new + text[match.end() :]


def _spoiled(fault: str, pieces: list[_Piece], labels: Sequence[str], *key: object) -> bool:
    """Apply a fault (not change_context nor prose_only) to a marked segment's pieces, in place; False
    when the segment has nothing it could apply to (no marker, or no other label for wrong_label)."""
    draw, other_draw = _unit("augment_fault_at", *key), _unit("augment_fault_other", *key)
    opens = [piece for piece in pieces if piece.kind == "open"]
    closes = [piece for piece in pieces if piece.kind == "close" and piece.closing]
    if fault == "invent_marker":
        words = [
            (piece, match)
            for piece in pieces
            if piece.kind == "text" and piece.depth == 0
            for match in _LETTERS.finditer(piece.raw)
        ]
        if not words:
            return False
        piece, word = words[int(draw * len(words))]
        names = sorted({p.label for p in opens}) or list(labels)
        if not names:
            return False
        label = names[int(other_draw * len(names))]
        ident = max((p.ident for p in opens), default=0) + 1
        marker = f"[[{label}#{ident}: {word.group()}]]"
        piece.raw = piece.raw[: word.start()] + marker + piece.raw[word.end() :]
        return True
    if fault == "change_entity_text":
        texts = [piece for piece in pieces if piece.kind == "text" and piece.depth > 0 and piece.raw.strip()]
        if not texts:
            return False
        piece = texts[int(draw * len(texts))]
        piece.raw = _altered(piece.raw, other_draw)
        return True
    if not opens:
        return False
    if fault == "drop_marker":
        first = pieces.index(opens[0])
        opens[0].raw = ""
        for piece in closes:
            if first in piece.closing:
                piece.raw = piece.raw[2:]
        return True
    if fault == "unbalance":
        if not closes:
            return False
        piece = closes[int(draw * len(closes))]
        piece.raw = piece.raw[2:]
        return True
    piece = opens[int(draw * len(opens))]
    if fault == "break_marker":
        piece.raw = f"[[{piece.label} #{piece.ident} "
        return True
    if fault == "wrong_label":
        others = [label for label in labels if label != piece.label]
        if not others:
            return False
        label = others[int(other_draw * len(others))]
    elif fault == "unknown_label":
        label = UNKNOWN_LABEL
        while label in labels:
            label += "x"
    else:
        raise ValueError(f"not a fault of the segment: {fault}")
    piece.raw = piece.raw.replace(f"[[{piece.label}#", f"[[{label}#", 1)
    return True


def _changed_context(left: str, right: str, *key: object) -> tuple[str, str]:
    """(left, right) with a word of one of them changed (one that has a word; the right one if neither)."""
    sides = [side for side, context in (("left", left), ("right", right)) if _ALNUM.search(context)]
    side = sides[int(_unit("augment_context_side", *key) * len(sides))] if sides else "right"
    draw = _unit("augment_context_word", *key)
    return (_altered(left, draw), right) if side == "left" else (left, _altered(right, draw))


class _IndentedDumper(yaml.SafeDumper):
    """YAML with list items indented under their key, as the contract's example and models write it."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _yaml(payload: Any) -> str:
    return yaml.dump(
        payload,
        Dumper=_IndentedDumper,
        sort_keys=False,
        allow_unicode=True,
        width=10**6,
        default_flow_style=False,
    )


def _wrong_case(text: str) -> str:
    return text.upper() if text.islower() else text.lower()


def _misspell(text: str, *key: object) -> str:
    """Swap two adjacent inner letters of the first word of five letters or more (a typo)."""
    match = _ALPHA_WORD.search(text)
    if match is None:
        return text
    word = match.group()
    i = 1 + int(_unit("misspell", *key) * (len(word) - 3))
    if word[i] == word[i + 1]:
        typo = word[:i] + word[i + 1 :]  # a doubled letter written once
    else:
        typo = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return text[: match.start()] + typo + text[match.end() :]


class FakeLlmServer:
    """An OpenAI-compatible server on loopback answering from gold notes; ``start()`` gives its URL."""

    def __init__(
        self,
        notes: Sequence[GoldNote],
        label_schema: LabelSchema,
        behaviour: FakeBehaviour | None = None,
        *,
        model: str = "clinann-fake",
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.notes = list(notes)
        self.labels = [entity.name for entity in label_schema.entity_types]
        self.behaviour = behaviour or FakeBehaviour()
        self.model = model
        self._address = (host, port)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        self.reset()

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        """Listen and serve in a background thread; return the base URL (``http://127.0.0.1:PORT/v1``)."""
        if self._httpd is not None:
            return self.base_url
        self._stopping.clear()
        httpd = _HttpServer(self._address, _Handler)
        httpd.fake = self
        self._httpd = httpd
        # A short poll so that stop() returns at once: tests start and stop many servers.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-llm", daemon=True
        )
        self._thread.start()
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self.base_url

    def stop(self) -> None:
        """Stop serving; requests still hanging are woken and their answers dropped."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "FakeLlmServer":
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- what was served --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every request: records, counters and how often each prompt was seen."""
        with self._lock:
            self._served: list[ServedAnswer] = []
            self._requests: list[RequestSeen] = []
            self._prompt_counts: Counter[str] = Counter()
            self._request_count = 0
            self._in_flight = 0
            self._max_in_flight = 0

    @property
    def served(self) -> list[ServedAnswer]:
        """Every chat-completion request's outcome, in the order they were answered."""
        with self._lock:
            return list(self._served)

    @property
    def requests_seen(self) -> list[RequestSeen]:
        """What each chat-completion request carried (auth scheme, not the key)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Chat-completion requests received."""
        with self._lock:
            return self._request_count

    @property
    def prompt_counts(self) -> dict[str, int]:
        """How often each distinct prompt (sha256 of its messages) was asked."""
        with self._lock:
            return dict(self._prompt_counts)

    @property
    def max_in_flight(self) -> int:
        """The most chat-completion requests being worked on at the same time."""
        with self._lock:
            return self._max_in_flight

    # -- answering --------------------------------------------------------------------------------

    def locate(self, chunk: str) -> tuple[GoldNote, int] | None:
        """The first note containing the chunk verbatim, and where."""
        if not chunk:
            return None
        for note in self.notes:
            position = note.text.find(chunk)
            if position >= 0:
                return note, position
        return None

    def gold_in_chunk(self, chunk: str) -> tuple[list[tuple[str, int, int]], list[tuple[int, ...]]]:
        """The gold spans wholly inside the chunk (chunk offsets, by position) and the groups of each."""
        found = self.locate(chunk)
        if found is None:
            return [], []
        note, position = found
        inside = [
            i
            for i, (_, start, end) in enumerate(note.spans)
            if position <= start and end <= position + len(chunk)
        ]
        inside.sort(key=lambda i: (note.spans[i][1], note.spans[i][2]))
        known = set(inside)
        # An anchor (the medication) is the tail of a relation; its group is it and the spans related to it.
        members: dict[int, set[int]] = {}
        for _, head, tail in note.relations:
            if tail in known:
                members.setdefault(tail, {tail})
                if head in known:
                    members[tail].add(head)
        grouped = {i for group in members.values() for i in group}
        groups = list(members.values()) + [{i} for i in inside if i not in grouped]
        groups.sort(key=lambda group: min((note.spans[i][1], note.spans[i][2]) for i in group))
        of_span: dict[int, list[int]] = {i: [] for i in inside}
        for number, group in enumerate(groups, start=1):
            for i in group:
                of_span[i].append(number)
        spans = [(note.spans[i][0], note.spans[i][1] - position, note.spans[i][2] - position) for i in inside]
        return spans, [tuple(of_span[i]) for i in inside]

    def noisy_mentions(self, chunk: str) -> tuple[list[tuple[str, int, int]], list[_Mention]]:
        """(gold spans in the chunk, the mentions the fake model returns after noise), by position."""
        b = self.behaviour
        gold, gold_groups = self.gold_in_chunk(chunk)
        tokens = tokenize(chunk)
        mentions: list[_Mention] = []
        for (label, start, end), groups in zip(gold, gold_groups, strict=True):
            key = (b.seed, chunk, label, start, end)
            if _unit("missed", *key) < b.missed:
                continue
            if _unit("wrong_label", *key) < b.wrong_label:
                others = [name for name in self.labels if name != label]
                if others:
                    label = others[int(_unit("other_label", *key) * len(others))]
            if _unit("jitter", *key) < b.jitter:
                start, end = _jittered(chunk, tokens, start, end, _unit("jitter_way", *key))
            mentions.append(_Mention(label, start, end, groups))
        if b.spurious > 0:
            covered = [(start, end) for _, start, end in gold]
            next_group = len({g for groups in gold_groups for g in groups}) + 1
            for token in tokens:
                if not _WORD.match(chunk, token.start) or any(
                    s < token.end and token.start < e for s, e in covered
                ):
                    continue
                if _unit("spurious", b.seed, chunk, token.start, token.end) < b.spurious:
                    label = self.labels[
                        int(_unit("spurious_label", b.seed, chunk, token.start) * len(self.labels))
                    ]
                    mentions.append(_Mention(label, token.start, token.end, (next_group,)))
                    next_group += 1
        return gold, _renumbered(mentions)

    def render(
        self, chunk: str, prompt_schema: str, structured: bool
    ) -> tuple[str, list[tuple[str, int, int]]]:
        """The answer text for a chunk, quirks applied, and the spans it means (chunk offsets)."""
        b = self.behaviour
        _, mentions = self.noisy_mentions(chunk)
        if prompt_schema == "iob_token":
            payload, text_form, returned = _iob_answer(chunk, mentions, b)
        else:
            payload, text_form, returned = _direct_answer(chunk, mentions, b)
        if not structured:
            answer = text_form
        elif "yaml_for_json" in b.quirks:
            answer = _yaml(payload).rstrip("\n")
        else:
            answer = json.dumps(payload, ensure_ascii=False)
        if "code_fence" in b.quirks and not answer.startswith("```"):
            language = "json" if structured and "yaml_for_json" not in b.quirks else ""
            language = "yaml" if structured and "yaml_for_json" in b.quirks else language
            answer = f"```{language}\n{answer}\n```"
        if "prose" in b.quirks:
            answer = (
                f"Here are the annotations you asked for.\n\n{answer}\n\nLet me know if anything is unclear."
            )
        return answer, returned

    def augmentation(
        self, prompt: AugmentPrompt, prompt_key: str
    ) -> tuple[str, list[tuple[str, int, int]], str | None]:
        """(answer, spans it marks in the rewritten segment without markers ([] for a fault), the fault)."""
        b = self.behaviour
        fault = b.augment_fault_by_variant.get(prompt.variant)
        if fault is None:
            draw = _unit("augment_fault", b.seed, prompt_key)
            for name, chance in sorted(b.augment_faults.items()):
                if draw < chance:
                    fault = name
                    break
                draw -= chance
        key = (b.seed, prompt_key, fault)
        left, right = prompt.left, prompt.right
        pieces = _parsed(_reworded(prompt.marked, prompt.variant))[0]
        if fault == "change_context":
            left, right = _changed_context(left, right, *key)
        elif fault not in (None, "prose_only") and not _spoiled(fault, pieces, self.labels, *key):
            fault = None  # nothing to spoil: the answer stays right
        marked = "".join(piece.raw for piece in pieces)
        if fault == "prose_only":
            answer = PROSE_AUGMENT_ANSWER
        else:
            answer = f"{PASSAGE_START}{left}{REWRITE_OPEN}{marked}{REWRITE_CLOSE}{right}{PASSAGE_END}"
        # The quirks of how an answer is written; the others would change the marked text.
        if "code_fence" in b.quirks:
            answer = f"```\n{answer}\n```"
        if "prose" in b.quirks:
            answer = f"Here is the rewritten passage.\n\n{answer}\n\nLet me know if anything is unclear."
        return answer, [] if fault else _parsed(marked)[2], fault

    def _record(
        self,
        chunk: str | None,
        schema: str | None,
        status: int,
        returned: list | None = None,
        augment: AugmentPrompt | None = None,
        fault: str | None = None,
    ) -> None:
        if augment is not None:
            answer = ServedAnswer(
                augment.text,
                schema,
                list(augment.spans),
                list(returned or []),
                status,
                augment.variant,
                fault,
            )
        else:
            gold = self.gold_in_chunk(chunk)[0] if chunk else []
            answer = ServedAnswer(chunk or "", schema, gold, list(returned or []), status)
        with self._lock:
            self._served.append(answer)

    def chat(self, request: Any, seen: RequestSeen) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, extra headers) for one chat-completion request."""
        with self._lock:
            self._request_count += 1
            self._requests.append(seen)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._answer(request)
        finally:
            # Before the answer is written: once the client has it, it may send the next request.
            with self._lock:
                self._in_flight -= 1

    def _answer(self, request: Any) -> tuple[int, bytes, dict[str, str]]:
        b = self.behaviour
        messages = request.get("messages") if isinstance(request, dict) else None
        if not isinstance(messages, list):
            return _error(400, "messages must be a list")
        response_format = request.get("response_format")
        structured = isinstance(response_format, dict) and response_format.get("type") == "json_schema"
        chunk = chunk_of(messages)
        schema = prompt_schema_of(messages, response_format)
        augment = augment_prompt_of(messages) if schema == "augment" else None
        if augment is not None:
            chunk = augment.text

        def record(status: int, returned: list | None = None, fault: str | None = None) -> None:
            self._record(chunk, schema, status, returned, augment, fault)

        prompt_key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()
        with self._lock:
            seen_before = self._prompt_counts[prompt_key]
            self._prompt_counts[prompt_key] += 1
        if b.latency_ms > 0:
            self._stopping.wait(b.latency_ms / 1000)
        if response_format is not None and not b.structured_output:
            record(400)
            return _error(400, "response_format is not supported")
        if seen_before < b.fail_first:
            record(b.fail_first_status)
            return _error(b.fail_first_status, "deterministic fault", b.retry_after_seconds)
        if seen_before < b.hang_first or _unit("timeout", b.seed, prompt_key, seen_before) < b.timeout_rate:
            self._stopping.wait(b.hang_seconds)
        draw = _unit("errors", b.seed, prompt_key, seen_before)
        for status, chance in sorted(b.errors.items()):
            if draw < chance:
                record(status)
                return _error(status, "random fault", b.retry_after_seconds)
            draw -= chance
        if (
            seen_before < b.malformed_first
            or _unit("malformed", b.seed, prompt_key, seen_before) < b.malformed_rate
        ):
            record(200)
            return 200, b'{"id": "chatcmpl-broken", "choices": [{"message": ', {}
        returned: list[tuple[str, int, int]] = []
        fault = None
        if chunk is None or schema is None or (schema == "augment" and augment is None):
            content = "OK"  # a connection probe, or a prompt that asks for no known answer
        elif seen_before < b.garbage_first or _unit("garbage", b.seed, chunk) < b.garbage_rate:
            content = GARBAGE_ANSWER
        elif augment is not None:
            content, returned, fault = self.augmentation(augment, prompt_key)
        else:
            content, returned = self.render(chunk, schema, structured)
        record(200, returned, fault)
        prompt_chars = sum(len(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(content) // 4)
        body = {
            "id": f"chatcmpl-fake-{prompt_key[:12]}-{seen_before}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, json.dumps(body, ensure_ascii=False).encode("utf-8"), {}

    def models(self) -> bytes:
        """The body of GET /v1/models."""
        body = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "clinann"}]}
        return json.dumps(body).encode("utf-8")


def _jittered(chunk: str, tokens: list[Token], start: int, end: int, draw: float) -> tuple[int, int]:
    """The span with one boundary moved by one token (widened or narrowed), chosen by `draw`."""
    first = token_index_at(tokens, start)
    last = token_index_at(tokens, end - 1)
    if first >= len(tokens) or last >= len(tokens) or tokens[first].start >= end:
        return start, end
    if tokens[last].start >= end:
        last -= 1

    # Only to a word token: a resolver strips punctuation at the edges, which would undo the move.
    def word(i: int) -> bool:
        return bool(_WORD.match(chunk, tokens[i].start))

    ways = []
    if first > 0 and word(first - 1):
        ways.append((tokens[first - 1].start, end))
    if last + 1 < len(tokens) and word(last + 1):
        ways.append((start, tokens[last + 1].end))
    if last > first and word(first + 1):
        ways.append((tokens[first + 1].start, end))
    if last > first and word(last - 1):
        ways.append((start, tokens[last - 1].end))
    return ways[int(draw * len(ways))] if ways else (start, end)


def _renumbered(mentions: list[_Mention]) -> list[_Mention]:
    """Mentions by position, their groups renumbered 1.. in order of each group's first mention."""
    mentions = sorted(mentions, key=lambda m: (m.start, m.end))
    numbers: dict[int, int] = {}
    for mention in mentions:
        for group in mention.groups:
            numbers.setdefault(group, len(numbers) + 1)
    return [_Mention(m.label, m.start, m.end, tuple(sorted(numbers[g] for g in m.groups))) for m in mentions]


def _quirked(text: str, behaviour: FakeBehaviour, *key: object) -> str:
    if "wrong_case" in behaviour.quirks:
        text = _wrong_case(text)
    if "misspell" in behaviour.quirks:
        text = _misspell(text, behaviour.seed, *key)
    return text


def _iob_answer(
    chunk: str, mentions: list[_Mention], behaviour: FakeBehaviour
) -> tuple[dict[str, Any], str, list[tuple[str, int, int]]]:
    """(JSON payload, text form, spans meant) of an iob_token answer."""
    tokens = tokenize(chunk)
    tags: list[tuple[str, tuple[int, ...]] | None] = [None] * len(tokens)
    returned = []
    for mention in mentions:
        first = token_index_at(tokens, mention.start)
        indices = [i for i in range(first, len(tokens)) if tokens[i].start < mention.end]
        # One tag per token: a mention overlapping one already tagged cannot be said in IOB.
        if not indices or any(tags[i] is not None for i in indices):
            continue
        for n, i in enumerate(indices):
            tags[i] = (("B-" if n == 0 else "I-") + mention.label, mention.groups)
        returned.append((mention.label, tokens[indices[0]].start, tokens[indices[-1]].end))
    rows, lines = [], []
    for i, token in enumerate(tokens):
        word = chunk[token.start : token.end]
        tag = tags[i]
        if tag is None:
            rows.append({"token": word, "tag": "O", "groups": []})
            lines.append(f"{word}\tO")
            continue
        word = _quirked(word, behaviour, chunk, token.start)
        rows.append({"token": word, "tag": tag[0], "groups": list(tag[1])})
        lines.append(f"{word}\t{tag[0]}\t{','.join(map(str, tag[1]))}")
    return {"tokens": rows}, "\n".join(lines), returned


def _direct_answer(
    chunk: str, mentions: list[_Mention], behaviour: FakeBehaviour
) -> tuple[dict[str, Any], str, list[tuple[str, int, int]]]:
    """(JSON payload, text form, spans meant) of a direct_chunk answer."""
    occurrences = _occurrences(chunk)
    by_group: dict[int, list[_Mention]] = {}
    for mention in mentions:
        # The n-th listing of a string means its n-th occurrence, and a listing with no occurrence left
        # the one before. So an entity shared by groups (a reason for two drugs) is listed in each only
        # when its text occurs once; otherwise once, in its first group, losing the other relations.
        once = len(occurrences(chunk[mention.start : mention.end])) == 1
        for group in mention.groups if once else mention.groups[:1]:
            by_group.setdefault(group, []).append(mention)
    groups, listed = [], []
    for number in sorted(by_group):
        entities = []
        for mention in by_group[number]:
            exact = chunk[mention.start : mention.end]
            listed.append((mention.label, exact))
            entities.append(
                {"label": mention.label, "text": _quirked(exact, behaviour, chunk, mention.start)}
            )
        groups.append({"id": number, "entities": entities})
    payload = {"groups": groups}
    return payload, f"```yaml\n{_yaml(payload)}```", _meaning(chunk, listed)


def _occurrences(chunk: str) -> Callable[[str], list[int]]:
    """Where a string occurs in the chunk, at token boundaries ("80 mg" is not inside "180 mg").

    As a resolver that maps strings to mentions must; a string found nowhere on token boundaries
    counts wherever it is.
    """
    tokens = tokenize(chunk)
    starts, ends = {t.start for t in tokens}, {t.end for t in tokens}

    @cache
    def where(text: str) -> list[int]:
        anywhere = [m.start() for m in re.finditer(f"(?={re.escape(text)})", chunk)]
        return [i for i in anywhere if i in starts and i + len(text) in ends] or anywhere

    return where


def _meaning(chunk: str, listed: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """The spans listings mean: the n-th listing of a string is its n-th occurrence, else the one before."""
    occurrences = _occurrences(chunk)
    seen: Counter[str] = Counter()
    spans: set[tuple[str, int, int]] = set()
    for label, text in listed:
        found = occurrences(text)
        n = min(seen[text], len(found) - 1)
        seen[text] += 1
        if n >= 0:
            spans.add((label, found[n], found[n] + len(text)))
    return sorted(spans, key=lambda span: (span[1], span[2], span[0]))


def _error(status: int, message: str, retry_after: float | None = None) -> tuple[int, bytes, dict[str, str]]:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None and status in (429, 503) else {}
    body = {"error": {"message": message, "type": "fake_llm_error", "code": status}}
    return status, json.dumps(body).encode("utf-8"), headers


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # hanging requests must not hold stop() up
    request_queue_size = 128  # benchmarks open many connections at once
    fake: FakeLlmServer


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without this the body waits for the client's delayed ACK
    # (about 40 ms a request), which a benchmark of clinann would otherwise measure as clinann's cost.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do, so client pooling is exercised
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test output is not the place for access logs."""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            # The client gave up (a time-out) or the server is stopping: nobody is left to answer.
            self.close_connection = True

    def do_GET(self) -> None:
        """GET /v1/models."""
        if urlsplit(self.path).path.rstrip("/") == "/v1/models":
            self._send(200, self.server.fake.models())
        else:
            self._send(*_error(404, "not found"))

    def do_POST(self) -> None:
        """POST /v1/chat/completions."""
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.rstrip("/") != "/v1/chat/completions":
            self._send(*_error(404, "not found"))
            return
        try:
            request = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send(*_error(400, "body is not JSON"))
            return
        authorization = self.headers.get("Authorization")
        seen = RequestSeen(
            path=url.path,
            auth_scheme=authorization.split(" ", 1)[0] if authorization else None,
            api_key_header="api-key" in self.headers,
            api_version=(parse_qs(url.query).get("api-version") or [None])[0],
            structured=isinstance(request, dict) and request.get("response_format") is not None,
            model=request.get("model") if isinstance(request, dict) else None,
        )
        self._send(*self.server.fake.chat(request, seen))


def read_gold_dir(folder: Path) -> list[GoldNote]:
    """Gold notes from brat .txt/.ann pairs (one-fragment T lines; R lines as head=Arg1, tail=Arg2)."""
    from app.domain.brat import parse_ann

    notes = []
    for text_path in sorted(folder.glob("*.txt")):
        # bytes, then decode: read_text would turn CRLF into LF and shift every offset after it
        text = text_path.read_bytes().decode("utf-8")
        ann_path = text_path.with_suffix(".ann")
        if not ann_path.exists():
            notes.append(GoldNote(text))
            continue
        annotations = parse_ann(ann_path.read_bytes().decode("utf-8"), source=str(ann_path))
        index: dict[str, int] = {}
        spans = []
        for entity in annotations.entities.values():
            if len(entity.fragments) != 1:
                continue
            index[entity.id] = len(spans)
            spans.append((entity.label, entity.fragments[0].start, entity.fragments[0].end))
        relations = [
            (relation.type, index[relation.arg1], index[relation.arg2])
            for relation in annotations.relations
            if relation.arg1 in index and relation.arg2 in index
        ]
        notes.append(GoldNote(text, spans, relations))
    return notes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.llm.fake_server --gold DIR --port N [--missed 0.1 ...]``: serve until interrupted."""
    from app.domain.label_schema import parse_label_schema

    parser = argparse.ArgumentParser(prog="fake_server", description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, required=True, help="folder of brat .txt/.ann pairs")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--schema", type=Path, help="label schema JSON (default: the demo medication schema)")
    parser.add_argument("--model", default="clinann-fake")
    for name in (
        "missed",
        "spurious",
        "jitter",
        "wrong-label",
        "timeout-rate",
        "garbage-rate",
        "malformed-rate",
    ):
        parser.add_argument(f"--{name}", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--hang-seconds", type=float, default=5.0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on 429/503")
    parser.add_argument("--error", action="append", default=[], metavar="STATUS=RATE", help="e.g. 429=0.1")
    parser.add_argument("--quirk", action="append", default=[], choices=QUIRKS)
    parser.add_argument(
        "--augment-fault",
        action="append",
        default=[],
        metavar="VARIANT=FAULT",
        help=f"augmentation variant K always gets FAULT, e.g. 2=drop_marker ({', '.join(AUGMENT_FAULTS)})",
    )
    parser.add_argument(
        "--augment-fault-rate",
        action="append",
        default=[],
        metavar="FAULT=RATE",
        help="chance per augmentation answer, e.g. invent_marker=0.1",
    )
    parser.add_argument("--no-structured-output", action="store_true", help="answer 400 to response_format")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.schema is not None:
        schema_data = json.loads(args.schema.read_text(encoding="utf-8"))
    else:
        from app.demo.seed import MEDICATION_SCHEMA

        schema_data = MEDICATION_SCHEMA
    errors = {}
    for item in args.error:
        status, _, rate = item.partition("=")
        try:
            errors[int(status)] = float(rate)
        except ValueError:
            parser.error(f"--error {item!r}: expected STATUS=RATE, e.g. 429=0.1")
    by_variant = {}
    for item in args.augment_fault:
        variant, _, fault = item.partition("=")
        if not variant.isdigit() or fault not in AUGMENT_FAULTS:
            parser.error(
                f"--augment-fault {item!r}: expected VARIANT=FAULT, FAULT one of {', '.join(AUGMENT_FAULTS)}"
            )
        by_variant[int(variant)] = fault
    augment_faults = {}
    for item in args.augment_fault_rate:
        fault, _, rate = item.partition("=")
        try:
            augment_faults[fault] = float(rate)
        except ValueError:
            parser.error(f"--augment-fault-rate {item!r}: expected FAULT=RATE, e.g. invent_marker=0.1")
        if fault not in AUGMENT_FAULTS:
            parser.error(f"--augment-fault-rate {item!r}: FAULT is one of {', '.join(AUGMENT_FAULTS)}")
    behaviour = FakeBehaviour(
        missed=args.missed,
        spurious=args.spurious,
        jitter=args.jitter,
        wrong_label=args.wrong_label,
        latency_ms=args.latency_ms,
        errors=errors,
        retry_after_seconds=args.retry_after,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        garbage_rate=args.garbage_rate,
        malformed_rate=args.malformed_rate,
        quirks=args.quirk,
        fail_first=args.fail_first,
        structured_output=not args.no_structured_output,
        augment_faults=augment_faults,
        augment_fault_by_variant=by_variant,
        seed=args.seed,
    )
    server = FakeLlmServer(
        read_gold_dir(args.gold),
        parse_label_schema(schema_data),
        behaviour,
        model=args.model,
        host=args.host,
        port=args.port,
    )
    print(server.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
