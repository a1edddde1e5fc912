"""The prompt side of LLM pre-annotation: few-shot examples, their perfect answers, and the chat messages.

Everything here follows the wire contract (shared/design/llm-preannotation.md and the contract of the
pre-annotation helpers): two prompt schemas, `iob_token` (one line per token with B-/I-/O tags and group
numbers) and `direct_chunk` (the entities listed per group with their exact text).
"""

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from app.domain.chunking import chunk_note
from app.domain.label_schema import LabelSchema
from app.domain.tokens import tokenize

PROMPT_SCHEMAS = ("iob_token", "direct_chunk")

# Every user message ends with TEXT_OPEN + chunk + TEXT_CLOSE; the reader relies on the instruction before
# it never containing TEXT_OPEN, so the first TEXT_OPEN starts the chunk whatever the chunk contains.
TEXT_OPEN = "Text:\n<<<\n"
TEXT_CLOSE = "\n>>>"
USER_INSTRUCTION = "Annotate this excerpt of a clinical note."


@dataclass(frozen=True)
class ExampleSpan:
    """A gold mention of a few-shot example; offsets are relative to the example's text."""

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class ExampleRelation:
    """A gold relation of a few-shot example; head and tail index the example's spans."""

    type: str
    head: int
    tail: int


@dataclass(frozen=True)
class FewShotExample:
    """A chunk of an adjudicated note with its gold spans and relations: a question with a known answer."""

    text: str
    spans: tuple[ExampleSpan, ...]
    relations: tuple[ExampleRelation, ...]


def _check_prompt_schema(prompt_schema: str) -> None:
    if prompt_schema not in PROMPT_SCHEMAS:
        raise ValueError(f"unknown prompt schema '{prompt_schema}', expected one of {PROMPT_SCHEMAS}")


def examples_from_note(
    text: str,
    spans: Sequence[tuple[str, int, int]],
    relations: Sequence[tuple[str, int, int]],
    max_chars: int,
) -> list[FewShotExample]:
    """An adjudicated note cut into chunk_note chunks, each with the spans and relations wholly inside it."""
    for label, start, end in spans:
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span {label} [{start}, {end}) is not inside the note of length {len(text)}")
    for relation_type, head, tail in relations:
        if not (0 <= head < len(spans) and 0 <= tail < len(spans)):
            raise ValueError(
                f"relation {relation_type} ({head}, {tail}) refers to a span that does not exist"
            )
    examples: list[FewShotExample] = []
    for chunk in chunk_note(text, max_chars):
        inside: dict[int, int] = {}  # index in the note -> index in the example
        cut_through = False
        for index, (_label, start, end) in enumerate(spans):
            if chunk.start <= start and end <= chunk.end:
                inside[index] = len(inside)
            elif start < chunk.end and chunk.start < end:
                cut_through = True
        if cut_through:
            # A mention the chunk cuts through has no perfect answer in it; a wrong example teaches harm.
            continue
        example_spans = tuple(
            ExampleSpan(spans[index][0], spans[index][1] - chunk.start, spans[index][2] - chunk.start)
            for index in inside
        )
        example_relations = tuple(
            ExampleRelation(relation_type, inside[head], inside[tail])
            for relation_type, head, tail in relations
            if head in inside and tail in inside
        )
        examples.append(FewShotExample(chunk.text, example_spans, example_relations))
    return examples


def _span_key(example: FewShotExample, index: int) -> tuple[int, int, int]:
    span = example.spans[index]
    return span.start, span.end, index


def groups_of(example: FewShotExample, prompt_schema: str = "iob_token") -> list[list[int]]:
    """The groups of the example's spans (lists of span indices), ordered by their first span's start.

    A group is an anchor (a span that is the tail of some relation, e.g. a Drug) with every span related
    to it; a span in no relation is a group alone. So a Reason shared by two Drugs is in both Drugs'
    groups, which iob_token says by listing both group numbers on its tokens. In direct_chunk the n-th
    listing of a string means its n-th occurrence, so a span may be listed once only: it stays in its
    first group (the second Drug loses that Reason) rather than merging the medications into one group,
    which would relate one medication's fields to the other's drug.
    """
    _check_prompt_schema(prompt_schema)
    related = [set[int]() for _ in example.spans]
    for relation in example.relations:
        if relation.head != relation.tail:
            related[relation.head].add(relation.tail)
            related[relation.tail].add(relation.head)
    anchors = sorted({relation.tail for relation in example.relations if relation.head != relation.tail})
    members = [{anchor} | related[anchor] for anchor in anchors]
    members += [{index} for index in range(len(example.spans)) if not related[index]]
    unique = {tuple(sorted(group, key=lambda i: _span_key(example, i))) for group in members}
    groups = [
        list(group) for group in sorted(unique, key=lambda group: [_span_key(example, i) for i in group])
    ]
    if prompt_schema == "direct_chunk":
        listed: set[int] = set()
        for group in groups:
            group[:] = [index for index in group if index not in listed]
            listed.update(group)
        groups = [group for group in groups if group]
    return groups


