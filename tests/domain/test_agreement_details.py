"""Agreement on what physicians say about the spans they both marked (attributes, concept codes) and on
their answers to the note's questions, checked against scikit-learn on the same data."""

import random

import pytest
from sklearn.metrics import cohen_kappa_score

from app.domain.agreement import AttributeRule, agreement_report
from app.domain.spans import Fragment, SpanData

LABELS = ["Drug", "Reason"]
ATTRIBUTES = {
    "certainty": AttributeRule(default="certain", applies_to=("Reason",)),
    "negation": AttributeRule(default=None),
}
QUESTIONS = {"setting": "choice", "sure": "scale", "problems": "multi_choice", "diagnosis": "text"}


def _corpus(seed: int):
    """Two physicians on 30 notes: shared spans with random attributes and codes, a few spans only one
    marked, and answers to every question."""
    rng = random.Random(seed)
    annotations, texts, answers = {}, {}, {}
    for d in range(30):
        document = f"n{d}"
        texts[document] = "word " * 120
        a, b = [], []
        for k in range(rng.randint(1, 6)):
            label = rng.choice(LABELS)
            fragments = (Fragment(k * 10, k * 10 + 4),)

            def attributes(label=label):
                out = {}
                if label == "Reason" and rng.random() < 0.7:
                    out["certainty"] = rng.choice(["certain", "possible"])
                if rng.random() < 0.5:
                    out["negation"] = rng.choice(["present", "absent"])
                return out

            def code():
                return rng.choice([None, "RxNorm:1", "RxNorm:2"])

            a.append(SpanData(label, fragments, attributes=attributes(), concept=code()))
            if rng.random() < 0.85:  # the other physician marked it too
                b.append(SpanData(label, fragments, attributes=attributes(), concept=code()))
        b.append(SpanData("Drug", (Fragment(500, 504),)))  # only b
        annotations[document] = {"dr.a": a, "dr.b": b}
        answers[document] = {
            who: {
                "setting": rng.choice(["inpatient", "outpatient"]),
                "sure": rng.randint(1, 5),
                "problems": sorted(rng.sample(["diabetes", "pain", "fever"], rng.randint(0, 3))),
                "diagnosis": "free text is not compared",
            }
            for who in ("dr.a", "dr.b")
        }
    return annotations, texts, answers


def _value(span: SpanData, name: str) -> str:
    value = span.attributes.get(name, ATTRIBUTES[name].default)
    return "(unset)" if value is None else value


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_attribute_code_and_answer_agreement_equal_sklearn(seed):
    annotations, texts, answers = _corpus(seed)
    report = agreement_report(annotations, {}, texts, LABELS, resamples=5, seed=0, attributes=ATTRIBUTES,
                              answers=answers, questions=QUESTIONS)  # fmt: skip
    [pair] = report["pairs"]

    # The matched spans, found independently: same label and same fragments (each position once here).
    values = {"certainty": ([], []), "negation": ([], [])}
    agreed = compared = 0
    for by in annotations.values():
        b_at = {(s.label, s.fragments): s for s in by["dr.b"]}
        for span_a in by["dr.a"]:
            span_b = b_at.get((span_a.label, span_a.fragments))
            if span_b is None:
                continue
            for name, rule in ATTRIBUTES.items():
                if not rule.applies_to or span_a.label in rule.applies_to:
                    values[name][0].append(_value(span_a, name))
                    values[name][1].append(_value(span_b, name))
            if span_a.concept or span_b.concept:
                compared += 1
                agreed += span_a.concept == span_b.concept
    for name, (first, second) in values.items():
        figure = pair["attribute_kappa"][name]
        assert figure["matched_spans"] == len(first)
        assert figure["kappa"] == pytest.approx(cohen_kappa_score(first, second), abs=1e-9)
        assert figure["observed_agreement"] == pytest.approx(
            sum(x == y for x, y in zip(first, second, strict=True)) / len(first)
        )
        # Issue 18: the spans where neither set a value are counted, and a κ leaves them out.
        set_by_one = [(x, y) for x, y in zip(first, second, strict=True) if (x, y) != ("(unset)", "(unset)")]
        assert figure["neither_set"] == len(first) - len(set_by_one)
        if len({v for pair_ in set_by_one for v in pair_}) > 1:
            assert figure["kappa_where_set"] == pytest.approx(
                cohen_kappa_score([x for x, _ in set_by_one], [y for _, y in set_by_one]), abs=1e-9
            )
    assert pair["code_agreement"] == {"agreed": agreed, "compared": compared, "rate": agreed / compared}

    a = [answers[d]["dr.a"] for d in sorted(answers)]
    b = [answers[d]["dr.b"] for d in sorted(answers)]
    answer = pair["answer_kappa"]
    assert set(answer) == {"setting", "sure", "problems"}  # text answers are not compared
    assert answer["setting"]["kappa"] == pytest.approx(
        cohen_kappa_score([x["setting"] for x in a], [y["setting"] for y in b]), abs=1e-9
    )
    sure_a, sure_b = [x["sure"] for x in a], [y["sure"] for y in b]
    assert answer["sure"]["kappa"] == pytest.approx(
        cohen_kappa_score([str(v) for v in sure_a], [str(v) for v in sure_b]), abs=1e-9
    )
    assert answer["sure"]["quadratic_weighted_kappa"] == pytest.approx(
        cohen_kappa_score(sure_a, sure_b, weights="quadratic"), abs=1e-9
    )
    for option, kappa in answer["problems"]["per_choice"].items():
        expected = cohen_kappa_score(
            [option in x["problems"] for x in a], [option in y["problems"] for y in b]
        )
        assert kappa == pytest.approx(expected, abs=1e-9)
    assert answer["problems"]["documents"] == 30


