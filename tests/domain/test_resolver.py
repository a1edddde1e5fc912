"""The resolver maps an LLM's answer back to spans of the chunk and accounts for every string it returned.

Cases are data: (model output, chunk text, expected spans as (label, text, start, end), dropped, fuzzy).
"""

import json
import re

import pytest
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from app.demo.seed import MEDICATION_SCHEMA
from app.domain.label_schema import parse_label_schema
from app.domain.resolver import (
    FUZZY_THRESHOLD,
    Dropped,
    ResolvedChunk,
    ResolvedSpan,
    UnparseableOutput,
    anchor_labels,
    ensemble,
    nothing_parsed,
    relations_from_groups,
    resolve_direct_chunk,
    resolve_iob_token,
    strip_edges,
    typo_tolerated,
)

SCHEMA = parse_label_schema(MEDICATION_SCHEMA)
NO_RELATIONS = parse_label_schema(
    {"entity_types": [{"name": "Drug", "color": "#1f77b4"}, {"name": "Reason", "color": "#17becf"}]}
)

Span = tuple[str, str, int, int]  # (label, text, start, end)


def direct_yaml(*groups: list[tuple[str, str]], fence: str = "yaml") -> str:
    """A direct_chunk answer in fenced YAML, groups numbered from 1."""
    lines = ["groups:"]
    for gid, entities in enumerate(groups, start=1):
        lines += [f"  - id: {gid}", "    entities:"]
        for label, text in entities:
            lines += [f"      - label: {label}", f"        text: {json.dumps(text)}"]
    return f"```{fence}\n" + "\n".join(lines) + "\n```"


def direct_json(*groups: list[tuple[str, str]]) -> str:
    """A direct_chunk answer in the JSON form, groups numbered from 1."""
    return json.dumps(
        {
            "groups": [
                {"id": gid, "entities": [{"label": label, "text": text} for label, text in entities]}
                for gid, entities in enumerate(groups, start=1)
            ]
        }
    )


ASPIRIN = "Aspirin 81 mg PO daily."
ASPIRIN_SPANS: list[Span] = [
    ("Drug", "Aspirin", 0, 7),
    ("Strength", "81 mg", 8, 13),
    ("Route", "PO", 14, 16),
    ("Frequency", "daily", 17, 22),
]
ASPIRIN_GROUP = [("Drug", "Aspirin"), ("Strength", "81 mg"), ("Route", "PO"), ("Frequency", "daily")]
ASPIRIN_JSON = direct_json(ASPIRIN_GROUP)
PO_DAILY = "Take 1 tablet by mouth daily."
PO_ROUTE: Span = ("Route", "by mouth", 14, 22)

