"""Reading brat standoff: discontinuous spans, relations, notes, CRLF and BOM offsets."""

import pytest

from app.domain.brat import BratError, check_offsets, parse_ann
from app.domain.spans import Fragment


def test_discontinuous_entity_relation_and_note():
    text = "aspirin 81 mg and then 2 tablets"
    ann = (
        "T1\tDrug 0 7\taspirin\n"
        "T2\tStrength 8 13\t81 mg\n"
        "T3\tDosage 0 7;23 32\taspirin 2 tablets\n"
        "R1\tStrength-Drug Arg1:T2 Arg2:T1\n"
        "#1\tAnnotatorNotes T1\tconfidence=0.9\n"
    )
    parsed = parse_ann(ann)
    assert parsed.entities["T3"].fragments == (Fragment(0, 7), Fragment(23, 32))
    assert parsed.relations[0].arg1 == "T2" and parsed.relations[0].type == "Strength-Drug"
    assert parsed.notes["T1"] == ["confidence=0.9"]
    check_offsets(parsed, text)


def test_offsets_count_crlf_and_byte_order_mark():
    text = "\ufeffLine one\r\nheparin drip"
    ann = "T1\tDrug 11 18\theparin\r\n"
    parsed = parse_ann(ann)
    check_offsets(parsed, text)
    assert text[11:18] == "heparin"


@pytest.mark.parametrize(
    "ann,line,words",
    [
        ("T1\tDrug 0 7\taspirin\nT2\tDrug x 9\tfoo\n", 2, "bad offsets"),
        ("T1\tDrug 7 3\taspirin\n", 1, "start < end"),
        ("T1\tDrug 0 7\n", 1, "needs"),
        ("T1\tDrug 0 7\taspirin\nR1\tStrength-Drug Arg1:T9 Arg2:T1\n", 2, "T9"),
    ],
)
def test_bad_lines_are_reported_with_their_number(ann, line, words):
    with pytest.raises(BratError) as raised:
        parse_ann(ann, "note.ann")
    assert raised.value.line == line
    assert words in str(raised.value) and "note.ann" in str(raised.value)


def test_a_span_that_does_not_match_its_text_is_reported_not_shifted():
    parsed = parse_ann("T1\tDrug 1 8\taspirin\n")
    with pytest.raises(BratError, match="T1 text does not match"):
        check_offsets(parsed, "aspirin and more")
