"""Structured augmentation: rewrite an annotated segment of a note with an LLM, keeping its labels.

The published method (Wei, Li and Pillai; shared/design/llm-preannotation.md): a segment's spans are
written inline as markers, ``[[Drug#1: Nurtec]]``, the model rewrites the segment keeping every
marker, and the answer is decoded into new text with its spans (and, through the ids, its
relations). The rewritten segment replaces the original between the note's unchanged context.

Here a marker carries its label and an id (``#n``) so that relations survive the rewording and so
that a marker the model dropped, invented or relabelled is seen. Markers nest (a span inside
another); spans that cross without nesting, or span several fragments, cannot be written inline,
and their segment is skipped. Every answer is validated before it becomes a synthetic note, and a
rejected answer is kept with its reason. Offsets are code points, as everywhere in clinann.
"""

import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field

from app.domain.chunking import chunk_note
from app.domain.label_schema import LabelSchema

REWRITE_OPEN, REWRITE_CLOSE = "<rewrite>", "</rewrite>"
PASSAGE_START, PASSAGE_END = "<<<PASSAGE\n", "\nPASSAGE>>>"
AUGMENT_PHRASE = "rewrite the marked segment"  # the fake server recognises augmentation prompts by it
_HEADER = re.compile(r"\[\[([A-Za-z][A-Za-z0-9_\-]*)#(\d+):[ ]?")
FREEDOMS = {
    "light": "Reword lightly: change word order and wording around the markers; keep every marked "
    "text exactly as it is.",
    "moderate": "Paraphrase the segment freely, as another clinician would write it; keep every marked "
    "text exactly as it is.",
    "free": "Paraphrase freely; the text inside a marker may change too (another drug, dose or finding "
    "of the same kind), as long as it stays of its label.",
}
# Why an answer was not kept: the keys of a run's rejection counts.
REJECTIONS = {
    "no_passage": "the answer holds no passage with <rewrite> tags",
    "changed_context": "text outside the segment changed",
    "broken_marker": "a marker is not of the form [[Label#id: text]]",
    "unbalanced_marker": "markers open and close unevenly",
    "unknown_label": "a marker's label is not in the schema",
    "invented_marker": "a marker the segment did not have",
    "repeated_marker": "a marker appears twice",
    "dropped_marker": "a marker of the segment is missing",
    "lost_relation_argument": "a relation lost one of its spans",
    "changed_label": "a marker's label changed",
    "changed_entity_text": "a marked text changed, which this freedom does not allow",
    "empty_marker": "a marker marks no text",
    "unchanged": "the segment came back unchanged",
}


