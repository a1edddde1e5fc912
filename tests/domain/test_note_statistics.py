"""Per-note records pooled into the study report give exactly what the domain functions give directly."""

import json
import math
from collections import Counter, defaultdict

import krippendorff
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from app.domain.active_time import TimeEvent, active_seconds_from_gaps, total_active_seconds, visible_gaps
from app.domain.agreement import (
    agreement_report,
    document_agreement,
    documents_by_disagreement,
    pooled_agreement,
    token_categories,
)
from app.domain.edit_mix import edit_event_counts, edit_mix, edit_mix_by_label, sum_edit_mixes
from app.domain.evaluation import RelationData, evaluate_all
from app.domain.note_statistics import NoteWork, SubmittedWork, note_statistics, pooled_report
from app.domain.spans import Fragment, SpanData
from app.domain.study_time import condition_summary, document_minutes, pipeline_savings
from app.domain.tokens import tokenize

LABELS = ["drug", "dose", "route"]
RESAMPLES = {"agreement_resamples": 200, "time_resamples": 300, "seed": 11}


def span(label: str, *ranges: tuple[int, int], status: str | None = None) -> SpanData:
    return SpanData(label, tuple(Fragment(start, end) for start, end in ranges), status=status)


def spans(compact: str) -> list[SpanData]:
    """ "drug:0-7 route:17-19+27-32 dose:8-13?": label, then its fragments; the second span is
    discontinuous, the third (``?``) a pre-label still pending at the submit."""
    result = []
    for item in compact.split():
        label, ranges = item.removesuffix("?").split(":")
        status = "pending" if item.endswith("?") else None
        result.append(span(label, *(tuple(map(int, r.split("-"))) for r in ranges.split("+")), status=status))
    return result


# (page session, kind, seconds). One page with a hidden stretch, a 1000 s visible idle gap, and activity
# stamped after the submit (left out: the submitting page's clock orders it after the submit).
ONE_PAGE = [
    ("p1", "open", 0), ("p1", "activity", 20), ("p1", "add", 45), ("p1", "hidden", 60),
    ("p1", "visible", 400), ("p1", "activity", 1400), ("p1", "submit", 1430), ("p1", "activity", 1440),
]  # fmt: skip
# Two pages; the first logs activity after the second submitted, which is left out by log order.
TWO_PAGES = [
    ("p1", "open", 0), ("p1", "add", 30), ("p1", "close", 50), ("p2", "open", 5), ("p2", "modify", 40),
    ("p2", "hidden", 41), ("p2", "visible", 300), ("p2", "activity", 990), ("p2", "submit", 1000),
    ("p1", "activity", 2000),
]  # fmt: skip


def work(set_id, annotator, condition, final, *, steps=(), scale=1.0, base=None, relations=(), kinds=None):
    # Log positions (seq) follow the list order and are unique across sets, as edit-event ids are.
    events = [TimeEvent(p, kind, s * scale * 1000, set_id * 100 + i) for i, (p, kind, s) in enumerate(steps)]
    submits = [e.seq for e in events if e.kind == "submit"]
    return SubmittedWork(
        set_id, annotator, condition, spans(final), relations, events, submits[-1] if submits else None,
        kinds or {}, None if base is None else spans(base),
    )  # fmt: skip