# (id, output, chunk, expected spans, dropped, fuzzy)
DIRECT_CASES: list[tuple[str, str, str, list[Span], int, int]] = [
    ("clean yaml", direct_yaml(ASPIRIN_GROUP), ASPIRIN, ASPIRIN_SPANS, 0, 0),
    ("clean json", ASPIRIN_JSON, ASPIRIN, ASPIRIN_SPANS, 0, 0),
    (
        "yaml without fence",
        direct_yaml(ASPIRIN_GROUP).strip("`").removeprefix("yaml"),
        ASPIRIN,
        ASPIRIN_SPANS,
        0,
        0,
    ),
    ("json in a json fence", f"```json\n{ASPIRIN_JSON}\n```", ASPIRIN, ASPIRIN_SPANS, 0, 0),
    ("json in a bare fence", f"```\n{ASPIRIN_JSON}\n```", ASPIRIN, ASPIRIN_SPANS, 0, 0),
    (
        "prose around fenced json",
        f"Sure! Here are the entities:\n```json\n{ASPIRIN_JSON}\n```\nLet me know if you need more.",
        ASPIRIN,
        ASPIRIN_SPANS,
        0,
        0,
    ),
    ("prose around bare json", f"Answer: {ASPIRIN_JSON} (all found).", ASPIRIN, ASPIRIN_SPANS, 0, 0),
    (
        "prose after unfenced yaml",
        "Here you go.\ngroups:\n- id: 1\n  entities:\n  - label: Drug\n    text: Aspirin\n"
        "  - label: Frequency\n    text: daily\n\nThese are all the medications.",
        ASPIRIN,
        [("Drug", "Aspirin", 0, 7), ("Frequency", "daily", 17, 22)],
        0,
        0,
    ),
    ("json given in a yaml fence", f"```yaml\n{ASPIRIN_JSON}\n```", ASPIRIN, ASPIRIN_SPANS, 0, 0),
    (
        "trailing commas",
        '{"groups": [{"id": 1, "entities": [{"label": "Drug", "text": "Aspirin",},'
        ' {"label": "Route", "text": "PO"},],},],}',
        ASPIRIN,
        [("Drug", "Aspirin", 0, 7), ("Route", "PO", 14, 16)],
        0,
        0,
    ),
    (
        "single quotes (read as YAML flow)",
        "{'groups': [{'id': 1, 'entities': [{'label': 'Drug', 'text': 'Aspirin'}]}]}",
        ASPIRIN,
        [("Drug", "Aspirin", 0, 7)],
        0,
        0,
    ),
    (
        "wrong-case labels",
        direct_yaml([("drug", "Aspirin"), ("STRENGTH", "81 mg")]),
        ASPIRIN,
        ASPIRIN_SPANS[:2],
        0,
        0,
    ),
    (
        "unknown label",
        direct_yaml([("Drug", "Aspirin"), ("Dose", "81 mg")]),
        ASPIRIN,
        ASPIRIN_SPANS[:1],
        1,
        0,
    ),
    (
        "misspelled by the model: asprin",
        direct_yaml([("Drug", "asprin")]),
        "aspirin 81 mg",
        [("Drug", "aspirin", 0, 7)],
        0,
        1,
    ),
    (
        "case differs: Lasix for lasix (normalised, not fuzzy)",
        direct_yaml([("Drug", "Lasix")]),
        "Start lasix 40 mg.",
        [("Drug", "lasix", 6, 11)],
        0,
        0,
    ),
    (
        "misspelled in the note: metoprolool",
        direct_yaml([("Drug", "metoprolol"), ("Strength", "25 mg")]),
        "metoprolool 25 mg bid",
        [("Drug", "metoprolool", 0, 11), ("Strength", "25 mg", 12, 17)],
        0,
        1,
    ),
    (
        "string not in the text",
        direct_yaml([("Drug", "warfarin"), ("Drug", "Aspirin")]),
        ASPIRIN,
        ASPIRIN_SPANS[:1],
        1,
        0,
    ),
    (
        "repeated aspirin maps to successive occurrences",
        direct_yaml(
            [("Drug", "aspirin"), ("Strength", "81 mg")], [("Drug", "aspirin"), ("Strength", "325 mg")]
        ),
        "aspirin 81 mg daily; aspirin 325 mg once",
        [
            ("Drug", "aspirin", 0, 7),
            ("Strength", "81 mg", 8, 13),
            ("Drug", "aspirin", 21, 28),
            ("Strength", "325 mg", 29, 35),
        ],
        0,
        0,
    ),
    (
        "a word is preferred to the inside of another word",
        direct_yaml([("Reason", "pain")]),
        "painful joints, pain at night",
        [("Reason", "pain", 16, 20)],
        0,
        0,
    ),
    (
        "edge punctuation stripped, dotted abbreviation kept",
        direct_yaml([("Strength", "81 mg."), ("Route", "(PO)"), ("Frequency", "q.d.,")]),
        "aspirin 81 mg. (PO) q.d., then stop",
        [("Strength", "81 mg", 8, 13), ("Route", "PO", 16, 18), ("Frequency", "q.d.", 20, 24)],
        0,
        0,
    ),
    ("only punctuation", direct_yaml([("Drug", "...")]), "aspirin... ok", [], 1, 0),
    (
        "multi-line white space",
        direct_yaml([("Strength", "500 mg"), ("Frequency", "twice  daily")]),
        "metformin 500\n   mg twice\tdaily",
        [("Strength", "500\n   mg", 10, 19), ("Frequency", "twice\tdaily", 20, 31)],
        0,
        0,
    ),
    (
        "emoji and CRLF do not shift offsets",
        direct_yaml([("Drug", "lasix"), ("Frequency", "daily")]),
        "Pain \U0001f600 ok.\r\nStart lasix 40 mg\r\n daily",
        [("Drug", "lasix", 18, 23), ("Frequency", "daily", 32, 37)],
        0,
        0,
    ),
    (
        "broken yaml read line by line",
        '```yaml\ngroups:\n  - id: 1\n    entities:\n      - label: Drug\n        text: "Aspirin\n'
        "      - label: Route\n        text: PO: oral\n```",
        ASPIRIN,
        [("Drug", "Aspirin", 0, 7)],
        1,
        0,
    ),
    ("no entities at all", "```yaml\ngroups: []\n```", ASPIRIN, [], 0, 0),
    # A single typo in a word of 4+ letters is tolerated (ratio aside), listed as fuzzy.
    (
        "typo: muoth for mouth (ratio 80, under the threshold)",
        direct_yaml([("Route", "muoth")]),
        PO_DAILY,
        [("Route", "mouth", 17, 22)],
        0,
        1,
    ),
    ("typo inside a span: by muoth", direct_yaml([("Route", "by muoth")]), PO_DAILY, [PO_ROUTE], 0, 1),
    (
        "typo: meotprolol for metoprolol",
        direct_yaml([("Drug", "meotprolol")]),
        "metoprolol 25 mg bid",
        [("Drug", "metoprolol", 0, 10)],
        0,
        1,
    ),
    (
        "typo word by word: Lisniopril 10 mg",
        direct_yaml([("Drug", "Lisniopril"), ("Strength", "Lisniopril 10 mg")]),
        "Continue lisinopril 10 mg daily.",
        [("Drug", "lisinopril", 9, 19), ("Strength", "lisinopril 10 mg", 9, 25)],
        0,
        2,
    ),
    (
        "two typos in a word of 8+ letters: metprolool",
        direct_yaml([("Drug", "metprolool")]),
        "metoprolol 25 mg bid",
        [("Drug", "metoprolol", 0, 10)],
        0,
        1,
    ),
    (
        "typo in a 3-letter word is not tolerated: ibd, mcg",
        direct_yaml([("Frequency", "ibd"), ("Strength", "mcg")]),
        "metoprolol 25 mg bid",
        [],
        2,
        0,
    ),
    (
        "a changed digit is not a typo: 1500 for 1000",
        direct_yaml([("Strength", "1500")]),
        "metformin 1000 mg bid",
        [],
        1,
        0,
    ),
    (
        "the exact word is preferred to a typo match: dose, not does",
        direct_yaml([("Dosage", "dose")]),
        "She does not know the dose.",
        [("Dosage", "dose", 22, 26)],
        0,
        0,
    ),
    (
        "no exact word: does for dose is a typo",
        direct_yaml([("Dosage", "does")]),
        "the dose was doubled",
        [("Dosage", "dose", 4, 8)],
        0,
        1,
    ),
    (
        "two misspellings of a repeated string take successive occurrences",
        direct_yaml([("Route", "by muoth")], [("Route", "by motuh")]),
        "1 tablet by mouth daily; 2 tablets by mouth at night",
        [("Route", "by mouth", 9, 17), ("Route", "by mouth", 35, 43)],
        0,
        2,
    ),
    (
        "an exact then a misspelt listing take successive occurrences",
        direct_yaml([("Frequency", "daily")], [("Frequency", "dialy")]),
        "aspirin daily; plavix daily",
        [("Frequency", "daily", 8, 13), ("Frequency", "daily", 22, 27)],
        0,
        1,
    ),
    (
        "a misspelt string listed again is the entity before, not a less close word (neutropenic)",
        direct_yaml(
            [("Drug", "docteaxel"), ("ADE", "nuetropenia")],
            [("Drug", "cyclopohsphamide"), ("ADE", "nuetropenia")],
        ),
        "neutropenic fever. The neutropenia was attributed to docetaxel and cyclophosphamide.",
        [("ADE", "neutropenia", 23, 34), ("Drug", "docetaxel", 53, 62), ("Drug", "cyclophosphamide", 67, 83)],
        0,
        4,
    ),
    (
        "capitals break a tie between equally close words: Ltihium",
        direct_yaml([("Drug", "lihtium carbonate")], [("Drug", "Ltihium")]),
        "Home: lithium carbonate 600 mg. Course: Lithium was held.",
        [("Drug", "lithium carbonate", 6, 23), ("Drug", "Lithium", 40, 47)],
        0,
        2,
    ),
]