class Rejected(ValueError):
    """An answer that cannot become a synthetic note; ``reason`` is a key of REJECTIONS."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class Mention:
    """A span of the source note, with the id its marker carries."""

    id: int
    label: str
    start: int
    end: int


@dataclass(frozen=True)
class Link:
    """A relation between two mentions, by id."""

    type: str
    head: int
    tail: int


@dataclass(frozen=True)
class Segment:
    """A stretch of the note to rewrite, with the mentions inside it."""

    start: int
    end: int
    mentions: tuple[Mention, ...]


@dataclass
class Segments:
    chosen: list[Segment] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why segments with wanted spans were skipped


def mentions_of(spans: Iterable[tuple[str, Sequence[tuple[int, int]]]]) -> tuple[list[Mention], list[int]]:
    """Mentions numbered from 1 in text order, from (label, fragments); and the indices (into the given
    spans) of discontinuous spans, which cannot be marked inline and keep no id."""
    indexed = list(enumerate(spans))
    ordered = sorted(
        (i for i, (_, fragments) in indexed if len(fragments) == 1),
        key=lambda i: (indexed[i][1][1][0][0], -indexed[i][1][1][0][1], indexed[i][1][0]),
    )
    mentions = [
        Mention(n, indexed[i][1][0], indexed[i][1][1][0][0], indexed[i][1][1][0][1])
        for n, i in enumerate(ordered, start=1)
    ]
    return mentions, [i for i, (_, fragments) in indexed if len(fragments) != 1]


def _crossing(a: Mention, b: Mention) -> bool:
    return a.start < b.start < a.end < b.end or b.start < a.start < b.end < a.end


def choose_segments(
    text: str,
    mentions: Sequence[Mention],
    links: Sequence[Link],
    *,
    labels: set[str],
    relation_types: Set[str] = frozenset(),
    size: int = 250,
    discontinuous: Sequence[tuple[int, int]] = (),
) -> Segments:
    """Segments (sentence- and line-bounded stretches of about ``size`` characters, widened so that no
    span crosses their edge) holding a span of a wanted label or an argument of a wanted relation.
    A segment whose spans cannot all be marked (crossing spans, a discontinuous span) is skipped."""
    wanted = {m.id for m in mentions if m.label in labels}
    for link in links:
        if link.type in relation_types:
            wanted.update((link.head, link.tail))
    result = Segments()
    pieces = [(c.start, c.end) for c in chunk_note(text, size)]
    i = 0
    while i < len(pieces):
        start, end = pieces[i]
        i += 1
        # Widen over following pieces while a span crosses the end (a span never starts in a gap).
        while i < len(pieces) and any(m.start < end < m.end for m in mentions):
            end = pieces[i][1]
            i += 1
        inside = tuple(m for m in mentions if start <= m.start and m.end <= end)
        if not any(m.id in wanted for m in inside):
            continue
        if any(m.start < start < m.end for m in mentions) or any(
            _crossing(a, b) for a in inside for b in inside
        ):
            result.skipped["crossing_spans"] = result.skipped.get("crossing_spans", 0) + 1
            continue
        if any(a < end and start < b for a, b in discontinuous):
            result.skipped["discontinuous_span"] = result.skipped.get("discontinuous_span", 0) + 1
            continue
        segment = Segment(start, end, inside)
        if not _markable(text, segment):  # the note's own "[[" or "]]" would read as markers
            result.skipped["unmarkable_text"] = result.skipped.get("unmarkable_text", 0) + 1
            continue
        result.chosen.append(segment)
    return result


def _markable(text: str, segment: Segment) -> bool:
    """Whether the segment's markers decode back to exactly its text and mentions."""
    try:
        decoded = decode(encode(text, segment))
    except Rejected:
        return False
    placed = {(m.id, m.label, m.start + segment.start, m.end + segment.start) for m in decoded.mentions}
    return decoded.text == text[segment.start : segment.end] and placed == {
        (m.id, m.label, m.start, m.end) for m in segment.mentions
    }


def encode(text: str, segment: Segment) -> str:
    """The segment's text with its mentions as nested markers: ``[[Label#id: text]]``."""
    opens: dict[int, list[Mention]] = {}
    closes: dict[int, int] = {}
    for mention in segment.mentions:
        opens.setdefault(mention.start, []).append(mention)
        closes[mention.end] = closes.get(mention.end, 0) + 1
    out = []
    position = segment.start
    # Outer first where two open together (longer first), and every marker closes where it ends.
    for offset in sorted(set(opens) | set(closes)):
        out.append(text[position:offset])
        out.append("]]" * closes.get(offset, 0))
        for mention in sorted(opens.get(offset, []), key=lambda m: -m.end):
            out.append(f"[[{mention.label}#{mention.id}: ")
        position = offset
    out.append(text[position : segment.end])
    return "".join(out)


@dataclass(frozen=True)
class Decoded:
    """Text without markers, and the marked mentions in it (offsets into ``text``)."""

    text: str
    mentions: tuple[Mention, ...]