def corpus() -> list[NoteWork]:
    pre1, pre2, pre3 = (
        "drug:0-7 dose:8-13 route:14-16 drug:27-36 dose:37-40",
        "drug:0-8 dose:9-13 route:14-20 dose:24-29",
        "drug:0-7 dose:8-16 route:17-19",
    )
    alice1 = "drug:0-7 dose:8-13 route:14-16 frequency:17-22 drug:27-36 dose:37-43"
    bob1 = "drug:0-7 dose:8-10 drug:14-16 drug:27-36 dose:37-43 frequency:17-22"
    bob2, alice4 = "drug:0-8 dose:9-13 route:14-23", "drug:0-10 dose:11-16 route:17-19"
    has_dose = lambda final, head, tail: RelationData("has_dose", spans(final)[head], spans(final)[tail])  # noqa: E731
    return [
        NoteWork("n1", "aspirin 81 mg po daily and metformin 500 mg", [
            work(1, "alice", "scratch", alice1, steps=ONE_PAGE, kinds={"add": 6, "submit": 1},
                 relations=[has_dose(alice1, 0, 1), has_dose(alice1, 4, 5)]),
            work(2, "bob", "refine_llm", bob1, steps=TWO_PAGES, scale=0.4, base=pre1,
                 relations=[has_dose(bob1, 0, 1)],
                 kinds={"accept_all": 1, "modify": 2, "relabel": 1, "undo": 1}),
            work(3, "carol", "refine_human", "drug:0-7 dose:8-13 dose:17-26 drug:27-43", steps=ONE_PAGE,
                 scale=0.3, base=alice1, kinds={"delete": 2, "modify": 2, "relabel": 1}),
        ], gold=spans("drug:0-7 dose:8-13 route:14-16 drug:27-36 dose:37-43")),
        NoteWork("n2", "warfarin 5 mg orally at night", [
            work(4, "alice", "refine_llm", "drug:0-8 dose:9-10 route:14-20 frequency:21-29", steps=ONE_PAGE,
                 scale=0.25, base=pre2, kinds={"reject": 1, "modify": 1, "add": 1}),
            work(5, "bob", "scratch", bob2, steps=TWO_PAGES, scale=0.9, kinds={"add": 3}),
            work(6, "carol", "refine_human", "drug:0-8 dose:9-13 route:14-20", steps=TWO_PAGES, scale=0.2,
                 base=bob2, kinds={"modify": 1, "redo": 2}),
        ], gold=spans("drug:0-8 dose:9-13 route:14-20")),
        NoteWork("n3", "insulin 10 units sc before meals", [
            work(7, "alice", "scratch", "drug:0-7 dose:8-10 route:17-19", steps=TWO_PAGES, scale=0.7),
            # bob accepted two pre-labels and submitted the third undecided.
            work(8, "bob", "refine_llm", "drug:0-7 dose:8-16 route:17-19?", steps=ONE_PAGE, scale=0.1,
                 base=pre3, kinds={"accept": 2}),
            work(9, "carol", "refine_llm", "drug:0-16 route:17-19+27-32", steps=ONE_PAGE, scale=0.15,
                 base=pre3, kinds={"delete": 1, "modify": 1}),
        ]),
        NoteWork("n4", "lisinopril 20 mg po once daily", [
            work(10, "alice", "scratch", alice4, steps=ONE_PAGE, scale=0.5, kinds={"add": 3}),
            work(11, "bob", "refine_human", "drug:0-10 dose:11-13 route:17-19 frequency:20-30",
                 steps=TWO_PAGES, scale=0.3, base=alice4, kinds={"add": 1}),
            # An import (no condition, no time), then carol's own study set: the later one is hers.
            work(12, "carol", None, "drug:0-10", kinds={"add": 1}),
            work(13, "carol", "scratch", "drug:0-10 dose:11-16", steps=TWO_PAGES, scale=0.6,
                 kinds={"add": 2}),
        ], gold=spans("drug:0-10 dose:11-16 route:17-19 frequency:20-30")),
        # One independent annotator (no pair, no disagreement rank), no refine_llm (left out of the paired
        # savings), no gold (dave has no quality figure).
        NoteWork("n5", "metoprolol 25 mg bid", [
            work(14, "dave", "scratch", "drug:0-10 dose:11-16", steps=ONE_PAGE, scale=0.8, kinds={"add": 2}),
            work(15, "bob", "refine_human", "drug:0-10 dose:11-13 frequency:17-20", steps=ONE_PAGE,
                 scale=0.2, base="drug:0-10 dose:11-16", kinds={"modify": 1, "add": 1}),
        ]),
    ]  # fmt: skip


