"""Agreement between annotators (metrics.md), each figure checked against an independent implementation."""

import json
import random
from itertools import combinations, permutations

import krippendorff
import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from app.domain import agreement
from app.domain.agreement import (
    ALL_TOKENS_NOTE,
    LABELLED_TOKENS_NOTE,
    agreement_report,
    bootstrap_ci,
    cohen_kappa_tokens,
    documents_by_disagreement,
    fleiss_default_m,
    fleiss_kappa_tokens,
    krippendorff_alpha_tokens,
    pairwise_relation_agreement,
    pairwise_span_agreement,
    token_categories,
)
from app.domain.evaluation import RelationData, match_spans, span_overlap
from app.domain.spans import Fragment, SpanData
from app.domain.tokens import tokenize

LABELS = ["drug", "dose", "route"]


def span(label: str, *ranges: tuple[int, int]) -> SpanData:
    return SpanData(label, tuple(Fragment(start, end) for start, end in ranges))


# ---------------------------------------------------------------------------------------------------------
# Token categories

TEXT = "aspirin 81 mg po daily"  # tokens: aspirin [0,7) 81 [8,10) mg [11,13) po [14,16) daily [17,22)

TOKEN_CATEGORY_CASES = [
    ("no spans", [], ["O", "O", "O", "O", "O"]),
    ("one span over two tokens", [span("dose", (8, 13))], ["O", "dose", "dose", "O", "O"]),
    ("a span touching part of a token labels it", [span("drug", (3, 5))], ["drug", "O", "O", "O", "O"]),
    ("white space alone labels nothing", [span("drug", (7, 8))], ["O", "O", "O", "O", "O"]),
    (
        "nested: the longer span wins",
        [span("drug", (8, 10)), span("dose", (8, 13))],
        ["O", "dose", "dose", "O", "O"],
    ),
    (
        "nested, longer listed first: still the longer",
        [span("dose", (0, 16)), span("drug", (0, 7))],
        ["dose", "dose", "dose", "dose", "O"],
    ),
    (
        "overlapping: each token takes the longest span covering it",
        [span("drug", (0, 10)), span("route", (8, 22))],
        ["drug", "route", "route", "route", "route"],
    ),
    (
        "tie in length: schema order (drug before route)",
        [span("route", (8, 13)), span("drug", (11, 16))],
        ["O", "route", "drug", "drug", "O"],
    ),
    (
        "tie in length, listed the other way round: same answer",
        [span("drug", (11, 16)), span("route", (8, 13))],
        ["O", "route", "drug", "drug", "O"],
    ),
    (
        "discontinuous: the gap between fragments stays O",
        [span("drug", (0, 7), (17, 22))],
        ["drug", "O", "O", "O", "drug"],
    ),
    (
        "discontinuous length is its characters (5+5), not its extent (22)",
        [span("drug", (0, 7), (17, 22)), span("route", (0, 13))],
        ["route", "route", "route", "O", "drug"],
    ),
    (
        "a label outside the schema comes after the schema's labels on a tie",
        [span("zeta", (0, 7)), span("route", (0, 7))],
        ["route", "O", "O", "O", "O"],
    ),
]


@pytest.mark.parametrize(
    ("case", "spans", "expected"), TOKEN_CATEGORY_CASES, ids=[c[0] for c in TOKEN_CATEGORY_CASES]
)
def test_token_categories(case, spans, expected):
    assert token_categories(TEXT, spans, LABELS) == expected


def test_token_categories_reject_a_fragment_past_the_text():
    with pytest.raises(ValueError, match="past the text"):
        token_categories("short", [span("drug", (0, 9))], LABELS)


def test_internal_token_bounds_are_the_tokens_of_tokenize():
    text = "Pt. é́ 5mg\u200b x2 — q.d.\ufeff"
    starts, ends = agreement._token_bounds(text)
    assert list(zip(starts.tolist(), ends.tolist(), strict=True)) == [
        (t.start, t.end) for t in tokenize(text)
    ]