def spans_as_data(chunk: ResolvedChunk, text: str) -> list[Span]:
    return [(s.label, text[s.start : s.end], s.start, s.end) for s in chunk.spans]


@pytest.mark.parametrize(("output", "chunk", "expected"), [(c[1], c[2], c[3]) for c in DIRECT_CASES])
def test_case_table_offsets_are_the_texts(output, chunk, expected):
    # Guards the table itself: each expected (text, start, end) really is that text of the chunk.
    assert [chunk[start:end] for _, _, start, end in expected] == [text for _, text, _, _ in expected]


@pytest.mark.parametrize(
    ("output", "chunk", "expected", "dropped", "fuzzy"),
    [c[1:] for c in DIRECT_CASES],
    ids=[c[0] for c in DIRECT_CASES],
)
def test_resolve_direct_chunk(output, chunk, expected, dropped, fuzzy):
    resolved = resolve_direct_chunk(output, chunk, SCHEMA)
    assert spans_as_data(resolved, chunk) == expected
    assert resolved.dropped_count == dropped, resolved.dropped
    assert resolved.fuzzy_count == fuzzy, resolved.fuzzy
    assert resolved.parsed
    assert all(s.source == "direct_chunk" for s in resolved.spans)


# (chunk text, iob answer lines, expected spans, dropped, fuzzy)
IOB_CLEAN = "aspirin\tB-Drug\t1\n81\tB-Strength\t1\nmg\tI-Strength\t1\ndaily\tB-Frequency\t1"
IOB_CLEAN_SPANS: list[Span] = [
    ("Drug", "aspirin", 0, 7),
    ("Strength", "81 mg", 8, 13),
    ("Frequency", "daily", 14, 19),
]
IOB_JSON = json.dumps(
    {
        "tokens": [
            {"token": "aspirin", "tag": "B-Drug", "groups": [1]},
            {"token": "81", "tag": "B-Strength", "groups": [1]},
            {"token": "mg", "tag": "I-Strength", "groups": [1]},
            {"token": "daily", "tag": "B-Frequency", "groups": [1]},
        ]
    }
)
AMD = "aspirin 81 mg daily"

