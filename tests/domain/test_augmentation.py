"""Structured augmentation (app/domain/augmentation.py, no database): segments of a note written with
inline markers, the model's answer read back into text and spans, validated, and spliced into the note."""

from contextlib import contextmanager

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from app.domain.augmentation import (
    AUGMENT_PHRASE,
    FREEDOMS,
    PASSAGE_END,
    PASSAGE_START,
    REJECTIONS,
    REWRITE_CLOSE,
    REWRITE_OPEN,
    Decoded,
    Link,
    Mention,
    Rejected,
    Segment,
    augment_answer,
    check,
    choose_segments,
    decode,
    encode,
    links_of,
    mentions_of,
    messages,
    rejection_counts,
    rewritten_segment,
    splice,
)
from app.domain.label_schema import parse_label_schema

LABELS = ["Drug", "Strength", "Frequency", "Medication", "Dosage", "ADE", "Reason", "Date"]
SCHEMA = parse_label_schema(
    {
        "entity_types": [
            {
                "name": name,
                "color": "#1f77b4",
                **({"description": "a medicine's name"} if name == "Drug" else {}),
            }
            for name in LABELS
        ],
        "relation_types": [
            {"name": "Strength-Drug", "head_types": ["Strength"], "tail_types": ["Drug"]},
            {"name": "Frequency-Drug", "head_types": ["Frequency"], "tail_types": ["Drug"]},
            {"name": "ADE-Drug", "head_types": ["ADE"], "tail_types": ["Drug"]},
            {"name": "Reason-Drug", "head_types": ["Reason"], "tail_types": ["Drug"]},
        ],
    }
)


def numbered(*spans: tuple[str, int, int]) -> list[Mention]:
    """Mentions numbered as the job numbers them, from (label, start, end)."""
    found, discontinuous = mentions_of((label, [(start, end)]) for label, start, end in spans)
    assert discontinuous == []
    return found


def whole(text: str, mentions: list[Mention]) -> Segment:
    return Segment(0, len(text), tuple(mentions))


@contextmanager
def rejected(reason: str):
    assert reason in REJECTIONS
    with pytest.raises(Rejected) as caught:
        yield
    assert caught.value.reason == reason, caught.value


# --- encode / decode -------------------------------------------------------------------------------------