# ---------------------------------------------------------------------------------------------------------
# Small agreement examples

SMALL_CASES = [
    # (name, spans of A, spans of B, strict F1, lenient F1)
    (
        "perfect agreement",
        [span("drug", (0, 7)), span("dose", (8, 13))],
        [span("dose", (8, 13)), span("drug", (0, 7))],
        1.0,
        1.0,
    ),
    ("disjoint", [span("drug", (0, 7))], [span("drug", (8, 13))], 0.0, 0.0),
    ("same characters, other label", [span("drug", (0, 7))], [span("dose", (0, 7))], 0.0, 0.0),
    ("overlap only: lenient match", [span("drug", (0, 7))], [span("drug", (3, 10))], 0.0, 1.0),
    ("one of two found", [span("drug", (0, 7)), span("dose", (8, 13))], [span("drug", (0, 7))], 2 / 3, 2 / 3),
    ("both empty: undefined", [], [], None, None),
    ("one side empty: 0", [span("drug", (0, 7))], [], 0.0, 0.0),
    (
        "one-to-one: a long span overlapping two counts once",
        [span("drug", (0, 22))],
        [span("drug", (0, 7)), span("drug", (17, 22))],
        0.0,
        2 / 3,
    ),
    (
        "fragment order does not matter",
        [span("drug", (0, 7), (17, 22))],
        [span("drug", (17, 22), (0, 7))],
        1.0,
        1.0,
    ),
    (
        "discontinuous extents overlap, characters do not",
        [span("drug", (0, 3), (17, 22))],
        [span("drug", (8, 13))],
        0.0,
        0.0,
    ),
]


@pytest.mark.parametrize(
    ("case", "spans_a", "spans_b", "strict", "lenient"), SMALL_CASES, ids=[c[0] for c in SMALL_CASES]
)
def test_small_span_agreement(case, spans_a, spans_b, strict, lenient):
    annotations = {"note": {"ann": spans_a, "bob": spans_b}}
    for rule, expected in (("strict", strict), ("lenient", lenient)):
        forward = pairwise_span_agreement(annotations, "ann", "bob", rule=rule, labels=LABELS)
        backward = pairwise_span_agreement(annotations, "bob", "ann", rule=rule, labels=LABELS)
        assert (
            forward.overall.f1 == pytest.approx(expected)
            if expected is not None
            else forward.overall.f1 is None
        )
        assert backward.overall.f1 == forward.overall.f1


def test_span_agreement_uses_only_documents_both_submitted():
    annotations = {
        "both": {"ann": [span("drug", (0, 7))], "bob": [span("drug", (0, 7))]},
        "only ann": {"ann": [span("drug", (0, 7)), span("dose", (8, 13))]},
    }
    result = pairwise_span_agreement(annotations, "ann", "bob", rule="strict", labels=LABELS)
    assert (result.documents, result.overall.f1) == (1, 1.0)
    assert list(result.per_label) == LABELS
    assert result.per_label["dose"].f1 is None  # nobody used it on the shared document


def test_repeated_documents_count_twice():
    annotations = {
        "good": {"ann": [span("drug", (0, 7))], "bob": [span("drug", (0, 7))]},
        "bad": {"ann": [span("drug", (0, 7))], "bob": []},
    }
    result = pairwise_span_agreement(
        annotations, "ann", "bob", rule="strict", labels=LABELS, documents=["good", "good", "bad"]
    )
    assert (result.overall.matched, result.overall.size_a, result.overall.size_b) == (2, 3, 2)


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule"):
        pairwise_span_agreement({}, "ann", "bob", rule="token", labels=LABELS)


# ---------------------------------------------------------------------------------------------------------
# Random data shared by the comparisons with other implementations