IOB_CASES: list[tuple[str, str, str, list[Span], int, int]] = [
    ("clean text", IOB_CLEAN, AMD, IOB_CLEAN_SPANS, 0, 0),
    ("clean json", IOB_JSON, AMD, IOB_CLEAN_SPANS, 0, 0),
    ("json with trailing commas in prose", f"Result: {IOB_JSON[:-2]},]}} done", AMD, IOB_CLEAN_SPANS, 0, 0),
    (
        "fenced, runs of spaces, header and rule skipped",
        "```\ntoken   tag        group\n-----   ---        -----\n"
        + IOB_CLEAN.replace("\t", "    ")
        + "\n```\nThat is all.",
        AMD,
        IOB_CLEAN_SPANS,
        0,
        0,
    ),
    ("prose line without a fence is dropped", "Here are the tags:\n" + IOB_CLEAN, AMD, IOB_CLEAN_SPANS, 1, 0),
    (
        "tag variants",
        "aspirin\tB_Drug\t1\n81\tb-strength\t1\nmg\ti_STRENGTH\t1\ndaily\tB-frequency\t1",
        AMD,
        IOB_CLEAN_SPANS,
        0,
        0,
    ),
    (
        "markdown table",
        "| token | tag | group |\n|---|---|---|\n| aspirin | B-Drug | 1 |\n| 81 | O | |",
        AMD,
        [("Drug", "aspirin", 0, 7)],
        0,
        0,
    ),
    (
        "unknown label",
        "aspirin\tB-Drug\t1\n81\tB-Dose\t1\nmg\tI-Dose\t1",
        AMD,
        [("Drug", "aspirin", 0, 7)],
        2,
        0,
    ),
    ("misspelled token asprin", "asprin\tB-Drug\t1\n81\tO\nmg\tO", AMD, [("Drug", "aspirin", 0, 7)], 0, 1),
    ("Lasix for lasix", "Start\tO\nLasix\tB-Drug\t1", "Start lasix 40 mg.", [("Drug", "lasix", 6, 11)], 0, 0),
    (
        "misspelled in the note: metoprolool",
        "metoprolol\tB-Drug\t1\n25\tB-Strength\t1\nmg\tI-Strength\t1",
        "metoprolool 25 mg bid",
        [("Drug", "metoprolool", 0, 11), ("Strength", "25 mg", 12, 17)],
        0,
        1,
    ),
    (
        "token not in the text",
        "warfarin\tB-Drug\t1\naspirin\tB-Drug\t2",
        AMD,
        [("Drug", "aspirin", 0, 7)],
        1,
        0,
    ),
    (
        "tokens the model left out are tolerated",
        "aspirin\tB-Drug\t1\ndaily\tB-Frequency\t1",
        AMD,
        [("Drug", "aspirin", 0, 7), ("Frequency", "daily", 14, 19)],
        0,
        0,
    ),
    (
        "one answer token for several chunk tokens",
        "p.o.\tB-Route\t1",
        "p.o. daily",
        [("Route", "p.o.", 0, 4)],
        0,
        0,
    ),
    (
        "I- continues across punctuation the model skipped",
        "p\tB-Route\t1\no\tI-Route\t1",
        "p.o. daily",
        [("Route", "p.o", 0, 3)],
        0,
        0,
    ),
    (
        "I- after a skipped word starts a new span",
        "81\tB-Strength\t1\ndaily\tI-Strength\t1",
        AMD,
        [("Strength", "81", 8, 10), ("Strength", "daily", 14, 19)],
        0,
        0,
    ),
    (
        "I- without B- is kept as a start",
        "81\tI-Strength\t1\nmg\tI-Strength\t1",
        AMD,
        [("Strength", "81 mg", 8, 13)],
        0,
        0,
    ),
    (
        "edge punctuation stripped",
        "Lasix\tB-Drug\t1\n(\tB-Route\t1\nPO\tI-Route\t1\n)\tI-Route\t1\n.\tO",
        "Lasix (PO).",
        [("Drug", "Lasix", 0, 5), ("Route", "PO", 7, 9)],
        0,
        0,
    ),
    ("punctuation-only span", "aspirin\tO\n,\tB-Drug\t1", "aspirin, daily", [], 1, 0),
    (
        "emoji and CRLF do not shift offsets",
        "Pain\tO\n\U0001f600\tO\nok\tO\n.\tO\nStart\tO\nlasix\tB-Drug\t1\n40\tB-Strength\t1\nmg\tI-Strength\t1\ndaily\tB-Frequency\t1",
        "Pain \U0001f600 ok.\r\nStart lasix 40 mg\r\n daily",
        [("Drug", "lasix", 18, 23), ("Strength", "40 mg", 24, 29), ("Frequency", "daily", 32, 37)],
        0,
        0,
    ),
    ("all O", "aspirin\tO\n81\tO", AMD, [], 0, 0),
    (
        "typo: muoth for mouth continues the Route",
        "Take\tO\n1\tB-Dosage\t1\ntablet\tB-Form\t1\nby\tB-Route\t1\nmuoth\tI-Route\t1\ndaily\tB-Frequency\t1",
        PO_DAILY,
        [("Dosage", "1", 5, 6), ("Form", "tablet", 7, 13), PO_ROUTE, ("Frequency", "daily", 23, 28)],
        0,
        1,
    ),
    (
        "typo: meotprolol for metoprolol",
        "meotprolol\tB-Drug\t1\n25\tB-Strength\t1\nmg\tI-Strength\t1",
        "metoprolol 25 mg bid",
        [("Drug", "metoprolol", 0, 10), ("Strength", "25 mg", 11, 16)],
        0,
        1,
    ),
    (
        "typo in every token: tiwce dialy",
        "aspirin\tB-Drug\t1\ntiwce\tB-Frequency\t1\ndialy\tI-Frequency\t1",
        "aspirin twice daily",
        [("Drug", "aspirin", 0, 7), ("Frequency", "twice daily", 8, 19)],
        0,
        2,
    ),
    (
        "typo in a 3-letter word is not tolerated: mcg, ibd",
        "25\tB-Strength\t1\nmcg\tI-Strength\t1\nibd\tB-Frequency\t1",
        "metoprolol 25 mg bid",
        [("Strength", "25", 11, 13)],
        2,
        0,
    ),
    (
        "a changed digit is not a typo: 1500 for 1000",
        "metformin\tB-Drug\t1\n1500\tB-Strength\t1\nmg\tI-Strength\t1",
        "metformin 1000 mg bid",
        [("Drug", "metformin", 0, 9), ("Strength", "mg", 15, 17)],
        1,
        0,
    ),
    (
        "the exact word ahead is preferred to the typo match nearer: dose, not does",
        "dose\tB-Dosage\t1",
        "She does not know the dose.",
        [("Dosage", "dose", 22, 26)],
        0,
        0,
    ),
    (
        "no exact word ahead: does for dose is a typo",
        "the\tO\ndoes\tB-Dosage\t1",
        "the dose was doubled",
        [("Dosage", "dose", 4, 8)],
        0,
        1,
    ),
]


@pytest.mark.parametrize(("output", "chunk", "expected"), [(c[1], c[2], c[3]) for c in IOB_CASES])
def test_iob_case_table_offsets_are_the_texts(output, chunk, expected):
    assert [chunk[start:end] for _, _, start, end in expected] == [text for _, text, _, _ in expected]