# (text, segment start, segment end, spans as (label, start, end), the marked segment)
ENCODE_CASES = {
    "no_markers": ("Aspirin 81 mg daily.", 0, 20, [], "Aspirin 81 mg daily."),
    "plain": (
        "Aspirin 81 mg daily.",
        0,
        20,
        [("Drug", 0, 7), ("Strength", 8, 13), ("Frequency", 14, 19)],
        "[[Drug#1: Aspirin]] [[Strength#2: 81 mg]] [[Frequency#3: daily]].",
    ),
    "at_the_very_start_and_end": (
        "aspirin daily",
        0,
        13,
        [("Drug", 0, 7), ("Frequency", 8, 13)],
        "[[Drug#1: aspirin]] [[Frequency#2: daily]]",
    ),
    "whole_segment_marked": ("aspirin", 0, 7, [("Drug", 0, 7)], "[[Drug#1: aspirin]]"),
    "adjacent": ("ab", 0, 2, [("Drug", 0, 1), ("Strength", 1, 2)], "[[Drug#1: a]][[Strength#2: b]]"),
    "adjacent_words": (
        "aspirin81mg",
        0,
        11,
        [("Drug", 0, 7), ("Strength", 7, 11)],
        "[[Drug#1: aspirin]][[Strength#2: 81mg]]",
    ),
    "nested_same_start": (
        "aspirin 81 mg",
        0,
        13,
        [("Medication", 0, 13), ("Drug", 0, 7)],
        "[[Medication#1: [[Drug#2: aspirin]] 81 mg]]",
    ),
    "nested_same_end": (
        "aspirin 81 mg",
        0,
        13,
        [("Medication", 0, 13), ("Strength", 8, 13)],
        "[[Medication#1: aspirin [[Strength#2: 81 mg]]]]",
    ),
    "nested_in_the_middle": (
        "take aspirin daily",
        0,
        18,
        [("Medication", 0, 18), ("Drug", 5, 12)],
        "[[Medication#1: take [[Drug#2: aspirin]] daily]]",
    ),
    "nested_same_extent": (
        "aspirin",
        0,
        7,
        [("Medication", 0, 7), ("Drug", 0, 7)],
        "[[Drug#1: [[Medication#2: aspirin]]]]",
    ),
    "three_levels": (
        "aspirin 81 mg po",
        0,
        16,
        [("Medication", 0, 16), ("Dosage", 8, 16), ("Strength", 8, 13)],
        "[[Medication#1: aspirin [[Dosage#2: [[Strength#3: 81 mg]] po]]]]",
    ),
    "nested_then_adjacent": (
        "aspirin 81 mg daily",
        0,
        19,
        [("Medication", 0, 13), ("Drug", 0, 7), ("Strength", 8, 13), ("Frequency", 14, 19)],
        "[[Medication#1: [[Drug#2: aspirin]] [[Strength#3: 81 mg]]]] [[Frequency#4: daily]]",
    ),
    "segment_inside_the_note": (
        "Hx: HTN. Aspirin 81 mg daily. Stop.",
        9,
        29,
        [("Drug", 9, 16), ("Strength", 17, 22)],
        "[[Drug#1: Aspirin]] [[Strength#2: 81 mg]] daily.",
    ),
    "accents": (
        "Paciente con náuseas tras ibuprofeno",
        0,
        36,
        [("ADE", 13, 20), ("Drug", 26, 36)],
        "Paciente con [[ADE#1: náuseas]] tras [[Drug#2: ibuprofeno]]",
    ),
    "combining_mark_inside": (
        "Cafe\u0301ine 200 mg",
        0,
        15,
        [("Drug", 0, 8), ("Strength", 9, 15)],
        "[[Drug#1: Cafe\u0301ine]] [[Strength#2: 200 mg]]",
    ),
    "combining_mark_right_after_a_marker": (
        "Cafe\u0301",
        0,
        5,
        [("Drug", 0, 4)],
        "[[Drug#1: Cafe]]\u0301",
    ),
    "emoji_outside_the_bmp": (
        "Rash 😖 after 💊 amoxicillin",
        0,
        26,
        [("ADE", 0, 6), ("Drug", 15, 26)],
        "[[ADE#1: Rash 😖]] after 💊 [[Drug#2: amoxicillin]]",
    ),
    "cjk": (
        "阿司匹林 81 mg 每日",
        0,
        13,
        [("Drug", 0, 4), ("Strength", 5, 10), ("Frequency", 11, 13)],
        "[[Drug#1: 阿司匹林]] [[Strength#2: 81 mg]] [[Frequency#3: 每日]]",
    ),
    "crlf_line_ends": (
        "Aspirin 81 mg\r\nMetformin 500 mg\r\n",
        0,
        33,
        [("Medication", 0, 31), ("Drug", 0, 7), ("Strength", 8, 13), ("Drug", 15, 24), ("Strength", 25, 31)],
        "[[Medication#1: [[Drug#2: Aspirin]] [[Strength#3: 81 mg]]\r\n"
        "[[Drug#4: Metformin]] [[Strength#5: 500 mg]]]]\r\n",
    ),
    "bracket_before_a_marker": (
        "[aspirin] 81 mg",
        0,
        15,
        [("Drug", 1, 8), ("Strength", 10, 15)],
        "[[[Drug#1: aspirin]]] [[Strength#2: 81 mg]]",
    ),
    "bracketed_mention": (
        "Seen [**2118-6-15**] by Dr. [**Name**].",
        0,
        39,
        [("Date", 5, 20)],
        "Seen [[Date#1: [**2118-6-15**]]] by Dr. [**Name**].",
    ),
    "brackets_around_a_nested_marker": (
        "[aspirin]",
        0,
        9,
        [("Medication", 0, 9), ("Drug", 1, 8)],
        "[[Medication#1: [[[Drug#2: aspirin]]]]]",
    ),
    "lone_bracket_after_a_marker": ("aspirin] x", 0, 10, [("Drug", 0, 7)], "[[Drug#1: aspirin]]] x"),
    "brackets_in_the_text": (
        "BP [sitting] 120/80 ] then [ aspirin",
        0,
        36,
        [("Drug", 29, 36)],
        "BP [sitting] 120/80 ] then [ [[Drug#1: aspirin]]",
    ),
}


def _order(span: tuple[str, int, int]) -> tuple[int, int, str]:
    return span[1], -span[2], span[0]


@pytest.mark.parametrize("case", ENCODE_CASES.values(), ids=ENCODE_CASES.keys())
def test_encode_writes_each_mention_as_a_marker(case):
    text, start, end, spans, expected = case
    found = numbered(*spans)
    assert [text[m.start : m.end] for m in found] == [text[s:e] for _, s, e in sorted(spans, key=_order)]
    assert encode(text, Segment(start, end, tuple(found))) == expected


@pytest.mark.parametrize("case", ENCODE_CASES.values(), ids=ENCODE_CASES.keys())
def test_decode_gives_back_the_segment_and_its_mentions(case):
    text, start, end, spans, marked = case
    found = numbered(*spans)
    decoded = decode(marked)
    assert decoded.text == text[start:end]
    assert decoded.mentions == tuple(Mention(m.id, m.label, m.start - start, m.end - start) for m in found)


TEXT_CHARACTERS = st.one_of(
    st.characters(exclude_categories=("Cs",), exclude_characters="[]"),
    st.sampled_from(["é", "e\u0301", "😖", "💊", "阿", "\r\n", "\n", " ", "\t", "\ufeff"]),
)
TEXTS = st.lists(TEXT_CHARACTERS, max_size=25).map("".join)


def _crossing(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] < a[1] < b[1] or b[0] < a[0] < b[1] < a[1]


