"""Span and relation P/R/F as metrics.md defines them: by hand, by brute force and against nervaluate."""

import random
import re

import pytest
from nervaluate import Evaluator

from app.domain.evaluation import (
    Counts,
    RelationData,
    evaluate,
    evaluate_all,
    evaluate_relations,
    match_spans,
)
from app.domain.spans import Fragment, SpanData


def span(label: str, *ranges: tuple[int, int]) -> SpanData:
    return SpanData(label, tuple(Fragment(start, end) for start, end in ranges))


#       0         1         2
#       0123456789012345678901
TEXT = "aspirin 81 mg po daily"
# Tokens: aspirin [0,7)  81 [8,10)  mg [11,13)  po [14,16)  daily [17,22)

# (name, reference, response, {mode: {label: (tp, fp, fn)}}) for one document with TEXT.
SPAN_CASES = [
    (
        "exact drug, strength too short",
        [span("Drug", (0, 7)), span("Strength", (8, 13))],
        [span("Drug", (0, 7)), span("Strength", (8, 10))],
        {
            "strict": {"Drug": (1, 0, 0), "Strength": (0, 1, 1)},
            "lenient": {"Drug": (1, 0, 0), "Strength": (1, 0, 0)},
            # "mg" carries Strength in the reference only.
            "token": {"Drug": (1, 0, 0), "Strength": (1, 0, 1)},
        },
    ),
    (
        "right place, wrong label: nothing matches",
        [span("Drug", (0, 7))],
        [span("Strength", (0, 7))],
        {
            "strict": {"Drug": (0, 0, 1), "Strength": (0, 1, 0)},
            "lenient": {"Drug": (0, 0, 1), "Strength": (0, 1, 0)},
            "token": {"Drug": (0, 0, 1), "Strength": (0, 1, 0)},
        },
    ),
    (
        "one character inside a token is enough for lenient and token",
        [span("Drug", (0, 7))],
        [span("Drug", (2, 5))],
        {
            "strict": {"Drug": (0, 1, 1)},
            "lenient": {"Drug": (1, 0, 0)},
            "token": {"Drug": (1, 0, 0)},
        },
    ),
    (
        "one-to-one: two halves match one reference span once",
        [span("Drug", (0, 7))],
        [span("Drug", (0, 3)), span("Drug", (3, 7))],
        {
            "strict": {"Drug": (0, 2, 1)},
            "lenient": {"Drug": (1, 1, 0)},
            # Token sets do not count spans: both sides mark the one token.
            "token": {"Drug": (1, 0, 0)},
        },
    ),
    (
        "fragment sets compare as sets, whatever their order",
        [span("Frequency", (14, 16), (17, 22))],
        [span("Frequency", (17, 22), (14, 16)), span("Frequency", (17, 22))],
        {
            "strict": {"Frequency": (1, 1, 0)},
            "lenient": {"Frequency": (1, 1, 0)},
            "token": {"Frequency": (2, 0, 0)},
        },
    ),
    (
        "a discontinuous span matches leniently through either fragment",
        [span("Frequency", (14, 16), (17, 22))],
        [span("Frequency", (17, 20))],
        {
            "strict": {"Frequency": (0, 1, 1)},
            "lenient": {"Frequency": (1, 0, 0)},
            "token": {"Frequency": (1, 0, 1)},
        },
    ),
    (
        # Greedy by largest overlap pairs [5,10) with [0,10) (5 characters against 2) and leaves [0,3)
        # without a partner: 1 match. The maximum matching finds 2.
        "maximum matching beats greedy",
        [span("Drug", (0, 10)), span("Drug", (8, 13))],
        [span("Drug", (5, 10)), span("Drug", (0, 3))],
        {
            "strict": {"Drug": (0, 2, 2)},
            "lenient": {"Drug": (2, 0, 0)},
            "token": {"Drug": (2, 0, 1)},
        },
    ),
    (
        "nothing on either side",
        [],
        [],
        {"strict": {}, "lenient": {}, "token": {}},
    ),
]