@pytest.mark.parametrize(
    ("output", "chunk", "expected", "dropped", "fuzzy"),
    [c[1:] for c in IOB_CASES],
    ids=[c[0] for c in IOB_CASES],
)
def test_resolve_iob_token(output, chunk, expected, dropped, fuzzy):
    resolved = resolve_iob_token(output, chunk, SCHEMA)
    assert spans_as_data(resolved, chunk) == expected
    assert resolved.dropped_count == dropped, resolved.dropped
    assert resolved.fuzzy_count == fuzzy, resolved.fuzzy
    assert all(s.source == "iob_token" for s in resolved.spans)


# ---- never silently: every entity string the model returned is in a span or in dropped ----------------

_TEXT_FIELD = re.compile(r"""["']?text["']?\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^,}\n]*))""")
_TAGGED_LINE = re.compile(r"^\|?\s*(\S+?)\s*\|?\s+\|?\s*[BbIi][-_]\w+", re.MULTILINE)
_TAGGED_JSON = re.compile(r'"token":\s*"((?:[^"\\]|\\.)*)",\s*"tag":\s*"[BI]-')


def returned_strings(output: str, prompt_schema: str) -> list[str]:
    """The entity strings in an answer, read with a plain regex independent of the resolver."""
    if prompt_schema == "direct_chunk":
        return [next(g for g in m.groups() if g is not None).strip() for m in _TEXT_FIELD.finditer(output)]
    return _TAGGED_JSON.findall(output) + [t for t in _TAGGED_LINE.findall(output) if not t.startswith('"')]


def words_with_typos(a: str, b: str) -> bool:
    """The words of a are a run of b's words, each 4+ letters long with at most one edit (8+: two)."""
    short, long = a.split(), b.split()

    def close(x: str, y: str) -> bool:
        n = min(len(x), len(y))
        budget = 0 if n < 4 or any(c.isdigit() for c in x + y) else 1 if n < 8 else 2
        return OSA.distance(x, y) <= budget

    return any(
        all(close(x, y) for x, y in zip(short, long[i : i + len(short)], strict=True))
        for i in range(len(long) - len(short) + 1)
    )


def similar(a: str, b: str) -> bool:
    """The same mention as far as a reader can tell: one inside the other, or a near-equal spelling."""
    ratio = max(fuzz.ratio(a, b), fuzz.partial_ratio(a, b)) >= FUZZY_THRESHOLD
    return ratio or words_with_typos(a, b) or words_with_typos(b, a)


def accounted(string: str, resolved: ResolvedChunk, chunk: str) -> bool:
    if any(string in d.raw for d in resolved.dropped):
        return True
    bare = " ".join(string.split()).casefold().strip(" .,;:()\"'")
    if not bare:  # pure punctuation is stripped from the span it edged, by rule
        return True
    texts = [" ".join(chunk[s.start : s.end].split()).casefold() for s in resolved.spans]
    return any(similar(bare, text) for text in texts)


INVARIANT_CASES = [(c[0], c[1], c[2], "direct_chunk") for c in DIRECT_CASES] + [
    (c[0], c[1], c[2], "iob_token") for c in IOB_CASES
]


@pytest.mark.parametrize(
    ("output", "chunk", "prompt_schema"),
    [c[1:] for c in INVARIANT_CASES],
    ids=[c[0] for c in INVARIANT_CASES],
)
def test_every_returned_string_ends_in_a_span_or_in_dropped(output, chunk, prompt_schema):
    resolve = resolve_direct_chunk if prompt_schema == "direct_chunk" else resolve_iob_token
    resolved = resolve(output, chunk, SCHEMA)
    strings = returned_strings(output, prompt_schema)
    assert strings or not resolved.spans  # the regex saw the answer's entities
    assert [s for s in strings if not accounted(s, resolved, chunk)] == []
    # And no span comes from nowhere: each is matched by some returned string.
    for span in resolved.spans:
        text = " ".join(chunk[span.start : span.end].split()).casefold()
        assert any(similar(text, " ".join(s.split()).casefold()) for s in strings)


def test_dropped_says_why_and_what():
    output = direct_yaml([("Dose", "81 mg"), ("Drug", "warfarin"), ("Drug", "...")])
    resolved = resolve_direct_chunk(output, ASPIRIN, SCHEMA)
    assert resolved.dropped == (
        Dropped("unknown label", "Dose: 81 mg"),
        Dropped("not found in text", "Drug: warfarin"),
        Dropped("empty after stripping", "Drug: ..."),
    )


def test_fuzzy_lists_model_string_text_and_score():
    resolved = resolve_direct_chunk(direct_yaml([("Drug", "metoprolol")]), "metoprolool 25 mg", SCHEMA)
    ((model, matched, score),) = resolved.fuzzy
    assert (model, matched) == ("metoprolol", "metoprolool")
    assert FUZZY_THRESHOLD <= score < 100
    assert resolved.spans[0].match == "fuzzy" and resolved.spans[0].score == score


def test_fuzzy_threshold_is_a_parameter():
    # "asprn" is two edits from "aspirin", more than a 5-letter word's one typo: only its ratio (83) counts.
    output = direct_yaml([("Drug", "asprn")])
    assert resolve_direct_chunk(output, "aspirin", SCHEMA).dropped_count == 1
    assert resolve_direct_chunk(output, "aspirin", SCHEMA, fuzzy_threshold=80).fuzzy_count == 1
    iob = "asprn\tB-Drug\t1"
    assert resolve_iob_token(iob, "aspirin", SCHEMA).dropped_count == 1
    assert resolve_iob_token(iob, "aspirin", SCHEMA, fuzzy_threshold=80).fuzzy_count == 1