@st.composite
def annotated_segments(draw, texts=TEXTS):
    """A note (left context, segment, right context) and properly nested mentions inside the segment."""
    left, body, right = draw(texts), draw(texts), draw(texts)
    drawn = draw(
        st.lists(
            st.tuples(st.sampled_from(LABELS), st.integers(0, len(body)), st.integers(0, len(body))),
            max_size=8,
        )
    )
    spans: list[tuple[str, int, int]] = []
    for label, a, b in drawn:
        a, b = min(a, b), max(a, b)
        if a < b and not any(_crossing((a, b), (s, e)) for _, s, e in spans):
            spans.append((label, a, b))
    shift = len(left)
    found = numbered(*((label, a + shift, b + shift) for label, a, b in spans))
    return left + body + right, Segment(shift, shift + len(body), tuple(found))


@settings(max_examples=300, deadline=None)
@given(annotated_segments())
def test_decode_undoes_encode(case):
    text, segment = case
    decoded = decode(encode(text, segment))
    assert decoded == Decoded(
        text[segment.start : segment.end],
        tuple(
            Mention(m.id, m.label, m.start - segment.start, m.end - segment.start) for m in segment.mentions
        ),
    )


def _balanced(text: str) -> bool:
    return text.count("[") == text.count("]")


@settings(max_examples=300, deadline=None)
@given(
    annotated_segments(st.lists(st.one_of(TEXT_CHARACTERS, st.sampled_from("[]")), max_size=25).map("".join))
)
def test_decode_undoes_encode_around_the_notes_own_brackets(case):
    """Brackets in the note stay text next to markers, as long as a marked text's brackets pair up and
    the note has no [[ or ]] of its own."""
    text, segment = case
    assume("[[" not in text and "]]" not in text)
    assume(all(_balanced(text[m.start : m.end]) for m in segment.mentions))
    decoded = decode(encode(text, segment))
    assert decoded.text == text[segment.start : segment.end]
    assert decoded.mentions == tuple(
        Mention(m.id, m.label, m.start - segment.start, m.end - segment.start) for m in segment.mentions
    )


DECODE_REJECTIONS = {
    "header_without_colon": ("[[Drug#1 x]]", "broken_marker"),
    "header_without_id": ("[[Drug: x]]", "broken_marker"),
    "header_without_label": ("[[#1: x]]", "broken_marker"),
    "id_not_a_number": ("[[Drug#one: x]]", "broken_marker"),
    "space_before_the_label": ("[[ Drug#1: x]]", "broken_marker"),
    "broken_header_after_text": ("Took [[Drug#1 aspirin]] daily", "broken_marker"),
    "closing_without_opening": ("x]]", "unbalanced_marker"),
    "closing_twice": ("[[Drug#1: a]] b]]", "unbalanced_marker"),
    "closing_once_too_often_in_a_run": ("[[Drug#1: a]]]]", "unbalanced_marker"),
    "never_closed": ("[[Drug#1: x", "unbalanced_marker"),
    "inner_closed_outer_not": ("[[Medication#1: [[Drug#2: a]] b", "unbalanced_marker"),
    "empty_marker": ("[[Drug#1: ]]", "empty_marker"),
    "empty_marker_without_space": ("[[Drug#1:]]", "empty_marker"),
    "empty_inner_marker": ("[[Medication#1: [[Drug#2: ]] x]]", "empty_marker"),
}


@pytest.mark.parametrize("case", DECODE_REJECTIONS.values(), ids=DECODE_REJECTIONS.keys())
def test_decode_rejects_broken_markers(case):
    marked, reason = case
    with rejected(reason):
        decode(marked)


# (marked, text, mentions as (id, label, start, end)): what clinical notes hold and models write.
DECODE_ACCEPTED = {
    "lone_opening_bracket": ("[", "[", []),
    "lone_closing_bracket": ("]", "]", []),
    "bracketed_word": ("[x]", "[x]", []),
    "brackets_in_a_sentence": ("BP [sitting] 120/80 ] x [", "BP [sitting] 120/80 ] x [", []),
    "mimic_placeholders": ("Dr. [**Name**] on [**2118-6-15**]", "Dr. [**Name**] on [**2118-6-15**]", []),
    "bracket_before_a_marker": ("[[[Drug#1: x]]]", "[x]", [(1, "Drug", 1, 2)]),
    "bracket_after_a_marker": ("[[Drug#1: x]]]", "x]", [(1, "Drug", 0, 1)]),
    "bracketed_marked_text": ("[[Date#1: [**2118-6-15**]]]", "[**2118-6-15**]", [(1, "Date", 0, 15)]),
    "no_space_after_the_colon": ("[[Drug#1:x]]", "x", [(1, "Drug", 0, 1)]),
    "two_spaces_after_the_colon": ("[[Drug#1:  x]]", " x", [(1, "Drug", 0, 2)]),
    "label_with_dash_and_digits": ("[[ADE-2_b#12: x]]", "x", [(12, "ADE-2_b", 0, 1)]),
    "ids_out_of_order": (
        "[[Strength#2: b]] [[Drug#1: a]]",
        "b a",
        [(2, "Strength", 0, 1), (1, "Drug", 2, 3)],
    ),
    "single_square_brackets_are_not_markers": ("[Drug#1: x]", "[Drug#1: x]", []),
}


