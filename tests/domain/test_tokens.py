"""Tokens are the matches of \\w+|[^\\w\\s] in code points; a selection snaps to the tokens it touches."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.tokens import TOKEN_PATTERN, Token, snap_to_tokens, token_index_at, tokenize

# Quoted from metrics.md, "Token level".
METRICS_MD_TOKEN_PATTERN = r"\w+|[^\w\s]"

# (text, tokens as the strings they cover)
TOKENIZE_DATA: list[tuple[str, list[str]]] = [
    ("Aspirin 81mg p.o. daily", ["Aspirin", "81mg", "p", ".", "o", ".", "daily"]),
    ("metformin\t500 mg\r\nbid", ["metformin", "500", "mg", "bid"]),
    ("pain 😀 ok", ["pain", "😀", "ok"]),
    ("\ufeffNote", ["\ufeff", "Note"]),
    # Python's \w is str.isalnum(), which a combining mark is not: the accent is a token of its own.
    ("cafe\u0301 noir", ["cafe", "\u0301", "noir"]),
    ("café noir", ["café", "noir"]),
    ("dose_2 (x2)", ["dose_2", "(", "x2", ")"]),
    ("a\u00a0b", ["a", "b"]),
    ("", []),
    (" \t\r\n ", []),
]


@pytest.mark.parametrize(("text", "expected"), TOKENIZE_DATA)
def test_tokenize(text, expected):
    assert [text[t.start : t.end] for t in tokenize(text)] == expected


def tokenize_by_hand(text: str) -> list[tuple[int, int]]:
    """metrics.md's tokens written without regex: runs of word characters, else one non-space character."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if text[i].isalnum() or text[i] == "_":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] == "_"):
                j += 1
            spans.append((i, j))
            i = j
        elif text[i].isspace():
            i += 1
        else:
            spans.append((i, i + 1))
            i += 1
    return spans


SAMPLE = (
    "\ufeffPt. (78 y/o) on Metformin 500mg PO BID;\r\n\tHbA1c 7,2 % → héllo "
    "cafe\u0301 😀👍🏽 ß_x\u200by naïve"
)


def test_the_pattern_is_the_one_in_metrics_md():
    assert TOKEN_PATTERN.pattern == METRICS_MD_TOKEN_PATTERN
    assert not TOKEN_PATTERN.flags & re.ASCII
    assert [(t.start, t.end) for t in tokenize(SAMPLE)] == tokenize_by_hand(SAMPLE)


# (text, selection [start, end), expected snapped range or None)
SNAP_DATA: list[tuple[str, tuple[int, int], tuple[int, int] | None]] = [
    ("take aspirin daily", (5, 12), (5, 12)),  # already whole
    ("take aspirin daily", (7, 9), (5, 12)),  # inside one token
    ("take aspirin daily", (3, 7), (0, 12)),  # across two tokens
    ("take aspirin daily", (4, 13), (5, 12)),  # surrounding spaces dropped
    ("take aspirin daily", (4, 5), None),  # only a space
    ("take aspirin daily", (6, 6), None),  # empty selection
    ("take aspirin daily", (0, 18), (0, 18)),
    ("take aspirin daily", (11, 13), (5, 12)),  # last letter and a space
    ("take aspirin daily", (12, 14), (13, 18)),  # a space then the first letter of the next token
    ("81mg p.o.", (5, 6), (5, 6)),  # punctuation is a token of its own
    ("81mg p.o.", (5, 8), (5, 8)),
    ("pain 😀 ok", (5, 6), (5, 6)),  # an emoji outside the BMP is one code point
    ("😀pain", (2, 3), (1, 5)),
    ("x 👍🏽 y", (3, 4), (3, 4)),  # the skin-tone modifier is a token of its own
    ("cafe\u0301 noir", (1, 3), (0, 4)),  # the combining accent is a separate token ...
    ("cafe\u0301 noir", (3, 5), (0, 5)),  # ... taken along when it is selected
    ("café noir", (1, 3), (0, 4)),  # precomposed é is a word character
    ("dose\r\nbid", (4, 7), (6, 9)),  # CR LF is white space
    ("dose\r\nbid", (3, 5), (0, 4)),
    ("dose\t500\tmg", (4, 6), (5, 8)),  # tabs are white space
    ("\ufeffNote", (0, 3), (0, 5)),  # a leading BOM is a token and is taken when selected
    ("\ufeffNote", (1, 3), (1, 5)),
    ("", (0, 0), None),
]


@pytest.mark.parametrize(("text", "selection", "expected"), SNAP_DATA)
def test_snap_to_tokens(text, selection, expected):
    assert snap_to_tokens(text, *selection) == expected


@pytest.mark.parametrize(
    ("text", "start", "end", "field"),
    [("abc", -1, 2, "start"), ("abc", 2, 1, "end"), ("abc", 0, 4, "end"), ("😀", 0, 2, "end")],
)
def test_a_selection_outside_the_text_is_refused(text, start, end, field):
    with pytest.raises(ValueError, match=field):
        snap_to_tokens(text, start, end)


# (offset, index of the token containing or following it) over "ab  cd e": tokens [0,2) [4,6) [7,8)
TOKEN_INDEX_DATA: list[tuple[int, int]] = [
    (0, 0),
    (1, 0),
    (2, 1),
    (3, 1),
    (4, 1),
    (5, 1),
    (6, 2),
    (7, 2),
    (8, 3),
]


@pytest.mark.parametrize(("offset", "expected"), TOKEN_INDEX_DATA)
def test_token_index_at(offset, expected):
    tokens = tokenize("ab  cd e")
    assert tokens == [Token(0, 2), Token(4, 6), Token(7, 8)]
    assert token_index_at(tokens, offset) == expected


def test_token_index_at_with_no_tokens():
    assert token_index_at([], 0) == 0


# Properties -------------------------------------------------------------------------------------------

# Letters, marks, digits, punctuation, symbols (emoji included), separators and the BOM/controls.
texts = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
        st.sampled_from(["\ufeff", "\u0301", "😀", "\r", "\n", "\t", " ", "é", "_"]),
    ),
    max_size=40,
)


@st.composite
def texts_and_selections(draw: st.DrawFn) -> tuple[str, int, int]:
    text = draw(texts)
    start = draw(st.integers(min_value=0, max_value=len(text)))
    end = draw(st.integers(min_value=start, max_value=len(text)))
    return text, start, end


@given(texts_and_selections())
def test_a_snapped_range_is_whole_tokens_covering_the_selection(case):
    text, start, end = case
    tokens = tokenize(text)
    touched = [t for t in tokens if max(t.start, start) < min(t.end, end)]
    snapped = snap_to_tokens(text, start, end)
    assert tokenize_by_hand(text) == [(t.start, t.end) for t in tokens]
    if not touched:
        assert snapped is None
        assert all(c.isspace() for c in text[start:end])
        return
    assert snapped is not None
    snapped_start, snapped_end = snapped
    assert snapped_start in {t.start for t in tokens}
    assert snapped_end in {t.end for t in tokens}
    assert (snapped_start, snapped_end) == (touched[0].start, touched[-1].end)
    # Every selected non-space character is inside the snapped range.
    assert all(snapped_start <= i < snapped_end for i in range(start, end) if not text[i].isspace())
    assert snap_to_tokens(text, snapped_start, snapped_end) == snapped