@pytest.mark.parametrize("resolve", [resolve_direct_chunk, resolve_iob_token])
def test_a_typo_is_tolerated_whatever_the_threshold_and_scored_by_its_ratio(resolve):
    output = direct_yaml([("Route", "muoth")]) if resolve is resolve_direct_chunk else "muoth\tB-Route\t1"
    resolved = resolve(output, "by mouth", SCHEMA, fuzzy_threshold=99)
    assert resolved.fuzzy == (("muoth", "mouth", 80.0),)
    ((start, end, match, score),) = [(s.start, s.end, s.match, s.score) for s in resolved.spans]
    assert (start, end, match, score) == (3, 8, "fuzzy", 80.0)
    assert resolved.spans[0].confidence == 0.32  # a fuzzy match's 0.4, times its ratio 80 / 100


# (model's word, chunk's word, tolerated)
TYPO_CASES = [
    ("muoth", "mouth", True),  # two adjacent letters swapped: one edit
    ("Mouth", "mouth", True),  # case aside
    ("dose", "does", True),  # 4 letters: one edit
    ("daly", "daily", True),  # a letter left out
    ("meotprolol", "metoprolol", True),
    ("metprolool", "metoprolol", True),  # 8+ letters: two edits
    ("mataprolal", "metoprolol", False),  # three edits
    ("asprn", "aspirin", False),  # 5 letters: only one edit
    ("mcg", "mg", False),  # under 4 letters: exact only
    ("ibd", "bid", False),
    ("1500", "1000", False),  # a digit: another dose
    ("q12h", "q24h", False),
]


@pytest.mark.parametrize(("answer", "text", "tolerated"), TYPO_CASES)
def test_typo_tolerated(answer, text, tolerated):
    assert typo_tolerated(answer, text) is tolerated


@pytest.mark.parametrize(
    ("match", "confidence"),
    [
        (direct_yaml([("Drug", "aspirin")]), 0.7),
        (direct_yaml([("Drug", "ASPIRIN")]), 0.6),
        (direct_yaml([("Drug", "asprin")]), 0.369),  # fuzzy: 0.4 x ratio 92.3 / 100
    ],
)
def test_confidence_of_one_schema(match, confidence):
    (span,) = resolve_direct_chunk(match, "aspirin 81 mg", SCHEMA).spans
    assert span.confidence == confidence


@pytest.mark.parametrize(
    ("resolve", "output"),
    [
        (resolve_direct_chunk, "I cannot help with that"),
        (resolve_iob_token, "I cannot help with that"),
        (resolve_direct_chunk, ""),
        (resolve_iob_token, "```\n\n```"),
        (resolve_iob_token, "token\ttag\tgroup"),
    ],
)
def test_garbage_raises_unparseable_output(resolve, output):
    with pytest.raises(UnparseableOutput):
        resolve(output, ASPIRIN, SCHEMA)


def test_nothing_parsed_keeps_the_output_as_dropped():
    chunk = nothing_parsed("I cannot help with that")
    assert (chunk.parsed, chunk.spans, chunk.dropped_count) == (False, (), 1)
    assert chunk.dropped[0].raw == "I cannot help with that"


# ---- groups and relations ------------------------------------------------------------------------------


def relations_as_text(chunk: ResolvedChunk, text: str) -> set[tuple[str, str, str]]:
    def of(i: int) -> str:
        return text[chunk.spans[i].start : chunk.spans[i].end]

    return {(r.type, of(r.head), of(r.tail)) for r in chunk.relations}


SHARED = "aspirin and plavix for CAD"
SHARED_RELATIONS = {("Reason-Drug", "CAD", "aspirin"), ("Reason-Drug", "CAD", "plavix")}


def test_a_reason_shared_by_two_groups_gives_two_relations_direct():
    output = direct_yaml([("Drug", "aspirin"), ("Reason", "CAD")], [("Drug", "plavix"), ("Reason", "CAD")])
    resolved = resolve_direct_chunk(output, SHARED, SCHEMA)
    cad = [s for s in resolved.spans if s.label == "Reason"]
    assert [(s.start, s.end, s.groups) for s in cad] == [(23, 26, frozenset({1, 2}))]
    assert relations_as_text(resolved, SHARED) == SHARED_RELATIONS


def test_a_misspelt_ade_shared_by_two_drugs_is_one_span_in_both_groups():
    chunk = "neutropenic fever. The neutropenia was attributed to docetaxel and cyclophosphamide."
    output = direct_yaml(
        [("Drug", "docteaxel"), ("ADE", "nuetropenia")],
        [("Drug", "cyclopohsphamide"), ("ADE", "nuetropenia")],
    )
    resolved = resolve_direct_chunk(output, chunk, SCHEMA)
    assert [s.groups for s in resolved.spans if s.label == "ADE"] == [frozenset({1, 2})]
    assert relations_as_text(resolved, chunk) == {
        ("ADE-Drug", "neutropenia", "docetaxel"),
        ("ADE-Drug", "neutropenia", "cyclophosphamide"),
    }


def test_a_reason_shared_by_two_groups_gives_two_relations_iob():
    output = "aspirin\tB-Drug\t1\nand\tO\nplavix\tB-Drug\t2\nfor\tO\nCAD\tB-Reason\t1,2"
    resolved = resolve_iob_token(output, SHARED, SCHEMA)
    assert [s.groups for s in resolved.spans] == [frozenset({1}), frozenset({2}), frozenset({1, 2})]
    assert relations_as_text(resolved, SHARED) == SHARED_RELATIONS


def test_groups_of_an_iob_span_are_the_union_over_its_tokens():
    resolved = resolve_iob_token("81\tB-Strength\t1\nmg\tI-Strength\t2", AMD, SCHEMA)
    assert resolved.spans[0].groups == frozenset({1, 2})