def decode(marked: str) -> Decoded:
    """Markers out, offsets in; Rejected("broken_marker" / "unbalanced_marker" / "empty_marker").

    Brackets of the note's own text stay text: a ``[`` just before a marker (``[[[Drug#1: x]]]``) and a
    ``]`` at a marker's end. A run of ``]`` closes the open markers innermost first, each after its
    text's own ``[`` are matched (``[[Date#1: [**2118-6-15**]]]`` marks the whole bracketed date), and
    a ``]`` left over is text after them."""
    out: list[str] = []
    stack: list[tuple[str, int, int]] = []  # (label, id, start)
    found: list[Mention] = []
    i = 0
    while i < len(marked):
        if marked.startswith("[[", i):
            header = _HEADER.match(marked, i)
            if header is None:
                if _HEADER.match(marked, i + 1) is None:
                    raise Rejected("broken_marker", f"at character {i}")
                out.append("[")  # the text's own bracket, just before a marker
                i += 1
                continue
            stack.append((header.group(1), int(header.group(2)), len(out)))
            i = header.end()
            continue
        if marked.startswith("]]", i):
            run = len(marked) - i - len(marked[i:].lstrip("]"))
            left = run
            while left >= 2 and stack:
                label, ident, start = stack[-1]
                inner = out[start:]
                if left >= 3 and inner.count("[") > inner.count("]"):
                    out.append("]")  # closes a bracket of the marked text
                    left -= 1
                    continue
                stack.pop()
                if len(out) == start:
                    raise Rejected("empty_marker", f"#{ident}")
                found.append(Mention(ident, label, start, len(out)))
                left -= 2
            if left >= 2:
                at = i + run - left
                raise Rejected("unbalanced_marker", f"a marker closes at character {at} never opened")
            out.extend("]" * left)
            i += run
            continue
        out.append(marked[i])
        i += 1
    if stack:
        raise Rejected("unbalanced_marker", f"#{stack[-1][1]} is never closed")
    return Decoded("".join(out), tuple(sorted(found, key=lambda m: (m.start, -m.end, m.id))))