@pytest.mark.parametrize("case", DECODE_ACCEPTED.values(), ids=DECODE_ACCEPTED.keys())
def test_decode_keeps_the_texts_own_brackets(case):
    marked, text, spans = case
    assert decode(marked) == Decoded(text, tuple(Mention(*span) for span in spans))


def test_decode_reads_a_marker_the_model_invented_or_repeated():
    """decode reads markers only; that they are the segment's is check's business."""
    decoded = decode("[[Drug#1: a]] and [[Drug#1: a]] and [[Drug#9: b]]")
    assert decoded == Decoded(
        "a and a and b", (Mention(1, "Drug", 0, 1), Mention(1, "Drug", 6, 7), Mention(9, "Drug", 12, 13))
    )


# --- the note used for rewriting, checking and splicing ----------------------------------------------------

NOTE = "Hx: HTN.\nAspirin 81 mg daily.\nRash on day 2."
MENTIONS = numbered(
    ("Reason", 4, 7), ("Drug", 9, 16), ("Strength", 17, 22), ("Frequency", 23, 28), ("ADE", 30, 34)
)
LINKS = [Link("Reason-Drug", 1, 2), Link("Strength-Drug", 3, 2), Link("ADE-Drug", 5, 2)]
SEGMENT = Segment(9, 29, tuple(MENTIONS[1:4]))
MARKED = "[[Drug#2: Aspirin]] [[Strength#3: 81 mg]] [[Frequency#4: daily]]."


def test_the_note_is_what_the_tests_think():
    assert [(m.id, m.label, NOTE[m.start : m.end]) for m in MENTIONS] == [
        (1, "Reason", "HTN"),
        (2, "Drug", "Aspirin"),
        (3, "Strength", "81 mg"),
        (4, "Frequency", "daily"),
        (5, "ADE", "Rash"),
    ]
    assert NOTE[SEGMENT.start : SEGMENT.end] == "Aspirin 81 mg daily."
    assert encode(NOTE, SEGMENT) == MARKED


def passage(segment_marked: str, left: str = "Hx: HTN.\n", right: str = "\nRash on day 2.") -> str:
    return f"{PASSAGE_START}{left}{REWRITE_OPEN}{segment_marked}{REWRITE_CLOSE}{right}{PASSAGE_END}"


# --- check ---------------------------------------------------------------------------------------------

REWORDED = "Takes [[Drug#2: Aspirin]] [[Strength#3: 81 mg]] [[Frequency#4: daily]]."
# (the rewritten segment, freedom, the reason or None when accepted)
CHECK_CASES = {
    "reworded_light": (REWORDED, "light", None),
    "reworded_moderate": (REWORDED, "moderate", None),
    "reworded_free": (REWORDED, "free", None),
    "markers_reordered": (
        "[[Frequency#4: daily]]: [[Drug#2: Aspirin]] [[Strength#3: 81 mg]].",
        "light",
        None,
    ),
    "dropped_marker": ("Takes [[Drug#2: Aspirin]] [[Strength#3: 81 mg]] daily.", "light", "dropped_marker"),
    "dropped_text_too": ("Takes [[Drug#2: Aspirin]] [[Strength#3: 81 mg]].", "free", "dropped_marker"),
    "dropped_relation_argument": (
        "Takes [[Drug#2: Aspirin]] 81 mg [[Frequency#4: daily]].",
        "light",
        "lost_relation_argument",
    ),
    "dropped_argument_of_a_relation_leaving_the_segment": (
        "Takes Aspirin [[Strength#3: 81 mg]] [[Frequency#4: daily]].",
        "free",
        "lost_relation_argument",
    ),
    "invented_id": (REWORDED + " With [[Drug#6: food]].", "free", "invented_marker"),
    "id_of_a_mention_outside_the_segment": (REWORDED + " No [[ADE#5: Rash]].", "free", "invented_marker"),
    "same_id_twice": (REWORDED + " [[Drug#2: Aspirin]] again.", "light", "repeated_marker"),
    "label_outside_the_schema": (
        "Takes [[Drug#2: Aspirin]] [[Dose#3: 81 mg]] [[Frequency#4: daily]].",
        "free",
        "unknown_label",
    ),
    "relabelled": (
        "Takes [[Drug#2: Aspirin]] [[Dosage#3: 81 mg]] [[Frequency#4: daily]].",
        "free",
        "changed_label",
    ),
    "marked_text_changed_light": (
        "Takes [[Drug#2: Aspirin]] [[Strength#3: 81mg]] [[Frequency#4: daily]].",
        "light",
        "changed_entity_text",
    ),
    "marked_text_changed_moderate": (
        "Takes [[Drug#2: ASA]] [[Strength#3: 81 mg]] [[Frequency#4: daily]].",
        "moderate",
        "changed_entity_text",
    ),
    "marked_text_changed_free": (
        "Takes [[Drug#2: ASA]] [[Strength#3: 81mg]] [[Frequency#4: once a day]].",
        "free",
        None,
    ),
    "unchanged_light": (MARKED, "light", "unchanged"),
    "unchanged_free": (MARKED, "free", "unchanged"),
}