WORDS = ["aspirin", "81", "mg", "po", "daily", ",", ".", "for", "pain", "metoprolol"]


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def random_spans(
    rng: random.Random, text: str, count: int, labels=LABELS, discontinuous=0.2
) -> list[SpanData]:
    spans = []
    for _ in range(count):
        start = rng.randrange(len(text) - 1)
        ranges = [(start, min(len(text), start + rng.randint(1, 12)))]
        if rng.random() < discontinuous and ranges[0][1] + 3 < len(text):
            second = rng.randrange(ranges[0][1] + 1, len(text))
            ranges.append((second, min(len(text), second + rng.randint(1, 6))))
        spans.append(span(rng.choice(labels), *ranges))
    return spans


def random_study(
    seed: int, documents: int = 12, annotators=("ann", "bob", "cy", "dee"), missing=0.25, spans=6
):
    """Texts and annotations; each annotator skips some documents and perturbs a shared base set."""
    rng = random.Random(seed)
    texts, annotations = {}, {}
    for d in range(documents):
        key = f"note-{d:02d}"
        texts[key] = random_text(rng, 25)
        base = random_spans(rng, texts[key], spans)
        annotations[key] = {}
        for annotator in annotators:
            if rng.random() < missing:
                continue
            mine = []
            for s in base:
                roll = rng.random()
                if roll < 0.6:
                    mine.append(s)
                elif roll < 0.75:
                    mine.append(SpanData(rng.choice(LABELS), s.fragments))
                elif roll < 0.9:
                    first = s.fragments[0]
                    mine.append(
                        SpanData(s.label, (Fragment(first.start, min(len(texts[key]), first.end + 2)),))
                    )
            mine += random_spans(rng, texts[key], rng.randint(0, 2))
            annotations[key][annotator] = mine
    return texts, annotations


# ---------------------------------------------------------------------------------------------------------
# Span F1 against a brute force


def brute_force_matched(spans_a, spans_b, rule) -> int:
    """The largest one-to-one matching, found by trying every assignment (small cases only)."""

    def compatible(x, y):
        if x.label != y.label:
            return False
        return set(x.fragments) == set(y.fragments) if rule == "strict" else span_overlap(x, y) > 0

    small, large = (spans_a, spans_b) if len(spans_a) <= len(spans_b) else (spans_b, spans_a)
    best = 0
    for chosen in permutations(range(len(large)), len(small)):
        best = max(best, sum(compatible(x, large[j]) for x, j in zip(small, chosen, strict=True)))
    return best


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("rule", ["strict", "lenient"])
def test_pairwise_f1_matches_a_brute_force_and_is_symmetric(seed, rule):
    rng = random.Random(seed)
    text = random_text(rng, 8)  # short, so that spans overlap a lot
    spans_a = random_spans(rng, text, rng.randint(0, 5), labels=LABELS[:2], discontinuous=0.4)
    spans_b = random_spans(rng, text, rng.randint(0, 5), labels=LABELS[:2], discontinuous=0.4)
    spans_b += [s for s in spans_a if rng.random() < 0.3][: 6 - len(spans_b)]
    annotations = {"note": {"ann": spans_a, "bob": spans_b}}
    result = pairwise_span_agreement(annotations, "ann", "bob", rule=rule, labels=LABELS)
    mirrored = pairwise_span_agreement(annotations, "bob", "ann", rule=rule, labels=LABELS)
    expected = brute_force_matched(spans_a, spans_b, rule)
    assert result.overall.matched == expected
    total = len(spans_a) + len(spans_b)
    assert result.overall.f1 == (pytest.approx(2 * expected / total) if total else None)
    assert mirrored.overall == agreement.AgreementCounts(expected, len(spans_b), len(spans_a))
    for label, counts in result.per_label.items():
        assert mirrored.per_label[label].f1 == counts.f1