@pytest.mark.parametrize(
    ("name", "reference", "response", "expected"), SPAN_CASES, ids=[c[0] for c in SPAN_CASES]
)
@pytest.mark.parametrize("mode", ["strict", "lenient", "token"])
def test_counts_per_label(name, reference, response, expected, mode):
    result = evaluate({"n1": reference}, {"n1": response}, mode=mode, texts={"n1": TEXT})
    got = {label: (c.tp, c.fp, c.fn) for label, c in result.per_label.items()}
    assert got == expected[mode]
    assert result.mode == mode
    sums = [sum(column) for column in zip(*expected[mode].values(), strict=True)] or [0, 0, 0]
    assert (result.micro.tp, result.micro.fp, result.micro.fn) == tuple(sums)


def test_evaluate_all_gives_the_three_modes():
    reference, response = SPAN_CASES[0][1], SPAN_CASES[0][2]
    results = evaluate_all({"n1": reference}, {"n1": response}, {"n1": TEXT})
    assert list(results) == ["strict", "lenient", "token"]
    assert (results["strict"].micro.tp, results["lenient"].micro.tp, results["token"].micro.tp) == (1, 2, 2)


# (reference, response, expected pairs): the tie rule prefers the larger overlap among maximum matchings.
TIE_CASES = [
    ([span("Drug", (0, 7))], [span("Drug", (0, 2)), span("Drug", (0, 6))], [(0, 1)]),
    ([span("Drug", (0, 7)), span("Drug", (8, 13))], [span("Drug", (0, 13))], [(0, 0)]),
    ([span("Drug", (8, 13)), span("Drug", (0, 7))], [span("Drug", (0, 13))], [(1, 0)]),
    # Maximum cardinality first: both reference spans get a partner even though that lowers the overlap.
    (
        [span("Drug", (0, 10)), span("Drug", (8, 13))],
        [span("Drug", (5, 10)), span("Drug", (0, 3))],
        [(0, 1), (1, 0)],
    ),
]


@pytest.mark.parametrize(("reference", "response", "expected"), TIE_CASES)
def test_lenient_pairs(reference, response, expected):
    assert match_spans(reference, response, rule="lenient") == expected


def test_type_agnostic_ignores_labels_and_reports_micro_only():
    reference = {"n1": [span("Drug", (0, 7)), span("Strength", (8, 13))]}
    response = {"n1": [span("Strength", (0, 7)), span("Drug", (8, 10))]}
    strict = evaluate(reference, response, mode="strict", type_agnostic=True)
    lenient = evaluate(reference, response, mode="lenient", type_agnostic=True)
    token = evaluate(reference, response, mode="token", texts={"n1": TEXT}, type_agnostic=True)
    assert (strict.micro, lenient.micro, token.micro) == (Counts(1, 1, 1), Counts(2, 0, 0), Counts(2, 0, 1))
    assert strict.per_label == {} and strict.type_agnostic
    assert evaluate(reference, response, mode="strict").micro == Counts(0, 2, 2)


def test_documents_on_one_side_only_count_as_empty_on_the_other():
    reference = {"n1": [span("Drug", (0, 7))], "n2": [span("Drug", (0, 7))]}
    response = {"n1": [span("Drug", (0, 7))], "n3": [span("Drug", (0, 3))]}
    result = evaluate(reference, response, mode="lenient")
    assert result.per_label["Drug"] == Counts(tp=1, fp=1, fn=1)


def test_micro_sums_over_documents_and_labels():
    reference = {"n1": [span("Drug", (0, 7))], "n2": [span("Drug", (0, 7)), span("Strength", (8, 13))]}
    response = {"n1": [span("Drug", (0, 7))], "n2": [span("Drug", (0, 7)), span("Strength", (8, 10))]}
    result = evaluate(reference, response, mode="strict")
    assert result.per_label == {"Drug": Counts(2, 0, 0), "Strength": Counts(0, 1, 1)}
    assert result.micro == Counts(2, 1, 1)


# (counts, precision, recall, f1, f2); None is undefined (0/0), never 0 or 1 by convention.
FIGURE_CASES = [
    (Counts(0, 0, 0), None, None, None, None),
    (Counts(0, 3, 0), 0.0, None, None, None),
    (Counts(0, 0, 2), None, 0.0, None, None),
    (Counts(0, 2, 3), 0.0, 0.0, 0.0, 0.0),
    (Counts(3, 0, 0), 1.0, 1.0, 1.0, 1.0),
    (Counts(3, 1, 2), 0.75, 0.6, 2 * 0.75 * 0.6 / 1.35, 5 * 0.75 * 0.6 / (4 * 0.75 + 0.6)),
    (Counts(1, 0, 3), 1.0, 0.25, 0.4, 5 * 0.25 / (4 + 0.25)),
]