@pytest.mark.parametrize("case", CHECK_CASES.values(), ids=CHECK_CASES.keys())
def test_check(case):
    marked, freedom, reason = case
    decoded = decode(marked)
    if reason is None:
        check(decoded, NOTE, SEGMENT, LINKS, SCHEMA, freedom)
    else:
        with rejected(reason):
            check(decoded, NOTE, SEGMENT, LINKS, SCHEMA, freedom)


def test_every_freedom_has_an_instruction():
    assert set(FREEDOMS) == {"light", "moderate", "free"}


# --- rewritten_segment -----------------------------------------------------------------------------------

REWRITE = "Takes [[Drug#2: Aspirin]] [[Strength#3: 81 mg]] [[Frequency#4: daily]]."
# (the answer, the reason or None when it reads back REWRITE)
ANSWERS = {
    "bare_passage": (passage(REWRITE), None),
    "code_fence": ("```\n" + passage(REWRITE) + "\n```", None),
    "code_fence_with_language": ("```text\n" + passage(REWRITE) + "\n```\n", None),
    "prose_around": ("Here is variant 1:\n\n" + passage(REWRITE) + "\n\nI kept every marker.", None),
    "prose_naming_the_tags": (
        f"I changed only the text between {REWRITE_OPEN} and {REWRITE_CLOSE}, keeping the markers:\n"
        + passage(REWRITE)
        + f"\nEverything outside {REWRITE_OPEN} is as it was.",
        None,
    ),
    "prose_naming_the_passage_tags": (
        "Answer from <<<PASSAGE to PASSAGE>>>, as asked:\n" + passage(REWRITE) + "\n(the <<<PASSAGE block)",
        None,
    ),
    "closing_tag_without_its_line_break": (
        f"<<<PASSAGE\nHx: HTN.\n{REWRITE_OPEN}{REWRITE}{REWRITE_CLOSE}\nRash on day 2.PASSAGE>>>",
        None,
    ),
    "no_tags": ("I cannot rewrite clinical notes.", "no_passage"),
    "nothing": ("", "no_passage"),
    "passage_without_rewrite_tags": (
        f"{PASSAGE_START}Hx: HTN.\n{REWRITE}\nRash on day 2.{PASSAGE_END}",
        "no_passage",
    ),
    "rewrite_tags_without_passage": (
        f"Hx: HTN.\n{REWRITE_OPEN}{REWRITE}{REWRITE_CLOSE}\nRash on day 2.",
        "no_passage",
    ),
    "rewrite_tags_reversed": (
        f"{PASSAGE_START}Hx: HTN.\n{REWRITE_CLOSE}{REWRITE}{REWRITE_OPEN}\nRash on day 2.{PASSAGE_END}",
        "no_passage",
    ),
    "only_the_opening_rewrite_tag": (passage(REWRITE).replace(REWRITE_CLOSE, ""), "no_passage"),
    "passage_never_closed": (passage(REWRITE).removesuffix(PASSAGE_END), "no_passage"),
    "rewrite_tags_outside_the_passage": (
        f"{REWRITE_OPEN}{REWRITE}{REWRITE_CLOSE}\n{PASSAGE_START}Hx: HTN.\n\nRash on day 2.{PASSAGE_END}",
        "no_passage",
    ),
    "left_context_changed": (passage(REWRITE, left="Hx: hypertension.\n"), "changed_context"),
    "left_context_dropped": (passage(REWRITE, left=""), "changed_context"),
    "right_context_changed": (passage(REWRITE, right="\nRash on day 3."), "changed_context"),
    "right_context_dropped": (passage(REWRITE, right=""), "changed_context"),
    "space_added_right": (passage(REWRITE, right="\nRash on day 2. "), "changed_context"),
}


@pytest.mark.parametrize("case", ANSWERS.values(), ids=ANSWERS.keys())
def test_rewritten_segment(case):
    answer, reason = case
    if reason is None:
        assert rewritten_segment(answer, NOTE, SEGMENT) == REWRITE
    else:
        with rejected(reason):
            rewritten_segment(answer, NOTE, SEGMENT)


@pytest.mark.parametrize(
    ("left", "reason"),
    [("\n\n", None), ("\n", None), ("", "changed_context"), ("\n\n\n", "changed_context")],
)
def test_a_context_starting_with_a_line_break(left, reason):
    """With context=1 the left context of the last line is the line break before it."""
    segment = Segment(30, 44, (MENTIONS[4],))
    answer = f"<<<PASSAGE{left}{REWRITE_OPEN}[[ADE#5: Rash]] from day 2.{REWRITE_CLOSE}\nPASSAGE>>>"
    if reason is None:
        assert rewritten_segment(answer, NOTE, segment, context=1) == "[[ADE#5: Rash]] from day 2."
    else:
        with rejected(reason):
            rewritten_segment(answer, NOTE, segment, context=1)


# --- messages --------------------------------------------------------------------------------------------