@pytest.mark.parametrize("seed", range(20))
def test_lenient_shortcut_agrees_with_match_spans_on_dense_notes(seed):
    rng = random.Random(1000 + seed)
    text = random_text(rng, 40)
    spans_a = random_spans(rng, text, 30, discontinuous=0.3)
    spans_b = random_spans(rng, text, 30, discontinuous=0.3)
    annotations = {"note": {"ann": spans_a, "bob": spans_b}}
    result = pairwise_span_agreement(annotations, "ann", "bob", rule="lenient", labels=LABELS)
    for label in LABELS:
        of_a = [s for s in spans_a if s.label == label]
        of_b = [s for s in spans_b if s.label == label]
        assert result.per_label[label].matched == len(match_spans(of_a, of_b, rule="lenient"))


# ---------------------------------------------------------------------------------------------------------
# Chance-corrected figures against scikit-learn, statsmodels and krippendorff


def categories_of(texts, annotations, annotator, documents):
    return [c for d in documents for c in token_categories(texts[d], annotations[d][annotator], LABELS)]


@pytest.mark.parametrize("seed", range(6))
def test_cohen_kappa_matches_scikit_learn(seed):
    texts, annotations = random_study(seed)
    for a, b in combinations(["ann", "bob", "cy", "dee"], 2):
        shared = [d for d, by in annotations.items() if a in by and b in by]
        ya, yb = categories_of(texts, annotations, a, shared), categories_of(texts, annotations, b, shared)
        assert cohen_kappa_tokens(annotations, a, b, texts, LABELS) == pytest.approx(
            cohen_kappa_score(ya, yb), abs=1e-9
        )
        kept = [(x, y) for x, y in zip(ya, yb, strict=True) if (x, y) != ("O", "O")]
        expected = cohen_kappa_score([x for x, _ in kept], [y for _, y in kept])
        assert cohen_kappa_tokens(annotations, a, b, texts, LABELS, labelled_only=True) == pytest.approx(
            expected, abs=1e-9
        )


KAPPA_UNDEFINED_CASES = [
    ("both left everything O", [], [], None, None),
    ("both labelled everything alike", [span("drug", (0, 22))], [span("drug", (0, 22))], None, None),
    ("perfect, with O tokens", [span("drug", (0, 7))], [span("drug", (0, 7))], 1.0, None),
]


@pytest.mark.parametrize(
    ("case", "spans_a", "spans_b", "all_tokens", "labelled"),
    KAPPA_UNDEFINED_CASES,
    ids=[c[0] for c in KAPPA_UNDEFINED_CASES],
)
def test_cohen_kappa_small_cases(case, spans_a, spans_b, all_tokens, labelled):
    annotations = {"note": {"ann": spans_a, "bob": spans_b}}
    texts = {"note": TEXT}
    assert cohen_kappa_tokens(annotations, "ann", "bob", texts, LABELS) == all_tokens
    assert cohen_kappa_tokens(annotations, "ann", "bob", texts, LABELS, labelled_only=True) == labelled


@pytest.mark.parametrize("seed", range(6))
def test_fleiss_kappa_matches_statsmodels(seed):
    texts, annotations = random_study(seed, documents=15, missing=0.15)
    m = fleiss_default_m(annotations)
    assert m is not None
    rows = []
    for d, by in annotations.items():
        if len(by) == m:
            per_annotator = [token_categories(texts[d], spans, LABELS) for spans in by.values()]
            rows += [list(token) for token in zip(*per_annotator, strict=True)]
    table, _ = aggregate_raters(np.array(rows, dtype=object))
    expected = fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa_tokens(annotations, texts, LABELS) == pytest.approx(expected, abs=1e-9)
    assert fleiss_kappa_tokens(annotations, texts, LABELS, m=m) == pytest.approx(expected, abs=1e-9)


FLEISS_M_CASES = [
    ("no document with three annotators", [2, 2, 1], None),
    ("the most common count", [3, 4, 4, 2, 2, 2], 4),
    ("a tie goes to the larger count", [3, 4], 4),
]