def span(label, start, end, groups=(1,), match="exact", source="iob_token", confidence=0.7, score=100.0):
    return ResolvedSpan(label, start, end, frozenset(groups), match, score, source, confidence)


TWO_RULES = parse_label_schema(
    {
        "entity_types": [{"name": n, "color": "#000000"} for n in ("Drug", "Reason")],
        "relation_types": [
            {"name": "treats", "head_types": ["Drug"], "tail_types": ["Reason"]},
            {"name": "given-for", "head_types": ["Drug"], "tail_types": ["Reason"]},
            {"name": "Reason-Drug", "head_types": ["Reason"], "tail_types": ["Drug"]},
        ],
    }
)

# (spans, schema, expected relations as (type, head, tail))
RELATION_CASES = [
    ([span("Drug", 0, 7), span("Strength", 8, 13)], SCHEMA, [("Strength-Drug", 1, 0)]),
    ([span("Drug", 0, 7, (1,)), span("Strength", 8, 13, (2,))], SCHEMA, []),  # different groups
    ([span("Drug", 0, 7, ()), span("Strength", 8, 13, ())], SCHEMA, []),  # no group: no relation
    ([span("Strength", 0, 2), span("Route", 3, 5)], SCHEMA, []),  # no relation type for the pair
    # First relation type in schema order wins; each direction is its own ordered pair.
    ([span("Drug", 0, 7), span("Reason", 8, 11)], TWO_RULES, [("treats", 0, 1), ("Reason-Drug", 1, 0)]),
    ([span("Drug", 0, 7, (1, 2)), span("Strength", 8, 13, (1, 2))], SCHEMA, [("Strength-Drug", 1, 0)]),
]


@pytest.mark.parametrize(("spans", "schema", "expected"), RELATION_CASES)
def test_relations_from_groups(spans, schema, expected):
    assert [(r.type, r.head, r.tail) for r in relations_from_groups(spans, schema)] == expected


def test_anchor_label_of_the_medication_schema_is_drug():
    assert anchor_labels(SCHEMA) == {"Drug"}
    assert anchor_labels(NO_RELATIONS) == frozenset()


# ---- ensemble ------------------------------------------------------------------------------------------


def chunk_of(*spans: ResolvedSpan, dropped=(), fuzzy=()) -> ResolvedChunk:
    return ResolvedChunk(tuple(spans), (), tuple(dropped), tuple(fuzzy))


def d(label, start, end, groups=(1,), match="exact"):
    return span(
        label,
        start,
        end,
        groups,
        match,
        "direct_chunk",
        {"exact": 0.7, "normalised": 0.6, "fuzzy": 0.4}[match],
    )


def i(label, start, end, groups=(1,), match="exact"):
    return span(
        label, start, end, groups, match, "iob_token", {"exact": 0.7, "normalised": 0.6, "fuzzy": 0.4}[match]
    )


# "aspirin 81 mg daily for CAD; plavix 75 mg for CAD"
#  0       8  11 14    20  24  27   33 37    43  47
# (id, iob spans, direct spans, schema, expected (label, start, end, source, confidence, groups count))
ENSEMBLE_CASES = [
    (
        "overlapping fields: union of the two spans, found by both",
        [i("Drug", 0, 7), i("Strength", 8, 10)],
        [d("Drug", 0, 7), d("Strength", 8, 13)],
        SCHEMA,
        [("Drug", 0, 7, "both", 0.9), ("Strength", 8, 13, "both", 0.9)],
    ),
    (
        "same field not overlapping: the first schema's (iob_token) is kept",
        [i("Drug", 0, 7), i("Reason", 24, 27)],
        [d("Drug", 0, 7), d("Reason", 47, 50)],
        SCHEMA,
        [("Drug", 0, 7, "both", 0.9), ("Reason", 24, 27, "iob_token", 0.7)],
    ),
    (
        "a field only one schema has is kept with its own confidence",
        [i("Drug", 0, 7), i("Frequency", 14, 19, match="fuzzy")],
        [d("Drug", 0, 7), d("Strength", 8, 13, match="normalised")],
        SCHEMA,
        [
            ("Drug", 0, 7, "both", 0.9),
            ("Strength", 8, 13, "direct_chunk", 0.6),
            ("Frequency", 14, 19, "iob_token", 0.4),
        ],
    ),
    (
        "groups whose drugs do not overlap are both kept",
        [i("Drug", 0, 7), i("Strength", 8, 13)],
        [d("Drug", 29, 35), d("Strength", 36, 41)],
        SCHEMA,
        [
            ("Drug", 0, 7, "iob_token", 0.7),
            ("Strength", 8, 13, "iob_token", 0.7),
            ("Drug", 29, 35, "direct_chunk", 0.7),
            ("Strength", 36, 41, "direct_chunk", 0.7),
        ],
    ),
    (
        "alignment is by the drug: overlapping strengths of unaligned groups are not merged",
        [i("Drug", 0, 7), i("Strength", 8, 13)],
        [d("Drug", 29, 35), d("Strength", 8, 13)],
        SCHEMA,
        [
            ("Drug", 0, 7, "iob_token", 0.7),
            ("Strength", 8, 13, "both", 0.9),  # same offsets from both schemas: one span
            ("Drug", 29, 35, "direct_chunk", 0.7),
        ],
    ),
    (
        "a union of a fuzzy and an exact match is found by both",
        [i("Drug", 0, 7, match="fuzzy")],
        [d("Drug", 0, 7)],
        SCHEMA,
        [("Drug", 0, 7, "both", 0.9)],
    ),
    (
        "no relation types: each span its own group, aligned by label and overlap",
        [i("Drug", 0, 7, ()), i("Reason", 24, 27, ())],
        [d("Drug", 0, 10, ()), d("Reason", 47, 50, ())],
        NO_RELATIONS,
        [
            ("Drug", 0, 10, "both", 0.9),
            ("Reason", 24, 27, "iob_token", 0.7),
            ("Reason", 47, 50, "direct_chunk", 0.7),
        ],
    ),
]