def messages(
    schema: LabelSchema,
    text: str,
    segment: Segment,
    links: Sequence[Link],
    *,
    variant: int,
    variants: int,
    freedom: str,
    context: int = 200,
) -> list[dict[str, str]]:
    """The chat messages asking for one variant of one segment."""
    left_start = max(0, segment.start - context)
    right_end = min(len(text), segment.end + context)
    ids = {m.id for m in segment.mentions}
    labels = "\n".join(
        f"- {e.name}: {e.description}" if e.description else f"- {e.name}" for e in schema.entity_types
    )
    inside = [link for link in links if link.head in ids and link.tail in ids]
    relation_lines = "\n".join(f"- #{link.head} {link.type} #{link.tail}" for link in inside) or "- none"
    system = (
        "You help build training data for clinical information extraction. You rewrite the marked segment "
        f"of a passage of a clinical note. The segment is between {REWRITE_OPEN} and {REWRITE_CLOSE}. "
        "Entities are marked inline as [[Label#id: text]]; markers may nest. Keep every marker, with its "
        "label and id, around text of that kind; do not add, remove or renumber markers. "
        f"{FREEDOMS[freedom]} Do not change anything outside the {REWRITE_OPEN} tags. Answer with the "
        f"whole passage, from {PASSAGE_START.strip()} to {PASSAGE_END.strip()}, and nothing else."
    )
    user = (
        f"Labels:\n{labels}\n\n"
        f"Relations between markers of the segment (keep both ends):\n{relation_lines}\n\n"
        f"Write variant {variant} of {variants}: make it differ from the others.\n\n"
        f"{PASSAGE_START}{text[left_start : segment.start]}{REWRITE_OPEN}{encode(text, segment)}"
        f"{REWRITE_CLOSE}{text[segment.end : right_end]}{PASSAGE_END}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _passage(answer: str) -> tuple[int, int, int, int] | None:
    """Where the passage is: the ends of its opening tag line and the offsets of <rewrite>, </rewrite>
    and its closing tag; the first passage holding the rewrite tags (a sentence before it may name
    the tags)."""
    tag_start, tag_end = PASSAGE_START.strip(), PASSAGE_END.strip()
    start = answer.find(tag_start)
    while start >= 0:
        end = answer.find(tag_end, start + len(tag_start))
        if end < 0:
            return None
        opened = answer.find(REWRITE_OPEN, start, end)
        closed = answer.rfind(REWRITE_CLOSE, start, end)
        if opened >= 0 and opened + len(REWRITE_OPEN) <= closed:
            return start + len(tag_start), opened, closed, end
        start = answer.find(tag_start, start + len(tag_start))
    return None


def rewritten_segment(answer: str, text: str, segment: Segment, context: int = 200) -> str:
    """The marked segment of an answer, checking that the context around it came back unchanged.

    The passage is read wherever it sits in the answer: models wrap it in a code fence or add a
    sentence before or after it."""
    found = _passage(answer)
    if found is None:
        raise Rejected("no_passage")
    start, opened, closed, end = found
    left = answer[start:opened]
    right = answer[closed + len(REWRITE_CLOSE) : end]
    # The passage tags sit on lines of their own; their newline is not part of the context (and a
    # model may leave it out).
    before = text[max(0, segment.start - context) : segment.start]
    after = text[segment.end : min(len(text), segment.end + context)]
    if left not in (before, "\n" + before) or right not in (after, after + "\n"):
        raise Rejected("changed_context")
    return answer[opened + len(REWRITE_OPEN) : closed]


def check(
    decoded: Decoded,
    text: str,
    segment: Segment,
    links: Sequence[Link],
    schema: LabelSchema,
    freedom: str,
) -> None:
    """Rejected unless the rewritten segment kept exactly the segment's markers, labels and relations."""
    labels = {e.name for e in schema.entity_types}
    original = {m.id: m for m in segment.mentions}
    seen: set[int] = set()
    for mention in decoded.mentions:
        if mention.label not in labels:
            raise Rejected("unknown_label", f"#{mention.id} {mention.label}")
        if mention.id not in original:
            raise Rejected("invented_marker", f"#{mention.id}")
        if mention.id in seen:
            raise Rejected("repeated_marker", f"#{mention.id}")
        seen.add(mention.id)
        if mention.label != original[mention.id].label:
            raise Rejected("changed_label", f"#{mention.id} {original[mention.id].label} → {mention.label}")
        if freedom != "free":
            before = text[original[mention.id].start : original[mention.id].end]
            if decoded.text[mention.start : mention.end] != before:
                raise Rejected("changed_entity_text", f"#{mention.id}")
    missing = sorted(set(original) - seen)
    for link in links:
        if (link.head in missing) or (link.tail in missing):
            raise Rejected("lost_relation_argument", f"{link.type} #{link.head} → #{link.tail}")
    if missing:
        raise Rejected("dropped_marker", ", ".join(f"#{i}" for i in missing))
    if decoded.text == text[segment.start : segment.end]:
        raise Rejected("unchanged")


@dataclass(frozen=True)
class SyntheticNote:
    text: str
    mentions: tuple[Mention, ...]  # every mention of the note, ids as in the source
    links: tuple[Link, ...]


def splice(text: str, mentions: Sequence[Mention], links: Sequence[Link], segment: Segment,
           decoded: Decoded) -> SyntheticNote:  # fmt: skip
    """The note with the segment replaced: mentions before it unchanged, inside it from the answer,
    after it shifted by the change in length; relations kept by id."""
    shift = len(decoded.text) - (segment.end - segment.start)
    inside = {m.id for m in segment.mentions}
    result = []
    for mention in mentions:
        if mention.id in inside:
            continue
        if mention.end <= segment.start:
            result.append(mention)
        elif mention.start >= segment.end:
            result.append(Mention(mention.id, mention.label, mention.start + shift, mention.end + shift))
    for mention in decoded.mentions:
        result.append(
            Mention(mention.id, mention.label, mention.start + segment.start, mention.end + segment.start)
        )
    new_text = text[: segment.start] + decoded.text + text[segment.end :]
    kept = {m.id for m in result}
    return SyntheticNote(
        new_text,
        tuple(sorted(result, key=lambda m: (m.start, -m.end, m.id))),
        tuple(link for link in links if link.head in kept and link.tail in kept),
    )


def augment_answer(
    answer: str,
    text: str,
    mentions: Sequence[Mention],
    links: Sequence[Link],
    segment: Segment,
    schema: LabelSchema,
    freedom: str,
    context: int = 200,
) -> SyntheticNote:
    """An answer turned into a synthetic note, or Rejected with the reason."""
    decoded = decode(rewritten_segment(answer, text, segment, context))
    check(decoded, text, segment, links, schema, freedom)
    note = splice(text, mentions, links, segment, decoded)
    for mention in note.mentions:  # what the store relies on: every span inside the text
        if not 0 <= mention.start < mention.end <= len(note.text):
            raise Rejected("broken_marker", f"#{mention.id} lands outside the note")
    return note


def rejection_counts(reasons: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def links_of(relations: Iterable[tuple[str, int, int]], id_of: Mapping[int, int]) -> list[Link]:
    """Relations (type, head span index, tail span index) as links between mention ids; a relation
    whose span has no id (discontinuous) cannot be carried and is left out."""
    return [Link(t, id_of[h], id_of[k]) for t, h, k in relations if h in id_of and k in id_of]