@pytest.mark.parametrize(("counts", "precision", "recall", "f1", "f2"), FIGURE_CASES)
def test_figures(counts, precision, recall, f1, f2):
    got = (counts.precision, counts.recall, counts.f1, counts.f2)
    for value, wanted in zip(got, (precision, recall, f1, f2), strict=True):
        assert value == (None if wanted is None else pytest.approx(wanted, abs=1e-12))
    assert counts.f_beta(1) == counts.f1


def test_f_beta_follows_the_formula():
    counts = Counts(3, 1, 2)
    p, r = 0.75, 0.6
    assert counts.f_beta(0.5) == pytest.approx(1.25 * p * r / (0.25 * p + r))


def test_label_order_and_macro_over_defined_labels():
    reference = {"n1": [span("Drug", (0, 7)), span("Strength", (8, 13)), span("Frequency", (17, 22))]}
    response = {"n1": [span("Drug", (0, 7)), span("Strength", (8, 10)), span("Duration", (14, 16))]}
    result = evaluate(reference, response, mode="strict", labels=["Strength", "Route", "Drug"])
    # Schema order, then labels seen only in the data, sorted.
    assert list(result.per_label) == ["Strength", "Route", "Drug", "Duration", "Frequency"]
    assert result.per_label["Route"] == Counts(0, 0, 0)
    # Precision is defined for Strength (0), Drug (1), Duration (0); Route and Frequency have no response.
    assert result.macro_precision == pytest.approx(1 / 3)
    # Recall is defined for Strength (0), Drug (1), Frequency (0).
    assert result.macro_recall == pytest.approx(1 / 3)
    # F1 needs both: Strength (0), Drug (1).
    assert result.macro_f1 == pytest.approx(0.5)
    assert result.macro_f2 == pytest.approx(0.5)


def test_macro_is_none_without_defined_labels():
    result = evaluate({}, {}, mode="strict", labels=["Drug"])
    assert result.per_label == {"Drug": Counts(0, 0, 0)}
    assert (result.macro_precision, result.macro_recall, result.macro_f1, result.macro_f2) == (None,) * 4


# (problem, call)
BAD_CALLS = [
    ("unknown mode", lambda: evaluate({}, {}, mode="partial")),
    ("token without texts", lambda: evaluate({}, {}, mode="token")),
    ("token, text missing", lambda: evaluate({"n1": []}, {}, mode="token", texts={})),
    (
        "token, span past the text",
        lambda: evaluate({"n1": [span("Drug", (0, 99))]}, {}, mode="token", texts={"n1": TEXT}),
    ),
    ("relation mode token", lambda: evaluate_relations({}, {}, "token")),
]