@pytest.mark.parametrize(("case", "counts", "expected"), FLEISS_M_CASES, ids=[c[0] for c in FLEISS_M_CASES])
def test_fleiss_default_m(case, counts, expected):
    annotations = {f"d{i}": {f"a{j}": [] for j in range(n)} for i, n in enumerate(counts)}
    assert fleiss_default_m(annotations) == expected


def test_fleiss_refuses_fewer_than_three_and_is_undefined_when_all_agree_on_one_category():
    annotations = {"note": {"a": [], "b": [], "c": []}}
    with pytest.raises(ValueError, match="m >= 3"):
        fleiss_kappa_tokens(annotations, {"note": TEXT}, LABELS, m=2)
    assert fleiss_kappa_tokens(annotations, {"note": TEXT}, LABELS) is None


@pytest.mark.parametrize("seed", range(6))
def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_annotators(seed):
    annotators = ["ann", "bob", "cy", "dee"]
    texts, annotations = random_study(seed, missing=0.35)
    code = {label: k for k, label in enumerate(["O", *LABELS])}
    columns = []  # one unit per token; an annotator who did not submit the document is missing (NaN)
    for d, by in annotations.items():
        per_annotator = {a: token_categories(texts[d], spans, LABELS) for a, spans in by.items()}
        for t in range(len(tokenize(texts[d]))):
            columns.append([code[per_annotator[a][t]] if a in per_annotator else np.nan for a in annotators])
    reliability = np.array(columns, dtype=float).T
    assert np.isnan(reliability).any()
    expected = krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal")
    assert krippendorff_alpha_tokens(annotations, texts, LABELS) == pytest.approx(expected, abs=1e-9)


def test_krippendorff_alpha_is_undefined_with_one_category():
    annotations = {"note": {"a": [], "b": []}, "alone": {"a": [span("drug", (0, 7))]}}
    assert krippendorff_alpha_tokens(annotations, {"note": TEXT, "alone": TEXT}, LABELS) is None


# ---------------------------------------------------------------------------------------------------------
# Relations


def test_relation_agreement_strict_and_lenient():
    drug, dose, dose_wider = span("drug", (0, 7)), span("dose", (8, 13)), span("dose", (8, 16))
    relations = {
        "note": {
            "ann": [RelationData("has_dose", drug, dose), RelationData("has_route", drug, dose)],
            "bob": [RelationData("has_dose", drug, dose_wider), RelationData("has_dose", dose, drug)],
        }
    }
    strict = pairwise_relation_agreement(relations, "ann", "bob", rule="strict")
    lenient = pairwise_relation_agreement(relations, "bob", "ann", rule="lenient")
    assert (strict.overall.matched, strict.overall.f1) == (0, 0.0)
    assert (lenient.overall.matched, lenient.overall.f1) == (1, 0.5)
    assert lenient.per_label["has_dose"].f1 == pytest.approx(2 / 3)
    assert lenient.per_label["has_route"].f1 == 0.0
    assert pairwise_relation_agreement({}, "ann", "bob", rule="strict").overall.f1 is None


# ---------------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_is_reproducible_for_a_seed_and_moves_with_it():
    values = {f"d{i}": float(i % 7) for i in range(30)}

    def mean(keys):
        return sum(values[k] for k in keys) / len(keys)

    first = bootstrap_ci(list(values), mean, resamples=200, seed=7)
    assert first == bootstrap_ci(list(values), mean, resamples=200, seed=7)
    assert first != bootstrap_ci(list(values), mean, resamples=200, seed=8)
    assert first[0] < mean(list(values)) < first[1]


def test_bootstrap_skips_undefined_resamples_and_is_none_without_any():
    assert bootstrap_ci([], lambda keys: 1.0) is None
    assert bootstrap_ci(["a", "b"], lambda keys: None, resamples=20) is None
    # Only resamples that drew "x" define the figure, and there it is always 1.
    assert bootstrap_ci(["x", "y", "z"], lambda keys: 1.0 if "x" in keys else None, resamples=50) == (
        1.0,
        1.0,
    )


