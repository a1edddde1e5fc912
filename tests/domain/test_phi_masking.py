"""Masking a flagged note's hits with typed placeholders, and moving span offsets with the text."""

import pytest

from app.domain.phi import PhiHit, screen
from app.domain.phi_masking import mask_hits, mask_until_clean, moved_fragments, placeholders_after
from app.domain.spans import Fragment

NOTE = "Patient: John Smith, MRN 12345678, seen 03/04/2019 for chest pain."
#       0         1         2         3         4         5         6
#       0123456789012345678901234567890123456789012345678901234567890123456
HITS = [PhiHit("person_name", 9, 19), PhiHit("id_number", 25, 33), PhiHit("date", 40, 50)]
MASKED = "Patient: [NAME], MRN [ID], seen [DATE] for chest pain."

# (old fragments, new fragments): before a hit nothing moves; after, by the lengths saved; a boundary
# inside a hit goes to the placeholder's edge (start to its start, end to its end).
FRAGMENTS = [
    ("before every hit", [(0, 7)], [(0, 7)]),
    ("after every hit", [(55, 65)], [(43, 53)]),
    ("exactly a hit", [(9, 19)], [(9, 15)]),
    ("part of a hit", [(14, 19)], [(9, 15)]),
    ("ends inside a hit", [(0, 12)], [(0, 15)]),
    ("starts inside a hit, ends after it", [(45, 55)], [(32, 43)]),
    ("across two hits", [(9, 33)], [(9, 25)]),
    ("between two hits", [(21, 24)], [(17, 20)]),
    ("two fragments, out of text order", [(55, 60), (0, 7)], [(43, 48), (0, 7)]),
    ("two fragments in one hit become one", [(9, 13), (14, 19)], [(9, 15)]),
]


def test_each_hit_becomes_the_placeholder_of_its_kind():
    masked = mask_hits(NOTE, HITS)
    assert masked.text == MASKED
    assert [(p.kind, masked.text[p.start : p.end]) for p in masked.placeholders] == [
        ("person_name", "[NAME]"),
        ("id_number", "[ID]"),
        ("date", "[DATE]"),
    ]
    assert screen(masked.text).hits == ()  # the screen leaves its placeholders alone


@pytest.mark.parametrize(("old", "new"), [(o, n) for _, o, n in FRAGMENTS], ids=[c for c, _, _ in FRAGMENTS])
def test_span_offsets_move_with_the_text(old, new):
    masked = mask_hits(NOTE, HITS)
    moved = masked.fragments([Fragment(s, e) for s, e in old])
    assert [(f.start, f.end) for f in moved] == new
    # A fragment clear of every hit covers the same text as before.
    for (s, e), (ns, ne) in zip(old, new, strict=False):
        if all(e <= h.start or s >= h.end for h in HITS):
            assert masked.text[ns:ne] == NOTE[s:e]


def test_overlapping_hits_are_one_placeholder_of_the_longest():
    text = "call 555-123-4567 now"
    masked = mask_hits(text, [PhiHit("phone", 5, 17), PhiHit("id_number", 9, 17)])
    assert masked.text == "call [PHONE] now"
    assert [(p.kind, p.start, p.end) for p in masked.placeholders] == [("phone", 5, 12)]


def test_a_kind_without_a_placeholder_of_its_own_is_written_phi():
    assert mask_hits("x 123 y", [PhiHit("new_kind", 2, 5)]).text == "x [PHI] y"


def test_a_hit_outside_the_text_is_refused():
    with pytest.raises(ValueError, match="not inside"):
        mask_hits("short", [PhiHit("date", 3, 40)])


def test_masking_rounds_until_the_screen_finds_nothing_and_offsets_follow_every_round():
    first = [HITS[0]]  # the admin masks what was found; the screen then finds the rest
    steps, left = mask_until_clean(NOTE, first, lambda t: screen(t).hits)
    assert left == () and steps[-1].text == MASKED and len(steps) == 2
    assert [(f.start, f.end) for f in moved_fragments(steps, [Fragment(55, 65)])] == [(43, 53)]
    assert [(p.kind, steps[-1].text[p.start : p.end]) for p in placeholders_after(steps)] == [
        ("person_name", "[NAME]"),
        ("id_number", "[ID]"),
        ("date", "[DATE]"),
    ]