@pytest.mark.parametrize(("problem", "call"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_calls_raise(problem, call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------------------------------------
# Relations

DRUG = span("Drug", (0, 7))
STRENGTH = span("Strength", (8, 13))
STRENGTH_SHORT = span("Strength", (8, 10))
ROUTE = span("Route", (14, 16))

# (name, reference, response, strict (tp, fp, fn), lenient (tp, fp, fn)), all of type "has_strength"
# unless stated.
RELATION_CASES = [
    ("identical", [("has", DRUG, STRENGTH)], [("has", DRUG, STRENGTH)], (1, 0, 0), (1, 0, 0)),
    ("tail overlaps", [("has", DRUG, STRENGTH)], [("has", DRUG, STRENGTH_SHORT)], (0, 1, 1), (1, 0, 0)),
    ("other type", [("has", DRUG, STRENGTH)], [("given_by", DRUG, STRENGTH)], (0, 1, 1), (0, 1, 1)),
    ("arguments swapped", [("has", DRUG, STRENGTH)], [("has", STRENGTH, DRUG)], (0, 1, 1), (0, 1, 1)),
    ("other tail", [("has", DRUG, STRENGTH)], [("has", DRUG, ROUTE)], (0, 1, 1), (0, 1, 1)),
    (
        "tail label differs",
        [("has", DRUG, STRENGTH)],
        [("has", DRUG, span("Route", (8, 13)))],
        (0, 1, 1),
        (0, 1, 1),
    ),
    (
        "one-to-one",
        [("has", DRUG, STRENGTH)],
        [("has", DRUG, STRENGTH), ("has", DRUG, STRENGTH_SHORT)],
        (1, 1, 0),
        (1, 1, 0),
    ),
]


@pytest.mark.parametrize(
    ("name", "reference", "response", "strict", "lenient"), RELATION_CASES, ids=[c[0] for c in RELATION_CASES]
)
def test_relations(name, reference, response, strict, lenient):
    def relations(triples):
        return {"n1": [RelationData(type_, head, tail) for type_, head, tail in triples]}

    for mode, expected in (("strict", strict), ("lenient", lenient)):
        result = evaluate_relations(relations(reference), relations(response), mode)
        assert (result.micro.tp, result.micro.fp, result.micro.fn) == expected, mode


def test_relation_types_in_given_order():
    reference = {"n1": [RelationData("has", DRUG, STRENGTH)]}
    result = evaluate_relations(reference, {}, "strict", types=["route_of", "has"])
    assert result.per_label == {"route_of": Counts(0, 0, 0), "has": Counts(0, 0, 1)}


# ---------------------------------------------------------------------------------------------------------
# Independent checks

LABELS = ["Drug", "Dose", "Route"]


def random_spans(rng: random.Random, length: int, count: int) -> list[tuple[str, int, int]]:
    """Distinct contiguous (label, start, end) spans inside [0, length)."""
    spans = set()
    for _ in range(count):
        start = rng.randrange(length - 1)
        spans.add((rng.choice(LABELS), start, rng.randint(start + 1, min(length, start + 8))))
    return sorted(spans)


def perturbed_response(rng: random.Random, reference: list[tuple[str, int, int]], length: int):
    """Keep, shift, relabel or drop each reference span, then add a few spurious ones."""
    response = set()
    for label, start, end in reference:
        roll = rng.random()
        if roll < 0.4:
            response.add((label, start, end))
        elif roll < 0.6:
            response.add((label, start, min(length, end + 1)))
        elif roll < 0.75:
            response.add((rng.choice(LABELS), start, end))
    response.update(random_spans(rng, length, rng.randint(0, 3)))
    return sorted(response)


@pytest.mark.parametrize("seed", range(150))
def test_strict_equals_nervaluate(seed):
    rng = random.Random(seed)
    length = 40
    reference, response = [], []
    for _ in range(rng.randint(1, 4)):
        gold = random_spans(rng, length, rng.randint(0, 6))
        reference.append(gold)
        response.append(perturbed_response(rng, gold, length))

    ours = evaluate(
        {f"d{i}": [span(label, (s, e)) for label, s, e in doc] for i, doc in enumerate(reference)},
        {f"d{i}": [span(label, (s, e)) for label, s, e in doc] for i, doc in enumerate(response)},
        mode="strict",
        labels=LABELS,
    )

    # nervaluate's "dict" loader takes {"label", "start", "end"} with an inclusive end. Its strict pass is
    # greedy: a response span without an exact partner consumes the first reference span it overlaps as
    # "incorrect", which can take that span from a later exact partner. Listing the response spans with an
    # exact partner first removes that order effect; the counts of correct spans are then the true ones.
    def as_dicts(doc, gold):
        exact_first = sorted(doc, key=lambda s: s not in gold)
        return [{"label": label, "start": s, "end": e - 1} for label, s, e in exact_first]

    true = [as_dicts(doc, set(doc)) for doc in reference]
    pred = [as_dicts(doc, set(gold)) for doc, gold in zip(response, reference, strict=True)]
    theirs = Evaluator(true, pred, tags=LABELS, loader="dict").evaluate()

    def assert_same(counts: Counts, result) -> None:
        assert counts.tp == result.correct
        assert counts.tp + counts.fp == result.actual
        assert counts.tp + counts.fn == result.possible
        # Where we say undefined, nervaluate says 0.
        for ours_value, their_value in (
            (counts.precision, result.precision),
            (counts.recall, result.recall),
            (counts.f1, result.f1),
        ):
            assert (0.0 if ours_value is None else ours_value) == pytest.approx(their_value, abs=1e-9)

    assert_same(ours.micro, theirs["overall"]["strict"])
    for label in LABELS:
        if label in theirs["entities"]:
            assert_same(ours.per_label[label], theirs["entities"][label]["strict"])
            assert_same(ours.per_label[label], theirs["entities"][label]["exact"])
        else:
            assert ours.per_label[label] == Counts(0, 0, 0)


def maximum_matching_by_brute_force(reference: list[SpanData], response: list[SpanData]) -> int:
    """Largest number of one-to-one pairs of same-label spans sharing a character, by trying every choice."""

    def characters(s: SpanData) -> set[int]:
        return {c for f in s.fragments for c in range(f.start, f.end)}

    def best(i: int, taken: frozenset[int]) -> int:
        if i == len(reference):
            return 0
        found = best(i + 1, taken)
        for j, candidate in enumerate(response):
            if (
                j not in taken
                and candidate.label == reference[i].label
                and characters(candidate) & characters(reference[i])
            ):
                found = max(found, 1 + best(i + 1, taken | {j}))
        return found

    return best(0, frozenset())


def random_fragmented_span(rng: random.Random, length: int, labels: list[str]) -> SpanData:
    starts = sorted(rng.sample(range(length - 1), rng.randint(1, 2)))
    fragments = []
    for k, start in enumerate(starts):
        limit = starts[k + 1] if k + 1 < len(starts) else length
        fragments.append((start, rng.randint(start + 1, min(limit, start + 6))))
    return span(rng.choice(labels), *fragments)


@pytest.mark.parametrize("seed", range(150))
def test_lenient_equals_brute_force_maximum(seed):
    rng = random.Random(seed)
    length = 20
    reference = [random_fragmented_span(rng, length, ["Drug", "Dose"]) for _ in range(rng.randint(0, 6))]
    response = [random_fragmented_span(rng, length, ["Drug", "Dose"]) for _ in range(rng.randint(0, 6))]
    result = evaluate({"d": reference}, {"d": response}, mode="lenient")
    assert result.micro.tp == maximum_matching_by_brute_force(reference, response)
    assert result.micro.tp + result.micro.fp == len(response)
    assert result.micro.tp + result.micro.fn == len(reference)


def token_counts_by_brute_force(reference, response, texts) -> dict[str, tuple[int, int, int]]:
    """metrics.md's token level from character sets: a token carries L if it shares a character with L."""
    counts: dict[str, list[int]] = {}
    for document, text in texts.items():
        tokens = [set(range(m.start(), m.end())) for m in re.finditer(r"\w+|[^\w\s]", text)]
        for label in {s.label for side in (reference, response) for s in side.get(document, [])}:

            def carried(side, label=label, document=document, tokens=tokens):
                covered = {
                    c
                    for s in side.get(document, [])
                    if s.label == label
                    for f in s.fragments
                    for c in range(f.start, f.end)
                }
                return {k for k, characters in enumerate(tokens) if characters & covered}

            gold, system = carried(reference), carried(response)
            row = counts.setdefault(label, [0, 0, 0])
            row[0] += len(gold & system)
            row[1] += len(system - gold)
            row[2] += len(gold - system)
    return {label: tuple(row) for label, row in counts.items()}


@pytest.mark.parametrize("seed", range(100))
def test_token_level_equals_brute_force(seed):
    rng = random.Random(seed)
    texts, reference, response = {}, {}, {}
    for d in range(rng.randint(1, 3)):
        # Emoji, accents, punctuation and CRLF: offsets are code points throughout.
        text = "".join(rng.choice(["ab", "é", " ", ".", "\r\n", "😀", "x1", ","]) for _ in range(12))
        texts[f"d{d}"] = text
        reference[f"d{d}"] = [
            random_fragmented_span(rng, len(text), LABELS) for _ in range(rng.randint(0, 4))
        ]
        response[f"d{d}"] = [random_fragmented_span(rng, len(text), LABELS) for _ in range(rng.randint(0, 4))]
    result = evaluate(reference, response, mode="token", texts=texts)
    expected = token_counts_by_brute_force(reference, response, texts)
    assert {label: (c.tp, c.fp, c.fn) for label, c in result.per_label.items()} == expected
    assert result.micro == Counts(*(sum(row[k] for row in expected.values()) for k in range(3)))