@pytest.mark.parametrize(
    ("iob", "direct", "schema", "expected"),
    [c[1:] for c in ENSEMBLE_CASES],
    ids=[c[0] for c in ENSEMBLE_CASES],
)
def test_ensemble(iob, direct, schema, expected):
    merged = ensemble(chunk_of(*iob), chunk_of(*direct), schema)
    assert [(s.label, s.start, s.end, s.source, s.confidence) for s in merged.spans] == expected


def test_ensemble_relations_come_from_the_merged_groups():
    iob = chunk_of(i("Drug", 0, 7, (1,)), i("Strength", 8, 13, (1,)))
    direct = chunk_of(d("Drug", 0, 7, (4,)), d("Frequency", 14, 19, (4,)))
    merged = ensemble(iob, direct, SCHEMA)
    assert {(r.type, merged.spans[r.head].label, merged.spans[r.tail].label) for r in merged.relations} == {
        ("Strength-Drug", "Strength", "Drug"),
        ("Frequency-Drug", "Frequency", "Drug"),
    }


def test_ensemble_keeps_a_shared_reason_in_both_merged_groups():
    iob = resolve_iob_token(
        "aspirin\tB-Drug\t1\nand\tO\nplavix\tB-Drug\t2\nfor\tO\nCAD\tB-Reason\t1,2", SHARED, SCHEMA
    )
    direct = resolve_direct_chunk(
        direct_yaml([("Drug", "aspirin"), ("Reason", "CAD")], [("Drug", "plavix"), ("Reason", "CAD")]),
        SHARED,
        SCHEMA,
    )
    merged = ensemble(iob, direct, SCHEMA)
    assert [(s.label, s.source, len(s.groups)) for s in merged.spans] == [
        ("Drug", "both", 1),
        ("Drug", "both", 1),
        ("Reason", "both", 2),
    ]
    assert relations_as_text(merged, SHARED) == SHARED_RELATIONS


def test_ensemble_concatenates_dropped_and_fuzzy():
    iob = chunk_of(dropped=[Dropped("unparseable line", "x")], fuzzy=[("asprin", "aspirin", 92.3)])
    direct = chunk_of(dropped=[Dropped("unknown label", "Dose: 1")])
    merged = ensemble(iob, direct, SCHEMA)
    assert merged.dropped == (Dropped("unparseable line", "x"), Dropped("unknown label", "Dose: 1"))
    assert merged.fuzzy == (("asprin", "aspirin", 92.3),)
    assert merged.parsed
    assert ensemble(nothing_parsed("?"), nothing_parsed("?"), SCHEMA).parsed is False


def test_ensemble_of_real_answers_prefers_recall():
    chunk = "Aspirin 81 mg PO daily."
    iob = resolve_iob_token("Aspirin\tB-Drug\t1\n81\tB-Strength\t1\nPO\tB-Route\t1", chunk, SCHEMA)
    direct = resolve_direct_chunk(
        direct_yaml([("Drug", "aspirin"), ("Strength", "81 mg"), ("Frequency", "daily")]), chunk, SCHEMA
    )
    merged = ensemble(iob, direct, SCHEMA)
    assert [(s.label, chunk[s.start : s.end], s.confidence) for s in merged.spans] == [
        ("Drug", "Aspirin", 0.9),
        ("Strength", "81 mg", 0.9),
        ("Route", "PO", 0.7),
        ("Frequency", "daily", 0.7),
    ]


# ---- edge stripping ------------------------------------------------------------------------------------

STRIP_CASES = [
    ("mg.", "mg"),
    ("(PO)", "PO"),
    ("q.d.", "q.d."),
    ("b.i.d.,", "b.i.d."),
    ("1 tab p.o.", "1 tab p.o."),
    ('"Lasix"', "Lasix"),
    ("  aspirin;\n", "aspirin"),
    ("5%)", "5%"),
    ("(as needed", "as needed"),
    ("tylenol (acetaminophen)", "tylenol (acetaminophen)"),
    ("(2) tablets", "(2) tablets"),
    ("[PO]", "PO"),
    ("...", ""),
    ("1.5 mg.", "1.5 mg"),
]


@pytest.mark.parametrize(("text", "expected"), STRIP_CASES)
def test_strip_edges(text, expected):
    start, end = strip_edges(text, 0, len(text))
    assert text[start:end] == expected


def test_confidence_ranks_agreement_then_match_then_similarity():
    """Both schemas agreeing is surer than one; within each, a fuzzy match counts by its ratio."""
    chunk = "Aspirin 81 mg PO daily."
    iob = resolve_iob_token("Asprin\tB-Drug\t1\n81\tB-Strength\t1", chunk, SCHEMA)
    direct = resolve_direct_chunk(direct_yaml([("Drug", "asprin"), ("Strength", "81 mg")]), chunk, SCHEMA)
    merged = ensemble(iob, direct, SCHEMA)
    confidence = {s.label: s.confidence for s in merged.spans}
    assert confidence["Strength"] == 0.9  # both, exact
    assert 0.7 < confidence["Drug"] < 0.9  # both, fuzzy at ratio 92: below exact agreement
    (alone,) = [s for s in direct.spans if s.label == "Drug"]
    assert alone.confidence < confidence["Drug"]  # one schema, fuzzy: lower still