def _iob_rows(example: FewShotExample) -> list[tuple[str, str, list[int]]]:
    """(token, tag, group numbers) per token of the example, the longest span winning a contested token."""
    group_numbers: dict[int, list[int]] = {}
    for number, group in enumerate(groups_of(example, "iob_token"), start=1):
        for index in group:
            group_numbers.setdefault(index, []).append(number)
    rows: list[tuple[str, str, list[int]]] = []
    previous_owner: int | None = None
    for token in tokenize(example.text):
        covering = [
            index
            for index, span in enumerate(example.spans)
            if span.start < token.end and token.start < span.end
        ]
        owner = min(
            covering,
            key=lambda i: (example.spans[i].start - example.spans[i].end, example.spans[i].start, i),
            default=None,
        )
        word = example.text[token.start : token.end]
        if owner is None:
            rows.append((word, "O", []))
        else:
            prefix = "I" if owner == previous_owner else "B"
            rows.append((word, f"{prefix}-{example.spans[owner].label}", group_numbers[owner]))
        previous_owner = owner
    # Number the groups as they first appear, so that a group whose spans all lost their tokens to longer
    # spans leaves no gap in the numbers.
    renumbered: dict[int, int] = {}
    for _word, _tag, numbers in rows:
        for number in numbers:
            renumbered.setdefault(number, len(renumbered) + 1)
    return [(word, tag, [renumbered[number] for number in numbers]) for word, tag, numbers in rows]


class _IndentedDumper(yaml.SafeDumper):
    """Indents lists under their key, as the contract's example answer does."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def _direct_chunk_groups(example: FewShotExample) -> list[dict[str, Any]]:
    return [
        {
            "id": number,
            "entities": [
                {
                    "label": example.spans[index].label,
                    "text": example.text[example.spans[index].start : example.spans[index].end],
                }
                for index in group
            ],
        }
        for number, group in enumerate(groups_of(example, "direct_chunk"), start=1)
    ]


def render_answer(prompt_schema: str, example: FewShotExample, *, structured: bool) -> str:
    """The perfect answer to the example in the contract's text form, or its JSON form when structured."""
    _check_prompt_schema(prompt_schema)
    if prompt_schema == "iob_token":
        rows = _iob_rows(example)
        if structured:
            tokens = [{"token": word, "tag": tag, "groups": groups} for word, tag, groups in rows]
            return json.dumps({"tokens": tokens}, ensure_ascii=False)
        return "\n".join(
            f"{word}\t{tag}\t{','.join(map(str, groups))}" if groups else f"{word}\t{tag}"
            for word, tag, groups in rows
        )
    answer = {"groups": _direct_chunk_groups(example)}
    if structured:
        return json.dumps(answer, ensure_ascii=False)
    # width: a folded long mention would still parse back, but the model should see it on one line.
    body = yaml.dump(answer, Dumper=_IndentedDumper, sort_keys=False, allow_unicode=True, width=1_000_000)
    return f"```yaml\n{body}```"