def test_messages_ask_for_one_variant_of_the_marked_segment():
    system, user = messages(
        SCHEMA, NOTE, SEGMENT, LINKS, variant=2, variants=3, freedom="moderate", context=5
    )
    assert (system["role"], user["role"]) == ("system", "user")
    assert AUGMENT_PHRASE in system["content"]
    assert FREEDOMS["moderate"] in system["content"]
    assert FREEDOMS["light"] not in system["content"] and FREEDOMS["free"] not in system["content"]
    content = user["content"]
    expected_passage = f"{PASSAGE_START}HTN.\n{REWRITE_OPEN}{MARKED}{REWRITE_CLOSE}\nRash{PASSAGE_END}"
    assert content[content.index(PASSAGE_START) :] == expected_passage
    assert "- Drug: a medicine's name\n- Strength\n" in content
    # Only the relation with both ends in the segment; those reaching #1 and #5 outside are not listed.
    assert "(keep both ends):\n- #3 Strength-Drug #2\n\n" in content
    assert "Reason-Drug" not in content and "ADE-Drug" not in content
    assert "Write variant 2 of 3" in content


def test_messages_without_relations_or_context():
    segment = Segment(0, len(NOTE), tuple(MENTIONS))
    [_, user] = messages(SCHEMA, NOTE, segment, [], variant=1, variants=1, freedom="light")
    assert "(keep both ends):\n- none\n" in user["content"]
    assert user["content"].endswith(
        f"{PASSAGE_START}{REWRITE_OPEN}{encode(NOTE, segment)}{REWRITE_CLOSE}{PASSAGE_END}"
    )


@pytest.mark.parametrize("context", [0, 5, 9, 200])
@pytest.mark.parametrize("echo", ["passage", "whole_message"])
def test_an_answer_echoing_the_passage_with_the_segment_changed_is_read(context, echo):
    [_, user] = messages(
        SCHEMA, NOTE, SEGMENT, LINKS, variant=1, variants=2, freedom="light", context=context
    )
    content = user["content"]
    answer = content[content.index(PASSAGE_START) :] if echo == "passage" else content
    answer = answer.replace(
        f"{REWRITE_OPEN}{MARKED}{REWRITE_CLOSE}", f"{REWRITE_OPEN}{REWRITE}{REWRITE_CLOSE}"
    )
    assert rewritten_segment(answer, NOTE, SEGMENT, context) == REWRITE
    unchanged = content[content.index(PASSAGE_START) :]
    assert rewritten_segment(unchanged, NOTE, SEGMENT, context) == MARKED
    with rejected("unchanged"):
        augment_answer(unchanged, NOTE, MENTIONS, LINKS, SEGMENT, SCHEMA, "light", context)


# --- splice and augment_answer ---------------------------------------------------------------------------

