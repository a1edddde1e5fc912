"""CoNLL IOB2: tokens as metrics.md defines them, one sentence per line of the note, overlaps resolved."""

import pytest

from app.domain.conll import write_conll
from app.domain.spans import Fragment, SpanData


def span(label: str, *fragments: tuple[int, int]) -> SpanData:
    return SpanData(label, tuple(Fragment(start, end) for start, end in fragments))


def rows(*pairs: str) -> str:
    """'token TAG' pairs as CoNLL lines; '' is the blank line between sentences."""
    return "".join("\n" if pair == "" else "{}\t{}\n".format(*pair.rsplit(" ", 1)) for pair in pairs)


# (what, text, spans, label order, expected)
CASES = [
    ("no spans", "No fever.", [], (), rows("No O", "fever O", ". O")),
    ("empty text", "", [], (), ""),
    (
        "one span of two tokens",
        "Has chest pain.",
        [span("Symptom", (4, 14))],
        (),
        rows("Has O", "chest B-Symptom", "pain I-Symptom", ". O"),
    ),
    (
        "sentences are lines; CRLF and blank lines make one break",
        "Aspirin 81 mg\r\n\r\nNo rash",
        [span("Drug", (0, 7))],
        (),
        rows("Aspirin B-Drug", "81 O", "mg O", "", "No O", "rash O"),
    ),
    (
        "punctuation is a token of its own",
        "BP: 120/80",
        [span("Value", (4, 10))],
        (),
        rows("BP O", ": O", "120 B-Value", "/ I-Value", "80 I-Value"),
    ),
    (
        "adjacent spans of one label each start with B-",
        "aspirin heparin",
        [span("Drug", (0, 7)), span("Drug", (8, 15))],
        (),
        rows("aspirin B-Drug", "heparin B-Drug"),
    ),
    (
        "a span inside a token takes the whole token",
        "hypertension",
        [span("Condition", (5, 12))],
        (),
        rows("hypertension B-Condition"),
    ),
    (
        "overlap: the longest span wins its tokens",
        "severe chest pain",
        [span("Symptom", (13, 17)), span("Symptom", (0, 17)), span("Site", (7, 12))],
        (),
        rows("severe B-Symptom", "chest I-Symptom", "pain I-Symptom"),
    ),
    (
        "overlap: the shorter span keeps the tokens the longer does not cover, starting with B-",
        "chest pain radiating left",
        [span("Symptom", (0, 20)), span("Direction", (11, 25))],
        (),
        rows("chest B-Symptom", "pain I-Symptom", "radiating I-Symptom", "left B-Direction"),
    ),
    (
        "overlap of equal length: the label first in the order given wins",
        "warfarin",
        [span("Drug", (0, 8)), span("Anticoagulant", (0, 8))],
        ("Anticoagulant", "Drug"),
        rows("warfarin B-Anticoagulant"),
    ),
    (
        "overlap of equal length, no order given: the span given first wins",
        "warfarin",
        [span("Drug", (0, 8)), span("Anticoagulant", (0, 8))],
        (),
        rows("warfarin B-Drug"),
    ),
    (
        "discontinuous: B- at its first token, I- on every other fragment",
        "aspirin and then 2 tablets",
        [span("Dosage", (17, 26), (0, 7))],
        (),
        rows("aspirin B-Dosage", "and O", "then O", "2 I-Dosage", "tablets I-Dosage"),
    ),
    (
        "offsets are code points: an emoji is one",
        "\U0001f600 fever",
        [span("Symptom", (2, 7))],
        (),
        rows("\U0001f600 O", "fever B-Symptom"),
    ),
]


@pytest.mark.parametrize("text,spans,order,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_write_conll(text, spans, order, expected):
    assert write_conll(text, spans, order) == expected


def test_every_token_is_written_once_whatever_the_spans():
    text = "Pt w/ DM2, HTN.\nOn metformin 500 mg BID\n"
    spans = [span("Condition", (6, 9)), span("Condition", (6, 14)), span("Drug", (19, 28), (32, 35))]
    lines = [line for line in write_conll(text, spans).split("\n") if line]
    assert [line.split("\t")[0] for line in lines] == [
        "Pt", "w", "/", "DM2", ",", "HTN", ".", "On", "metformin", "500", "mg", "BID",
    ]  # fmt: skip
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in (line.split("\t")[1] for line in lines))
