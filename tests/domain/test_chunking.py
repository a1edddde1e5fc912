"""A note is cut at line breaks and sentence ends into stripped chunks of at most max_chars, offsets kept."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.chunking import DEFAULT_CHUNK_SIZE, Chunk, chunk_note


def is_blank(character: str) -> bool:
    """White space for chunking: str.isspace(), and the BOM, which is invisible and never a mention."""
    return character.isspace() or character == "\ufeff"


# (note, max_chars, expected chunk texts)
CHUNK_DATA: list[tuple[str, int, list[str]]] = [
    ("", 10, []),
    (" \t\r\n \ufeff", 10, []),
    ("Aspirin 81 mg daily.", 250, ["Aspirin 81 mg daily."]),
    # Sentences are packed greedily while they fit...
    (
        "Pain resolved. Start aspirin. Discharge home.",
        29,
        ["Pain resolved. Start aspirin.", "Discharge home."],
    ),
    # ...and cut where they end: ., ! and ? followed by white space.
    ("Pain? Yes! Much better.", 12, ["Pain? Yes!", "Much better."]),
    ("Pain resolved.Start aspirin", 15, ["Pain", "resolved.Start", "aspirin"]),
    ('He said "stop." Then left.', 15, ['He said "stop."', "Then left."]),
    # Line breaks cut too, whatever their kind.
    ("BP 120/80\r\nHR 72\rT 37\nSpO2 98%", 9, ["BP 120/80", "HR 72", "T 37", "SpO2 98%"]),
    ("Meds:\n\n\tAspirin", 250, ["Meds:\n\n\tAspirin"]),
    # Abbreviations, decimals and list numbers do not end a sentence. Each note is "Pain." and then one
    # sentence exactly max_chars long: a wrong cut inside it would let its first part join "Pain.".
    ("Pain. Seen by Dr. Smith today.", 25, ["Pain.", "Seen by Dr. Smith today."]),
    ("Pain. Pt. Jones is better.", 20, ["Pain.", "Pt. Jones is better."]),
    ("Pain. Fever, e.g. High ones.", 22, ["Pain.", "Fever, e.g. High ones."]),
    ("Pain. Take 1.5 mg q.d. With food.", 27, ["Pain.", "Take 1.5 mg q.d. With food."]),
    ("Pain. Aspirin 81 mg. daily.", 21, ["Pain.", "Aspirin 81 mg. daily."]),
    ("Meds:\n1. Aspirin daily", 16, ["Meds:", "1. Aspirin daily"]),
    # ...but a number at the end of a sentence does.
    ("Pain. Took 2. Then slept.", 13, ["Pain. Took 2.", "Then slept."]),
    # A sentence longer than max_chars is cut between words; a word longer than max_chars stands alone.
    ("aspirin 81 mg daily", 10, ["aspirin 81", "mg daily"]),
    ("x supercalifragilistic y", 5, ["x", "supercalifragilistic", "y"]),
    ("a b c", 1, ["a", "b", "c"]),
]


@pytest.mark.parametrize(("note", "max_chars", "expected"), CHUNK_DATA)
def test_chunk_note(note, max_chars, expected):
    chunks = chunk_note(note, max_chars)
    assert [chunk.text for chunk in chunks] == expected
    assert all(note[chunk.start : chunk.end] == chunk.text for chunk in chunks)


# (note, max_chars, expected chunks): offsets are code points of the note as stored.
OFFSET_DATA: list[tuple[str, int, list[Chunk]]] = [
    ("\ufeffAspirin.", 250, [Chunk(1, 9, "Aspirin.")]),
    ("Pain.\r\n\tAspirin 😀.", 10, [Chunk(0, 5, "Pain."), Chunk(8, 18, "Aspirin 😀.")]),
    ("😀😀 ok. 👍🏽 fine.", 6, [Chunk(0, 6, "😀😀 ok."), Chunk(7, 9, "👍🏽"), Chunk(10, 15, "fine.")]),
    ("  padded  ", 250, [Chunk(2, 8, "padded")]),
]


@pytest.mark.parametrize(("note", "max_chars", "expected"), OFFSET_DATA)
def test_offsets_are_code_points(note, max_chars, expected):
    assert chunk_note(note, max_chars) == expected


@pytest.mark.parametrize("max_chars", [0, -5])
def test_max_chars_must_be_positive(max_chars):
    with pytest.raises(ValueError, match="max_chars"):
        chunk_note("Aspirin.", max_chars)


def test_published_chunk_sizes():
    assert DEFAULT_CHUNK_SIZE == {"iob_token": 250, "direct_chunk": 180}


FRAGMENTS = [
    "aspirin", "81", "mg", "1.5", "Dr.", "e.g.", "q.d.", "Pt.", "1.", "Pain", "x" * 30, "😀", "👍🏽", "é",
    ".", "!", "?", ")", '"', " ", "  ", "\t", "\n", "\r\n", "\r", "\ufeff", "\u00a0", "\u2028",
]  # fmt: skip
NOTES = st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join),
    st.text(max_size=200),
)


@settings(max_examples=300, deadline=None)
@given(note=NOTES, max_chars=st.integers(min_value=1, max_value=80))
def test_chunks_cover_the_note_in_order(note, max_chars):
    chunks = chunk_note(note, max_chars)
    for chunk in chunks:
        assert note[chunk.start : chunk.end] == chunk.text
        # Stripped, and no longer than max_chars unless it is one word that could not be cut.
        assert not is_blank(chunk.text[0]) and not is_blank(chunk.text[-1])
        assert len(chunk.text) <= max_chars or not any(is_blank(c) for c in chunk.text)
    # In order, apart, and what lies between them is white space: every other character is in a chunk.
    # The gaps are never empty, so no word is ever cut in two.
    edges = [0] + [offset for chunk in chunks for offset in (chunk.start, chunk.end)] + [len(note)]
    for index, (start, end) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
        assert start <= end
        assert all(is_blank(c) for c in note[start:end])
        if 0 < index < len(chunks):
            assert start < end
    if all(is_blank(c) for c in note):
        assert chunks == []