def test_bootstrap_matches_scipy_within_resampling_error():
    texts, annotations = random_study(3, documents=60, annotators=("ann", "bob"), missing=0.0)
    shared = sorted(annotations)
    per_document = [
        pairwise_span_agreement(
            annotations, "ann", "bob", rule="strict", labels=LABELS, documents=[d]
        ).overall
        for d in shared
    ]
    matched = np.array([c.matched for c in per_document], dtype=float)
    sizes = np.array([c.size_a + c.size_b for c in per_document], dtype=float)

    def pooled(keys):
        return pairwise_span_agreement(
            annotations, "ann", "bob", rule="strict", labels=LABELS, documents=keys
        ).overall.f1

    ours = bootstrap_ci(shared, pooled, resamples=2000, seed=11)
    theirs = scipy.stats.bootstrap(
        (matched, sizes),
        lambda a, n: 2 * a.sum() / n.sum(),
        paired=True,
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(12),
    )
    # Two independent sets of 2,000 resamples: each 2.5 % quantile varies by about 0.06 standard errors,
    # their difference by about 0.09; 0.4 standard errors is more than four times that.
    tolerance = 0.4 * theirs.standard_error
    assert ours[0] == pytest.approx(theirs.confidence_interval.low, abs=tolerance)
    assert ours[1] == pytest.approx(theirs.confidence_interval.high, abs=tolerance)


# ---------------------------------------------------------------------------------------------------------
# Report


def report_study():
    texts, annotations = random_study(5, documents=20, annotators=("ann", "bob", "cy"), missing=0.2)
    relations = {}
    for d, by in annotations.items():
        relations[d] = {
            a: [
                RelationData(("has_dose", "has_route")[i % 2], spans[i], spans[i + 1])
                for i in range(len(spans) - 1)
            ]
            for a, spans in by.items()
        }
    return texts, annotations, relations