# (segment, the rewritten segment, the synthetic note's text, its mentions as (id, label, start, end))
SPLICES = {
    "growth": (
        SEGMENT,
        "Patient takes [[Drug#2: Aspirin]] [[Strength#3: 81 mg]] [[Frequency#4: daily]].",
        "Hx: HTN.\nPatient takes Aspirin 81 mg daily.\nRash on day 2.",
        [(1, "Reason", 4, 7), (2, "Drug", 23, 30), (3, "Strength", 31, 36), (4, "Frequency", 37, 42),
         (5, "ADE", 44, 48)],
    ),
    "shrinkage": (
        SEGMENT,
        "[[Drug#2: ASA]] [[Strength#3: 81mg]] [[Frequency#4: qd]]",
        "Hx: HTN.\nASA 81mg qd\nRash on day 2.",
        [(1, "Reason", 4, 7), (2, "Drug", 9, 12), (3, "Strength", 13, 17), (4, "Frequency", 18, 20),
         (5, "ADE", 21, 25)],
    ),
    "same_length_reordered": (
        SEGMENT,
        "[[Frequency#4: daily]] [[Drug#2: Aspirin]] [[Strength#3: 81 mg]].",
        "Hx: HTN.\ndaily Aspirin 81 mg.\nRash on day 2.",
        [(1, "Reason", 4, 7), (4, "Frequency", 9, 14), (2, "Drug", 15, 22), (3, "Strength", 23, 28),
         (5, "ADE", 30, 34)],
    ),
    "segment_at_the_very_start": (
        Segment(0, 8, (MENTIONS[0],)),
        "History: [[Reason#1: HTN]].",
        "History: HTN.\nAspirin 81 mg daily.\nRash on day 2.",
        [(1, "Reason", 9, 12), (2, "Drug", 14, 21), (3, "Strength", 22, 27), (4, "Frequency", 28, 33),
         (5, "ADE", 35, 39)],
    ),
    "segment_at_the_very_end": (
        Segment(30, 44, (MENTIONS[4],)),
        "[[ADE#5: Rash]] since day 2 😖",
        "Hx: HTN.\nAspirin 81 mg daily.\nRash since day 2 😖",
        [(1, "Reason", 4, 7), (2, "Drug", 9, 16), (3, "Strength", 17, 22), (4, "Frequency", 23, 28),
         (5, "ADE", 30, 34)],
    ),
    "the_whole_note": (
        Segment(0, len(NOTE), tuple(MENTIONS)),
        "[[Reason#1: HTN]]: [[Drug#2: Aspirin]] [[Strength#3: 81 mg]] [[Frequency#4: daily]]; "
        "[[ADE#5: Rash]].",
        "HTN: Aspirin 81 mg daily; Rash.",
        [(1, "Reason", 0, 3), (2, "Drug", 5, 12), (3, "Strength", 13, 18), (4, "Frequency", 19, 24),
         (5, "ADE", 26, 30)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", SPLICES.values(), ids=SPLICES.keys())
def test_splice(case):
    segment, marked, text, spans = case
    decoded = decode(marked)
    note = splice(NOTE, MENTIONS, LINKS, segment, decoded)
    assert note.text == text
    assert note.mentions == tuple(Mention(*span) for span in spans)
    assert note.links == tuple(LINKS)
    inside = {m.id for m in segment.mentions}
    original = {m.id: NOTE[m.start : m.end] for m in MENTIONS}
    answered = {m.id: decoded.text[m.start : m.end] for m in decoded.mentions}
    for mention in note.mentions:
        expected = answered[mention.id] if mention.id in inside else original[mention.id]
        assert note.text[mention.start : mention.end] == expected
    # The whole way, from an answer in a code fence (under "free", which lets marked texts change).
    answer = f"Sure.\n```\n{passage(marked, NOTE[: segment.start], NOTE[segment.end :])}\n```"
    assert augment_answer(answer, NOTE, MENTIONS, LINKS, segment, SCHEMA, "free", context=len(NOTE)) == note


def test_splice_keeps_only_relations_whose_both_ends_are_in_the_note():
    decoded = decode("Takes [[Drug#2: Aspirin]] 81 mg daily.")
    note = splice(NOTE, MENTIONS, LINKS, SEGMENT, decoded)
    assert [m.id for m in note.mentions] == [1, 2, 5]
    assert note.links == (Link("Reason-Drug", 1, 2), Link("ADE-Drug", 5, 2))


WORDS = st.lists(
    st.one_of(
        st.characters(exclude_categories=("Cs",), exclude_characters="[]<>"), st.sampled_from("é😖阿\n")
    ),
    max_size=12,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(WORDS, WORDS, WORDS, WORDS),
    st.tuples(WORDS.filter(bool), WORDS.filter(bool), WORDS.filter(bool)),
    st.permutations([2, 3, 4]),
)
def test_every_span_of_the_synthetic_note_marks_the_text_its_marker_had(between, texts, order):
    labels = {2: "Drug", 3: "Strength", 4: "Frequency"}
    marked_text = dict(zip([2, 3, 4], texts, strict=True))
    marked = between[0] + "".join(
        f"[[{labels[i]}#{i}: {marked_text[i]}]]{gap}" for i, gap in zip(order, between[1:], strict=True)
    )
    decoded = decode(marked)
    assume(decoded.text != NOTE[SEGMENT.start : SEGMENT.end])
    note = augment_answer(passage(marked), NOTE, MENTIONS, LINKS, SEGMENT, SCHEMA, "free")
    shift = len(decoded.text) - (SEGMENT.end - SEGMENT.start)
    assert note.text == NOTE[: SEGMENT.start] + decoded.text + NOTE[SEGMENT.end :]
    spans = {m.id: note.text[m.start : m.end] for m in note.mentions}
    assert spans == {1: "HTN", 2: marked_text[2], 3: marked_text[3], 4: marked_text[4], 5: "Rash"}
    assert [m for m in note.mentions if m.id == 5] == [Mention(5, "ADE", 30 + shift, 34 + shift)]
    assert note.links == tuple(LINKS)


# --- mentions_of, links_of, rejection_counts -----------------------------------------------------------


def test_mentions_are_numbered_in_text_order_outer_first_and_discontinuous_spans_set_apart():
    spans = [
        ("Strength", [(8, 13)]),
        ("Drug", [(0, 7)]),
        ("ADE", [(20, 24), (30, 35)]),
        ("Medication", [(0, 13)]),
        ("Dosage", [(0, 7)]),
    ]
    found, discontinuous = mentions_of(spans)
    assert found == [
        Mention(1, "Medication", 0, 13),
        Mention(2, "Dosage", 0, 7),
        Mention(3, "Drug", 0, 7),
        Mention(4, "Strength", 8, 13),
    ]
    assert discontinuous == [2]


def test_links_of_leaves_out_relations_of_spans_without_an_id():
    relations = [("Strength-Drug", 0, 1), ("ADE-Drug", 2, 1), ("Reason-Drug", 3, 1)]
    assert links_of(relations, {0: 4, 1: 3, 3: 1}) == [Link("Strength-Drug", 4, 3), Link("Reason-Drug", 1, 3)]


def test_rejection_counts_most_frequent_first_then_by_name():
    counts = rejection_counts(["unchanged", "dropped_marker", "unchanged", "broken_marker", "no_passage"])
    assert list(counts.items()) == [
        ("unchanged", 2),
        ("broken_marker", 1),
        ("dropped_marker", 1),
        ("no_passage", 1),
    ]
    assert rejection_counts([]) == {}


# --- choose_segments -------------------------------------------------------------------------------------

LINES = (
    "Pt takes aspirin 81 mg daily.\nStarted metformin 500 mg.\nNo known allergies.\nFollow up in two weeks."
)
ASPIRIN, STRENGTH, METFORMIN, ALLERGIES, WEEKS = (9, 16), (17, 22), (38, 47), (65, 74), (89, 98)


def test_the_lines_are_what_the_tests_think():
    assert [LINES[a:b] for a, b in (ASPIRIN, STRENGTH, METFORMIN, ALLERGIES, WEEKS)] == [
        "aspirin",
        "81 mg",
        "metformin",
        "allergies",
        "two weeks",
    ]


def test_segments_hold_a_wanted_label_and_others_are_left():
    found = numbered(("Drug", *ASPIRIN), ("Strength", *STRENGTH), ("Drug", *METFORMIN), ("Frequency", *WEEKS))
    result = choose_segments(LINES, found, [], labels={"Drug"}, size=30)
    assert result.chosen == [Segment(0, 29, tuple(found[:2])), Segment(30, 55, (found[2],))]
    assert result.skipped == {}
    assert choose_segments(LINES, found, [], labels={"Frequency"}, size=30).chosen == [
        Segment(76, 99, (found[3],))
    ]
    assert choose_segments(LINES, found, [], labels={"ADE"}, size=30).chosen == []


def test_a_segment_is_widened_so_that_no_span_crosses_its_edge():
    # "daily.\nStarted": a span over the line break joins the first two lines.
    found = numbered(("Drug", *ASPIRIN), ("Frequency", 23, 37), ("Drug", *METFORMIN), ("ADE", *ALLERGIES))
    result = choose_segments(LINES, found, [], labels={"Drug", "ADE"}, size=30)
    assert result.chosen == [Segment(0, 55, tuple(found[:3])), Segment(56, 75, (found[3],))]
    for segment in result.chosen:
        assert not any(m.start < edge < m.end for m in found for edge in (segment.start, segment.end))


def test_crossing_spans_skip_their_segment():
    found = numbered(("Medication", 9, 22), ("Dosage", 17, 28), ("Drug", *ASPIRIN), ("Drug", *METFORMIN))
    result = choose_segments(LINES, found, [], labels={"Drug"}, size=30)
    assert result.chosen == [Segment(30, 55, (found[3],))]
    assert result.skipped == {"crossing_spans": 1}


def test_a_discontinuous_span_skips_its_segment():
    found = numbered(("Drug", *ASPIRIN), ("Drug", *METFORMIN), ("Frequency", *WEEKS))
    # The extents of discontinuous spans: one in the metformin line, one in a line nobody wants.
    result = choose_segments(LINES, found, [], labels={"Drug"}, size=30, discontinuous=[(38, 54), (56, 74)])
    assert result.chosen == [Segment(0, 29, (found[0],))]
    assert result.skipped == {"discontinuous_span": 1}


def test_wanted_relations_pull_in_the_segments_of_their_arguments():
    found = numbered(
        ("Strength", *STRENGTH), ("Drug", *METFORMIN), ("ADE", *ALLERGIES), ("Frequency", *WEEKS)
    )
    links = [Link("ADE-Drug", 3, 2), Link("Frequency-Drug", 4, 2)]
    result = choose_segments(LINES, found, links, labels={"Strength"}, relation_types={"ADE-Drug"}, size=30)
    assert result.chosen == [
        Segment(0, 29, (found[0],)),
        Segment(30, 55, (found[1],)),
        Segment(56, 75, (found[2],)),
    ]
    assert choose_segments(LINES, found, links, labels={"Strength"}, size=30).chosen == [
        Segment(0, 29, (found[0],))
    ]


def test_a_large_size_takes_several_lines_in_one_segment():
    found = numbered(("Drug", *ASPIRIN), ("Drug", *METFORMIN), ("Frequency", *WEEKS))
    result = choose_segments(LINES, found, [], labels={"Drug"}, size=60)
    assert result.chosen == [Segment(0, 55, tuple(found[:2]))]


@pytest.mark.parametrize(
    "note",
    ["Give [[PATIENT NAME]] aspirin 81 mg.", "Give aspirin 81 mg ]] now.", "Aspirin [81 mg] daily."],
)
def test_a_segment_whose_own_text_reads_as_markers_is_skipped_not_sent(note):
    """Text the markers cannot carry (the note's own [[ or ]], a span ending in a ] opened before it)
    would make every answer fail: such a segment is skipped and counted instead."""
    from app.domain.augmentation import Mention, choose_segments

    start = note.index("aspirin") if "aspirin" in note else note.index("Aspirin")
    strength = note.index("81 mg")
    end = strength + (6 if note[strength + 5 : strength + 6] == "]" else 5)
    mentions = [Mention(1, "Drug", start, start + 7), Mention(2, "Strength", strength, end)]
    found = choose_segments(note, mentions, [], labels={"Drug"})
    assert found.chosen == [] and found.skipped == {"unmarkable_text": 1}