NOTES = corpus()
RECORDS = {note.document: note_statistics(note, LABELS) for note in NOTES}


def report(threshold: float, records=RECORDS) -> dict:
    return pooled_report(records, LABELS, idle_threshold_seconds=threshold, **RESAMPLES)


def each_set():
    return [(note, w) for note in NOTES for w in note.submitted]


def direct_minutes(threshold: float) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Minutes per condition (by document/annotator) and mean per document, as the report defined them."""
    pairs = each_set()
    events = {w.set_id: w.time_events for _, w in pairs if w.time_events}
    minutes = document_minutes(events, threshold, submitted_at={w.set_id: w.submit_seq for _, w in pairs})
    per_condition, per_document = defaultdict(dict), defaultdict(lambda: defaultdict(list))
    for note, w in pairs:
        if w.set_id in minutes and w.condition:
            per_condition[w.condition][f"{note.document}/{w.annotator}"] = minutes[w.set_id]
            per_document[w.condition][note.document].append(minutes[w.set_id])
    means = {c: {d: sum(v) / len(v) for d, v in docs.items()} for c, docs in per_document.items()}
    return per_condition, means


@pytest.mark.parametrize("threshold", [60, 300, 17.5, 1e-3, math.inf])
def test_time_pooled_from_gaps_equals_document_minutes_at_any_threshold(threshold):
    # The records store gaps, not minutes, so one set of records serves every idle threshold.
    time = report(threshold)["time"]
    per_condition, means = direct_minutes(threshold)
    assert time["idle_threshold_seconds"] == threshold
    assert time["minutes"] == {c: sorted(v.values()) for c, v in per_condition.items()}
    assert set(time["minutes"]) == {"scratch", "refine_llm", "refine_human"}
    for condition in ("scratch", "refine_llm", "refine_human"):
        expected = condition_summary(per_condition[condition], resamples=300, seed=11)
        assert time["per_condition"][condition] == expected
        assert time["per_condition"][condition]["n"] == len(per_condition[condition])
    savings = pipeline_savings(
        means["scratch"], means["refine_human"], means["refine_llm"], resamples=300, seed=11
    )
    assert time["savings"] == savings
    assert savings["design"] == "paired" and savings["paired_documents"] == ["n1", "n2"]


@pytest.mark.parametrize(
    ("steps", "threshold", "seconds"),
    [(ONE_PAGE, 60, 20 + 25 + 15 + 60 + 30), (ONE_PAGE, math.inf, 20 + 25 + 15 + 1000 + 30),
     (TWO_PAGES, 60, 30 + 20 + 35 + 1 + 60 + 10), (TWO_PAGES, math.inf, 30 + 20 + 35 + 1 + 690 + 10)],
)  # fmt: skip
def test_minutes_of_the_timelines_by_hand(steps, threshold, seconds):
    # The pooled and the direct minutes share visible_gaps; this pins both to metrics.md's definition
    # (hidden stretches and events after the submission left out, visible gaps capped at the threshold).
    timed = work(1, "alice", "scratch", "", steps=steps)
    assert document_minutes({1: timed.time_events}, threshold, submitted_at={1: timed.submit_seq}) == {
        1: seconds / 60
    }


def counts_of(evaluation) -> dict:
    micro = evaluation.micro
    return {
        "per_label": [(label, c.tp, c.fp, c.fn) for label, c in evaluation.per_label.items()],
        "micro": (micro.tp, micro.fp, micro.fn, micro.f1),
        "macro_f1": evaluation.macro_f1,
    }


def pooled_counts(figures: dict) -> dict:
    micro = figures["micro"]
    return {
        "per_label": [(label, c["tp"], c["fp"], c["fn"]) for label, c in figures["per_label"].items()],
        "micro": (micro["tp"], micro["fp"], micro["fn"], micro["f1"]),
        "macro_f1": figures["macro"]["f1"],
    }


def assert_quality(pooled: dict, pairs: list, reference, response) -> None:
    """`pooled` equals evaluate_all with one document per set, the reference and response taken of it."""
    reference_of = {str(w.set_id): reference(note, w) for note, w in pairs}
    response_of = {str(w.set_id): response(note, w) for note, w in pairs}
    texts = {str(w.set_id): note.text for note, w in pairs}
    assert pooled["documents"] == len(pairs) > 0
    for mode, evaluation in evaluate_all(reference_of, response_of, texts, labels=LABELS).items():
        assert pooled_counts(pooled["figures"][mode]) == counts_of(evaluation), mode


def test_pre_label_and_physician_quality_equal_evaluate_all_over_the_same_sets():
    quality = report(60)
    refined = [(n, w) for n, w in each_set() if w.condition == "refine_llm" and w.base_spans is not None]
    pre = quality["pre_label_quality"]
    assert_quality(pre["against_final"], refined, lambda n, w: w.spans, lambda n, w: w.base_spans)
    with_gold = [(n, w) for n, w in refined if n.gold is not None]
    assert_quality(pre["against_gold"], with_gold, lambda n, w: n.gold, lambda n, w: w.base_spans)
    assert sorted(quality["physicians_against_gold"]) == ["alice", "bob", "carol"]
    for login, pooled in quality["physicians_against_gold"].items():
        mine = [(n, w) for n, w in each_set() if w.annotator == login and n.gold is not None]
        assert_quality(pooled, mine, lambda n, w: n.gold, lambda n, w: w.spans)


def test_edit_mix_and_edit_events_equal_the_sums_of_the_per_set_functions():
    by_condition, by_annotator, by_label, kinds = (defaultdict(list) for _ in range(4))
    for _, w in each_set():
        kinds[w.condition or "none"].extend(Counter(w.edit_kinds).elements())
        if w.base_spans is not None:
            by_condition[w.condition or "none"].append(edit_mix(w.base_spans, w.spans))
            by_annotator[w.annotator].append(edit_mix(w.base_spans, w.spans))
            for label, mix in edit_mix_by_label(w.base_spans, w.spans).items():
                by_label[label].append(mix)
    mixes = report(60)["edit_mix"]
    assert mixes["by_condition"] == {k: sum_edit_mixes(v) for k, v in by_condition.items()}
    assert mixes["by_annotator"] == {k: sum_edit_mixes(v) for k, v in by_annotator.items()}
    assert mixes["by_label"] == {k: sum_edit_mixes(v) for k, v in by_label.items()}
    assert mixes["events_by_condition"] == {k: edit_event_counts(v) for k, v in kinds.items()}
    # The corpus exercises every outcome, or the sums above would not tell a lost outcome apart.
    assert all(sum_edit_mixes(mixes["by_condition"].values()).values())
    # bob's one pre-label left pending is undecided, and the only one.
    assert mixes["by_annotator"]["bob"]["undecided"] == mixes["by_condition"]["refine_llm"]["undecided"] == 1
    assert mixes["by_label"]["route"]["undecided"] == 1


def independent_work() -> tuple[dict, dict, dict]:
    annotations, relations = defaultdict(dict), defaultdict(dict)
    for note, w in each_set():
        if w.condition != "refine_human":  # later sets of the same annotator replace earlier ones
            annotations[note.document][w.annotator] = w.spans
            relations[note.document][w.annotator] = w.relations
    return annotations, relations, {note.document: note.text for note in NOTES}


def test_agreement_equals_agreement_report_on_the_independent_sets():
    annotations, relations, texts = independent_work()
    assert annotations["n4"]["carol"] == NOTES[3].submitted[3].spans  # her study set, not the import
    pooled = report(60)
    expected = agreement_report(annotations, relations, texts, LABELS, resamples=200, seed=11)
    assert pooled["agreement"] == expected
    assert expected["fleiss_kappa"]["documents"] == 1 and expected["relation_types"] == ["has_dose"]
    assert pooled["documents_by_disagreement"] == documents_by_disagreement(annotations, LABELS)


def test_records_survive_a_json_round_trip():
    stored = json.loads(json.dumps(RECORDS))
    for threshold in (60, math.inf):
        assert report(threshold, stored) == report(threshold)


# Several page sessions, in arrival order; each session's client clock only moves forward.
KINDS = st.sampled_from(["open", "activity", "hidden", "visible", "add"])
MS = st.floats(0, 1e7) | st.integers(0, 3_600_000).map(float)
SESSION = st.lists(st.tuples(KINDS, MS), max_size=12)
# Thresholds near the gaps' sizes, where capping decides, as well as extreme ones.
THRESHOLDS = st.floats(1e-3, 3600) | st.floats(min_value=0, exclude_min=True) | st.just(math.inf)


@given(
    sessions=st.lists(SESSION, min_size=1, max_size=4),
    order=st.randoms(use_true_random=False),
    threshold=THRESHOLDS,
)
def test_active_seconds_from_gaps_equals_total_active_seconds(sessions, order, threshold):
    events = []
    for name, steps in enumerate(sessions):
        times = sorted(t for _, t in steps)
        events.extend(TimeEvent(f"s{name}", kind, t) for (kind, _), t in zip(steps, times, strict=True))
    order.shuffle(events)
    assert active_seconds_from_gaps(visible_gaps(events), threshold) == total_active_seconds(
        events, threshold
    )


def test_pooled_agreement_keeps_one_label_order_across_notes_with_different_labels():
    # Equal-length spans of two labels on one token: the tie goes to the label earlier in the report's
    # order (schema, then others sorted). "aaa" sorts before every schema label, so a note that ordered
    # its own labels alone would give its tokens another category than the pooled report does.
    text = "aspirin 81 mg po daily"
    annotations = {
        "schema_only": {"a": [span("drug", (0, 7)), span("dose", (8, 13))], "b": [span("drug", (0, 13))]},
        "outside": {"a": [span("aaa", (14, 16)), span("route", (14, 16))], "b": [span("route", (14, 22))],
                    "c": [span("zzz", (17, 22)), span("aaa", (17, 22)), span("drug", (0, 7))]},
        "only_outside": {"b": [span("zzz", (0, 7)), span("aaa", (0, 7))], "c": [span("zzz", (0, 7))]},
    }  # fmt: skip
    texts = dict.fromkeys(annotations, text)
    shares = {d: document_agreement(d, by, {}, text, LABELS) for d, by in annotations.items()}
    pooled = pooled_agreement(shares, LABELS, resamples=200, seed=3)
    assert pooled == agreement_report(annotations, {}, texts, LABELS, resamples=200, seed=3)
    order = [*LABELS, "aaa", "zzz"]
    assert pooled["labels"] == order
    # Independently: each token's category from the corpus-wide order, then sklearn's κ and the package's α.
    categories = {
        d: {a: token_categories(text, s, order) for a, s in by.items()} for d, by in annotations.items()
    }
    for pair in pooled["pairs"]:
        a, b = pair["annotators"]
        ya = [c for d in annotations if {a, b} <= set(annotations[d]) for c in categories[d][a]]
        yb = [c for d in annotations if {a, b} <= set(annotations[d]) for c in categories[d][b]]
        assert pair["token_kappa"]["all_tokens"]["value"] == pytest.approx(
            cohen_kappa_score(ya, yb), abs=1e-12
        )
    code = {label: k for k, label in enumerate(["O", *order])}
    units = [[code[categories[d][a][t]] if a in categories[d] else np.nan for a in "abc"]
             for d in annotations for t in range(len(tokenize(text)))]  # fmt: skip
    expected = krippendorff.alpha(
        reliability_data=np.array(units, dtype=float).T, level_of_measurement="nominal"
    )
    assert pooled["krippendorff_alpha"]["value"] == pytest.approx(expected, abs=1e-12)
    # The ties the comment above is about did occur: "po" goes to route, "daily" to aaa.
    assert categories["outside"]["a"][3] == "route" and categories["outside"]["c"][4] == "aaa"