def response_format(prompt_schema: str, label_schema: LabelSchema) -> dict[str, Any]:
    """The structured-output `response_format` of the contract, labels limited to the schema's types."""
    _check_prompt_schema(prompt_schema)
    names = [entity.name for entity in label_schema.entity_types]
    if prompt_schema == "iob_token":
        tags = ["O"] + [f"{prefix}-{name}" for name in names for prefix in ("B", "I")]
        item = {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "tag": {"type": "string", "enum": tags},
                "groups": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            },
            "required": ["token", "tag", "groups"],
            "additionalProperties": False,
        }
        top_key = "tokens"
    else:
        entity = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": names}, "text": {"type": "string"}},
            "required": ["label", "text"],
            "additionalProperties": False,
        }
        item = {
            "type": "object",
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "entities": {"type": "array", "items": entity},
            },
            "required": ["id", "entities"],
            "additionalProperties": False,
        }
        top_key = "groups"
    schema = {
        "type": "object",
        "properties": {top_key: {"type": "array", "items": item}},
        "required": [top_key],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": prompt_schema, "schema": schema, "strict": True}}


def _task(prompt_schema: str, has_relations: bool) -> str:
    grouping = (
        "Put the entities that belong together (for example the fields of one medication) in the same "
        "group; an entity related to nothing is a group of its own."
        if has_relations
        else "Each entity is a group of its own."
    )
    if prompt_schema == "iob_token":
        return (
            "Tag the text one line per token: give every token its tag, B-<Label> on the first token of "
            "a mention, I-<Label> on the following tokens of the same mention, O outside mentions, and "
            "on B- and I- tokens the numbers of the groups the mention belongs to (a mention shared by "
            f"two groups, such as a reason for two drugs, lists both). {grouping}"
        )
    return (
        "Read the text and list the entities it mentions, group by group, each with its label and its "
        "text: the EXACT characters in the raw input, including punctuation, and typos. If the same "
        f"words are mentioned twice, list them twice, in the order they occur. {grouping}"
    )


def _answer_format(prompt_schema: str, structured: bool) -> str:
    if prompt_schema == "iob_token":
        if structured:
            return (
                'Answer with a JSON object {"tokens": [...]}, one item per token in order: '
                '{"token": "aspirin", "tag": "B-Drug", "groups": [1]}; "groups" is [] for O.'
            )
        return (
            "Answer with nothing but the lines, in the order of the text: token<TAB>tag<TAB>groups, "
            "groups comma-separated (1 or 1,2) and left out for O. Tokens are runs of letters, digits "
            "and _, and every other character that is not white space on its own. Example:\n"
            "aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1\ndaily\tB-Frequency\t1"
        )
    if structured:
        return (
            'Answer with a JSON object {"groups": [{"id": 1, "entities": [{"label": "Drug", "text": '
            '"aspirin"}]}]}.'
        )
    return (
        "Answer with YAML in a ```yaml fence:\n"
        "```yaml\ngroups:\n  - id: 1\n    entities:\n      - label: Drug\n        text: aspirin\n"
        "      - label: Strength\n        text: 81 mg\n```"
    )


def _system_message(label_schema: LabelSchema, guidelines: str, prompt_schema: str, structured: bool) -> str:
    definitions = "\n".join(
        f"- {entity.name}: {entity.description}" if entity.description else f"- {entity.name}"
        for entity in label_schema.entity_types
    )
    parts = [
        "You are a medical assistant helping physicians annotate de-identified clinical notes. "
        "Physicians check every pre-annotation, and a wrong one costs them less than a missing one: "
        "find every mention of the entity types below, and when in doubt, include it.",
        _task(prompt_schema, bool(label_schema.relation_types)),
        f"Entity types:\n{definitions}",
    ]
    if label_schema.relation_types:
        relations = "\n".join(
            f"- {relation.name}: {'/'.join(relation.head_types)} -> {'/'.join(relation.tail_types)}"
            + (f" ({relation.description})" if relation.description else "")
            for relation in label_schema.relation_types
        )
        parts.append(f"Relations, which the groups express:\n{relations}")
    if guidelines.strip():
        parts.append(f"Project guidelines:\n{guidelines.strip()}")
    parts.append(_answer_format(prompt_schema, structured))
    return "\n\n".join(parts)


def _user_message(chunk_text: str) -> str:
    return f"{USER_INSTRUCTION}\n\n{TEXT_OPEN}{chunk_text}{TEXT_CLOSE}"


def _within_schema(example: FewShotExample, label_names: set[str]) -> FewShotExample:
    """The example without spans whose label the schema no longer has (the structured answer forbids them)."""
    kept = {
        index: new
        for new, index in enumerate(i for i, s in enumerate(example.spans) if s.label in label_names)
    }
    if len(kept) == len(example.spans):
        return example
    return FewShotExample(
        example.text,
        tuple(example.spans[index] for index in kept),
        tuple(
            ExampleRelation(relation.type, kept[relation.head], kept[relation.tail])
            for relation in example.relations
            if relation.head in kept and relation.tail in kept
        ),
    )


def build_messages(
    label_schema: LabelSchema,
    guidelines: str,
    prompt_schema: str,
    chunk_text: str,
    examples: Sequence[FewShotExample],
    *,
    structured: bool,
) -> list[dict[str, str]]:
    """The chat messages for one chunk: system, a user/assistant pair per example, then the chunk."""
    _check_prompt_schema(prompt_schema)
    label_names = {entity.name for entity in label_schema.entity_types}
    messages = [
        {"role": "system", "content": _system_message(label_schema, guidelines, prompt_schema, structured)}
    ]
    for example in examples:
        answer = render_answer(prompt_schema, _within_schema(example, label_names), structured=structured)
        messages.append({"role": "user", "content": _user_message(example.text)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _user_message(chunk_text)})
    return messages


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise ValueError("a message's content must be text")


def chunk_of_prompt(messages: Sequence[dict[str, Any]]) -> str:
    """The chunk text of the last user message, exactly as build_messages put it there."""
    user_messages = [message for message in messages if message.get("role") == "user"]
    if not user_messages:
        raise ValueError("the prompt has no user message")
    content = _content_text(user_messages[-1].get("content"))
    opening = content.find(TEXT_OPEN)
    if opening < 0 or not content.endswith(TEXT_CLOSE):
        raise ValueError("the last user message does not end with Text:\\n<<<\\n...\\n>>>")
    start = opening + len(TEXT_OPEN)
    end = len(content) - len(TEXT_CLOSE)
    if end < start:
        raise ValueError("the last user message does not end with Text:\\n<<<\\n...\\n>>>")
    return content[start:end]


_WORD = re.compile(r"\w+")


def _tf_idf(documents: list[list[str]]) -> list[dict[str, float]]:
    """Unit-length TF-IDF vectors (smoothed idf, as scikit-learn's default) of tokenised documents."""
    document_frequency = Counter(word for words in documents for word in set(words))
    idf = {word: math.log((1 + len(documents)) / (1 + df)) + 1 for word, df in document_frequency.items()}
    vectors = []
    for words in documents:
        vector = {word: count * idf[word] for word, count in Counter(words).items()}
        norm = math.sqrt(sum(weight * weight for weight in vector.values())) or 1.0
        vectors.append({word: weight / norm for word, weight in vector.items()})
    return vectors


class ExampleIndex:
    """Few-shot candidates prepared once, so that choosing examples for each chunk is cheap.

    Scores are the TF-IDF cosine of ``_tf_idf`` over the candidates plus the chunk (smoothed idf):
    the candidates' term counts, document frequencies and norms are computed once, and per chunk
    only the terms the chunk shares with a candidate are adjusted (a chunk raises the document
    frequency of its own words by one). A candidate whose text is the chunk's is never chosen; it
    still counts as a document, so the figures differ from ``_tf_idf`` only in that case.
    """

    def __init__(self, candidates: Sequence[FewShotExample]) -> None:
        self.candidates = list(candidates)
        self._counts = [Counter(_WORD.findall(c.text.lower())) for c in self.candidates]
        self._documents = len(self.candidates) + 1  # the chunk is a document too
        self._frequency = Counter(word for counts in self._counts for word in counts)
        self._postings: dict[str, list[tuple[int, int]]] = {}
        self._norms_squared = []
        for index, counts in enumerate(self._counts):
            total = 0.0
            for word, count in counts.items():
                self._postings.setdefault(word, []).append((index, count))
                total += (count * self._idf(word, in_chunk=False)) ** 2
            self._norms_squared.append(total)

    def _idf(self, word: str, *, in_chunk: bool) -> float:
        frequency = self._frequency.get(word, 0) + (1 if in_chunk else 0)
        return math.log((1 + self._documents) / (1 + frequency)) + 1

    def select(self, chunk_text: str, k: int, exclude: Collection[int] = ()) -> list[FewShotExample]:
        """The k candidates most like the chunk, ties by order, never the chunk itself nor ``exclude``."""
        if k <= 0 or not self.candidates:
            return []
        query = {
            w: c * self._idf(w, in_chunk=True) for w, c in Counter(_WORD.findall(chunk_text.lower())).items()
        }
        query_norm = math.sqrt(sum(weight * weight for weight in query.values())) or 1.0
        dots: dict[int, float] = {}
        corrections: dict[int, float] = {}
        for word, weight in query.items():
            shared_idf, base_idf = self._idf(word, in_chunk=True), self._idf(word, in_chunk=False)
            for index, count in self._postings.get(word, ()):
                dots[index] = dots.get(index, 0.0) + count * shared_idf * weight / query_norm
                corrections[index] = corrections.get(index, 0.0) + count * count * (
                    shared_idf * shared_idf - base_idf * base_idf
                )
        scores = [0.0] * len(self.candidates)
        for index, dot in dots.items():
            norm = math.sqrt(self._norms_squared[index] + corrections[index]) or 1.0
            scores[index] = dot / norm
        ranked = sorted(
            (i for i, c in enumerate(self.candidates) if c.text != chunk_text and i not in exclude),
            key=lambda i: (-scores[i], i),
        )
        return [self.candidates[i] for i in ranked[:k]]


def select_examples(chunk_text: str, candidates: Sequence[FewShotExample], k: int) -> list[FewShotExample]:
    """The k candidates most like the chunk (TF-IDF cosine over words), ties by order, never the chunk."""
    # A token-set ratio would score any short candidate whose words all occur in the chunk as a perfect
    # match; TF-IDF weighs rare words (the drug names) and length, which is what similar means here.
    return ExampleIndex(candidates).select(chunk_text, k)


def prompt_fingerprint(
    model: str, messages: list[dict[str, Any]], response_format: dict[str, Any] | None
) -> str:
    """The response cache key: sha256 hex of a canonical JSON of the model, the messages and the format."""
    canonical = json.dumps(
        {"model": model, "messages": messages, "response_format": response_format},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