def test_unanswered_questions_and_uncoded_spans_are_left_out():
    span = SpanData("Drug", (Fragment(0, 4),))
    annotations = {"n": {"dr.a": [span], "dr.b": [span]}}
    report = agreement_report(annotations, {}, {"n": "word"}, LABELS, resamples=5, attributes=ATTRIBUTES,
                              answers={"n": {"dr.a": {"setting": "inpatient"}, "dr.b": {}}},
                              questions=QUESTIONS)  # fmt: skip
    [pair] = report["pairs"]
    assert pair["answer_kappa"] == {}
    assert pair["code_agreement"] == {"agreed": 0, "compared": 0, "rate": None}
    # negation applies to Drug; both left it unset, which is agreement on "(unset)"; κ is 0/0 there.
    assert pair["attribute_kappa"]["negation"] == {
        "kappa": None,
        "matched_spans": 1,
        "observed_agreement": 1.0,
        "neither_set": 1,
        "kappa_where_set": None,
    }


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_strict_relation_f1_equals_an_independent_count(seed):
    """Strict relation agreement: same type, and both arguments with the same label and fragments,
    one-to-one; computed here as a multiset intersection of those keys, note by note."""
    from collections import Counter

    from app.domain.evaluation import RelationData

    rng = random.Random(seed)
    annotations, relations, texts = {}, {}, {}
    matched = size = 0
    per_type: dict[str, list[int]] = {}
    for d in range(25):
        document = f"n{d}"
        texts[document] = "word " * 40
        spans = [SpanData(rng.choice(LABELS), (Fragment(k * 10, k * 10 + 4),)) for k in range(6)]
        annotations[document] = {"dr.a": spans, "dr.b": spans}
        sides = {}
        for who in ("dr.a", "dr.b"):
            sides[who] = [
                RelationData(rng.choice(["treats", "causes"]), rng.choice(spans), rng.choice(spans))
                for _ in range(rng.randint(0, 5))
            ]
        relations[document] = sides

        def keys(items):
            return Counter(
                (r.type, r.head.label, r.head.fragments, r.tail.label, r.tail.fragments) for r in items
            )

        a, b = keys(sides["dr.a"]), keys(sides["dr.b"])
        matched += sum((a & b).values())
        size += sum(a.values()) + sum(b.values())
        for kind in ("treats", "causes"):
            counts = per_type.setdefault(kind, [0, 0])
            counts[0] += sum(v for k, v in (a & b).items() if k[0] == kind)
            counts[1] += sum(v for k, v in a.items() if k[0] == kind) + sum(
                v for k, v in b.items() if k[0] == kind
            )
    report = agreement_report(annotations, relations, texts, LABELS, resamples=5)
    [pair] = report["pairs"]
    strict = pair["relation_f1"]["strict"]
    assert strict["overall"]["value"] == pytest.approx(2 * matched / size, abs=1e-12)
    for kind, (kind_matched, kind_size) in per_type.items():
        assert strict["per_label"][kind]["value"] == pytest.approx(2 * kind_matched / kind_size, abs=1e-12)