def test_report_figures_equal_the_public_functions_and_their_bootstrap():
    texts, annotations, relations = report_study()
    report = agreement_report(annotations, relations, texts, LABELS, resamples=100, seed=3)
    json.dumps(report, allow_nan=False)
    assert report["bootstrap"] == {"method": "percentile", "resamples": 100, "seed": 3, "level": 0.95}
    assert [pair["annotators"] for pair in report["pairs"]] == [["ann", "bob"], ["ann", "cy"], ["bob", "cy"]]

    def interval(keys, statistic):
        low_high = bootstrap_ci(keys, statistic, resamples=100, seed=3)
        return None if low_high is None else pytest.approx(list(low_high), abs=1e-9)

    for pair in report["pairs"]:
        a, b = pair["annotators"]
        shared = [d for d, by in annotations.items() if a in by and b in by]
        assert pair["documents"] == len(shared)
        for rule in ("strict", "lenient"):

            def span_f1(keys, label=None, rule=rule, a=a, b=b):
                result = pairwise_span_agreement(annotations, a, b, rule=rule, labels=LABELS, documents=keys)
                return (result.overall if label is None else result.per_label[label]).f1

            figure = pair["span_f1"][rule]["overall"]
            assert figure["value"] == pytest.approx(span_f1(shared), abs=1e-9)
            assert figure["ci"] == interval(shared, span_f1)
            for label in LABELS:
                figure = pair["span_f1"][rule]["per_label"][label]
                assert figure["value"] == pytest.approx(span_f1(shared, label), abs=1e-9)
                assert figure["ci"] == interval(shared, lambda keys, label=label: span_f1(keys, label))

            def relation_f1(keys, rule=rule, a=a, b=b):
                return pairwise_relation_agreement(relations, a, b, rule=rule, documents=keys).overall.f1

            figure = pair["relation_f1"][rule]["overall"]
            assert figure["value"] == pytest.approx(relation_f1(shared), abs=1e-9)
            assert figure["ci"] == interval(shared, relation_f1)
        for variant, labelled_only, note in (
            ("all_tokens", False, ALL_TOKENS_NOTE),
            ("labelled_tokens", True, LABELLED_TOKENS_NOTE),
        ):

            def kappa(keys, labelled_only=labelled_only, a=a, b=b):
                return cohen_kappa_tokens(
                    annotations, a, b, texts, LABELS, labelled_only=labelled_only, documents=keys
                )

            figure = pair["token_kappa"][variant]
            assert figure["value"] == pytest.approx(kappa(shared), abs=1e-9)
            assert figure["ci"] == interval(shared, kappa)
            assert figure["note"] == note

    eligible = [d for d, by in annotations.items() if len(by) == 3]
    fleiss = report["fleiss_kappa"]
    assert (fleiss["m"], fleiss["documents"]) == (3, len(eligible))
    assert fleiss["value"] == pytest.approx(fleiss_kappa_tokens(annotations, texts, LABELS), abs=1e-9)
    assert fleiss["ci"] == interval(
        eligible, lambda keys: fleiss_kappa_tokens(annotations, texts, LABELS, documents=keys)
    )
    pairable = [d for d, by in annotations.items() if len(by) >= 2]
    alpha = report["krippendorff_alpha"]
    assert alpha["value"] == pytest.approx(krippendorff_alpha_tokens(annotations, texts, LABELS), abs=1e-9)
    assert alpha["ci"] == interval(
        pairable, lambda keys: krippendorff_alpha_tokens(annotations, texts, LABELS, documents=keys)
    )

    # The mean over pairs: of the pairs' figures, and resampled over every document with two annotators.
    mean = report["mean_over_pairs"]
    assert mean["span_f1"]["strict"]["overall"]["value"] == pytest.approx(
        np.mean([pair["span_f1"]["strict"]["overall"]["value"] for pair in report["pairs"]]), abs=1e-9
    )

    def mean_kappa(keys):
        values = [
            cohen_kappa_tokens(annotations, a, b, texts, LABELS, documents=keys)
            for a, b in combinations(["ann", "bob", "cy"], 2)
        ]
        defined = [v for v in values if v is not None]
        return sum(defined) / len(defined) if defined else None

    assert mean["token_kappa"]["all_tokens"]["value"] == pytest.approx(mean_kappa(pairable), abs=1e-9)
    assert mean["token_kappa"]["all_tokens"]["ci"] == interval(pairable, mean_kappa)


def test_report_without_overlap_has_undefined_figures_not_zeros():
    texts = {"a": TEXT, "b": TEXT}
    annotations = {"a": {"ann": [span("drug", (0, 7))]}, "b": {"bob": []}}
    report = agreement_report(annotations, {}, texts, LABELS, resamples=10)
    json.dumps(report, allow_nan=False)
    (pair,) = report["pairs"]
    assert pair["documents"] == 0
    assert pair["span_f1"]["strict"]["overall"] == {"value": None, "ci": None}
    assert pair["token_kappa"]["all_tokens"]["value"] is None
    assert report["fleiss_kappa"] is None
    assert report["krippendorff_alpha"] == {"documents": 0, "value": None, "ci": None}


def test_documents_by_disagreement_worst_first_and_undefined_last():
    drug, dose = span("drug", (0, 7)), span("dose", (8, 13))
    annotations = {
        "agreed": {"ann": [drug], "bob": [drug], "cy": [drug]},
        "split": {"ann": [drug], "bob": [dose], "cy": [drug]},  # pairs: 0, 1, 0
        "apart": {"ann": [drug], "bob": [dose]},
        "empty": {"ann": [], "bob": []},
        "single": {"ann": [drug]},
    }
    assert documents_by_disagreement(annotations, LABELS) == [
        ("apart", 0.0),
        ("split", pytest.approx(1 / 3)),
        ("agreed", 1.0),
        ("empty", None),
    ]
