"""Minutes per condition, savings of the LLM pipeline, and a document's time up to its submission."""

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from app.domain.active_time import TimeEvent
from app.domain.study_time import (
    PUBLISHED_REFERENCE,
    condition_summary,
    document_minutes,
    pipeline_savings,
)


def lognormal_minutes(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """n draws of a lognormal whose expectation is `mean`."""
    return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)


def as_documents(values, prefix: str = "d") -> dict[str, float]:
    return {f"{prefix}{i:03d}": float(v) for i, v in enumerate(values)}


# ---------------------------------------------------------------------------------------------------------
# condition_summary

# (description, minutes, expected n, mean, median, sd)
SUMMARY_CASES = [
    ("no document: every figure undefined", {}, 0, None, None, None),
    ("one document: SD undefined", {"a": 12.0}, 1, 12.0, 12.0, None),
    ("three documents", {"a": 10.0, "b": 20.0, "c": 12.0}, 3, 14.0, 12.0, math.sqrt(28.0)),
    ("even count: median halfway", {"a": 1.0, "b": 2.0, "c": 3.0, "d": 10.0}, 4, 4.0, 2.5, math.sqrt(50 / 3)),
]


@pytest.mark.parametrize(
    ("description", "minutes", "n", "mean", "median", "sd"), SUMMARY_CASES, ids=[c[0] for c in SUMMARY_CASES]
)
def test_condition_summary_figures(description, minutes, n, mean, median, sd):
    summary = condition_summary(minutes)
    assert summary["n"] == n
    assert summary["mean"] == pytest.approx(mean)
    assert summary["median"] == pytest.approx(median)
    assert summary["sd"] == pytest.approx(sd)
    if n >= 2:
        assert summary["sd"] == pytest.approx(np.std(list(minutes.values()), ddof=1))
    if n < 2:
        # No interval from fewer than two documents (one would resample to a zero-width interval).
        assert summary["ci_low"] is None and summary["ci_high"] is None
    assert summary["seed"] == 0 and summary["resamples"] == 2000


def test_condition_summary_ci_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(7)
    values = lognormal_minutes(rng, 17.6, 0.5, 40)
    resamples = 20_000
    ours = condition_summary(as_documents(values), resamples=resamples, seed=3)
    theirs = stats.bootstrap(
        (values,), np.mean, n_resamples=resamples, method="percentile", random_state=np.random.default_rng(11)
    ).confidence_interval
    # Resampling error: the Monte Carlo SD of a 2.5% percentile of R bootstrap means is about
    # SE·sqrt(p(1−p)/R)/φ(z) ≈ 0.03·SE at R = 20,000; the difference of two independent runs ≈ 0.045·SE.
    # 0.2·SE is more than 4 of those SDs, far below the interval's width (≈ 3.9·SE).
    standard_error = statistics.stdev(values) / math.sqrt(len(values))
    assert ours["ci_low"] == pytest.approx(theirs.low, abs=0.2 * standard_error)
    assert ours["ci_high"] == pytest.approx(theirs.high, abs=0.2 * standard_error)
    assert ours["ci_low"] < ours["mean"] < ours["ci_high"]


def test_condition_summary_is_reproducible_and_order_free():
    rng = np.random.default_rng(1)
    minutes = as_documents(lognormal_minutes(rng, 9.1, 0.4, 25))
    first = condition_summary(minutes, seed=5)
    reversed_order = condition_summary(dict(reversed(list(minutes.items()))), seed=5)
    other_seed = condition_summary(minutes, seed=6)
    assert first == reversed_order
    assert (first["ci_low"], first["ci_high"]) != (other_seed["ci_low"], other_seed["ci_high"])
    assert other_seed["seed"] == 6


# ---------------------------------------------------------------------------------------------------------
# pipeline_savings


def test_savings_of_the_published_means_held_constant_per_document():
    documents = [f"d{i}" for i in range(10)]
    result = pipeline_savings(
        dict.fromkeys(documents, 17.6), dict.fromkeys(documents, 9.1), dict.fromkeys(documents, 11.3)
    )
    expected = 1 - 11.3 / (17.6 + 9.1)
    assert result["savings"] == pytest.approx(expected)
    assert result["savings"] == pytest.approx(0.577, abs=0.001)  # the study's "58% less"
    # With no spread every resample gives the same figure.
    assert result["ci_low"] == pytest.approx(expected) and result["ci_high"] == pytest.approx(expected)
    assert result["human_pipeline_mean"] == pytest.approx(26.7)
    assert result["llm_pipeline_mean"] == pytest.approx(11.3)
    assert result["design"] == "paired" and result["paired_documents"] == documents
    differences = [26.7 - 11.3] * 10
    assert result["wilcoxon"]["p_value"] == pytest.approx(stats.wilcoxon(differences).pvalue)
    direct = result["direct"]
    assert direct["difference"] == pytest.approx(17.6 - 11.3)
    assert direct["ratio"] == pytest.approx(11.3 / 17.6)
    assert result["reference"] is PUBLISHED_REFERENCE


def test_published_reference_figures():
    minutes = PUBLISHED_REFERENCE["minutes"]
    assert (minutes["scratch"]["mean"], minutes["scratch"]["ci_low"], minutes["scratch"]["ci_high"]) == (
        17.6,
        15.4,
        19.8,
    )
    assert minutes["refine_human"] == {"mean": 9.1, "ci_low": 8.2, "ci_high": 9.9}
    assert minutes["refine_llm"] == {"mean": 11.3, "ci_low": 8.9, "ci_high": 13.8}
    assert PUBLISHED_REFERENCE["human_pipeline_minutes"] == pytest.approx(17.6 + 9.1)
    assert PUBLISHED_REFERENCE["savings"] == pytest.approx(1 - 11.3 / 26.7, abs=0.005)


def test_pairing_uses_only_documents_of_both_pipelines():
    scratch = {"a": 20.0, "b": 18.0, "c": 15.0, "d": 30.0}
    refine_human = {"a": 10.0, "b": 9.0, "c": 8.0, "e": 7.0}
    refine_llm = {"b": 12.0, "c": 14.0, "f": 1.0}
    result = pipeline_savings(scratch, refine_human, refine_llm)
    # Human pipeline: a, b, c (d lacks refine_human, e lacks scratch). Paired with the LLM pipeline: b, c.
    assert result["design"] == "paired"
    assert result["paired_documents"] == ["b", "c"]
    assert result["excluded_documents"] == {"human": ["a"], "llm": ["f"]}
    assert result["incomplete_human_documents"] == ["d", "e"]
    assert result["n_human"] == result["n_llm"] == 2
    assert result["human_pipeline_mean"] == pytest.approx((27 + 23) / 2)
    assert result["llm_pipeline_mean"] == pytest.approx((12 + 14) / 2)
    assert result["savings"] == pytest.approx(1 - 13 / 25)
    # The test sees the paired differences only: a and f, unpaired, are not part of it.
    assert result["wilcoxon"]["n"] == 2
    expected = stats.wilcoxon([27.0 - 12.0, 23.0 - 14.0])
    assert result["wilcoxon"]["p_value"] == pytest.approx(expected.pvalue)
    assert result["wilcoxon"]["statistic"] == pytest.approx(expected.statistic)
    # Direct comparison pairs scratch with refine_llm: b and c again, d and a excluded.
    direct = result["direct"]
    assert direct["paired_documents"] == ["b", "c"]
    assert direct["excluded_documents"] == {"scratch": ["a", "d"], "refine_llm": ["f"]}
    assert direct["difference"] == pytest.approx((18 + 15) / 2 - 13)
    assert direct["wilcoxon"]["p_value"] == pytest.approx(stats.wilcoxon([18.0 - 12.0, 15.0 - 14.0]).pvalue)


def test_paired_ci_agrees_with_scipy_paired_bootstrap():
    rng = np.random.default_rng(21)
    n = 40
    difficulty = lognormal_minutes(rng, 1.0, 0.3, n)
    scratch = difficulty * lognormal_minutes(rng, 17.6, 0.3, n)
    refine_human = difficulty * lognormal_minutes(rng, 9.1, 0.3, n)
    refine_llm = difficulty * lognormal_minutes(rng, 11.3, 0.5, n)
    resamples = 20_000
    ours = pipeline_savings(
        as_documents(scratch),
        as_documents(refine_human),
        as_documents(refine_llm),
        resamples=resamples,
        seed=2,
    )
    human = scratch + refine_human
    theirs = stats.bootstrap(
        (human, refine_llm),
        lambda h, m, axis=-1: 1 - np.mean(m, axis=axis) / np.mean(h, axis=axis),
        paired=True,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(5),
    )
    # Tolerance 0.2 of the bootstrap SE: over 4 Monte Carlo SDs of the difference of two runs (see above).
    tolerance = 0.2 * theirs.standard_error
    assert ours["design"] == "paired"
    assert ours["savings"] == pytest.approx(1 - refine_llm.mean() / human.mean())
    assert ours["ci_low"] == pytest.approx(theirs.confidence_interval.low, abs=tolerance)
    assert ours["ci_high"] == pytest.approx(theirs.confidence_interval.high, abs=tolerance)
    assert ours["wilcoxon"]["p_value"] == pytest.approx(stats.wilcoxon(human - refine_llm).pvalue)


def test_independent_design_when_no_document_went_through_both_pipelines():
    rng = np.random.default_rng(4)
    scratch = lognormal_minutes(rng, 17.6, 0.4, 30)
    refine_human = lognormal_minutes(rng, 9.1, 0.4, 30)
    refine_llm = lognormal_minutes(rng, 11.3, 0.5, 35)
    resamples = 20_000
    ours = pipeline_savings(
        as_documents(scratch, "h"),
        as_documents(refine_human, "h"),
        as_documents(refine_llm, "m"),
        resamples=resamples,
        seed=8,
    )
    human = scratch + refine_human
    theirs = stats.bootstrap(
        (human, refine_llm),
        lambda h, m, axis=-1: 1 - np.mean(m, axis=axis) / np.mean(h, axis=axis),
        paired=False,
        n_resamples=resamples,
        method="percentile",
        random_state=np.random.default_rng(9),
    )
    assert ours["design"] == "independent" and ours["paired_documents"] == []
    assert ours["wilcoxon"] is None and ours["direct"]["wilcoxon"] is None
    assert ours["n_human"] == 30 and ours["n_llm"] == 35
    assert ours["savings"] == pytest.approx(1 - refine_llm.mean() / human.mean())
    tolerance = 0.2 * theirs.standard_error
    assert ours["ci_low"] == pytest.approx(theirs.confidence_interval.low, abs=tolerance)
    assert ours["ci_high"] == pytest.approx(theirs.confidence_interval.high, abs=tolerance)
    assert ours["direct"]["ratio"] == pytest.approx(refine_llm.mean() / scratch.mean())


# (description, scratch, refine_human, refine_llm, expected savings)
UNDEFINED_CASES = [
    ("no document at all", {}, {}, {}, None),
    ("no LLM pipeline document", {"a": 10.0}, {"a": 5.0}, {}, None),
    ("no complete human pipeline document", {"a": 10.0}, {"b": 5.0}, {"a": 4.0}, None),
    ("human pipeline of zero minutes", {"a": 0.0}, {"a": 0.0}, {"a": 4.0}, None),
    ("an LLM pipeline of zero minutes saves everything", {"a": 10.0}, {"a": 5.0}, {"a": 0.0}, 1.0),
]


@pytest.mark.parametrize(
    ("description", "scratch", "refine_human", "refine_llm", "expected"),
    UNDEFINED_CASES,
    ids=[c[0] for c in UNDEFINED_CASES],
)
def test_savings_undefined_when_a_mean_is_missing_or_zero(
    description, scratch, refine_human, refine_llm, expected
):
    result = pipeline_savings(scratch, refine_human, refine_llm, resamples=200)
    assert result["savings"] == expected
    if expected is None:
        assert result["ci_low"] is None and result["ci_high"] is None


def test_wilcoxon_undefined_when_every_paired_difference_is_zero():
    result = pipeline_savings({"a": 10.0, "b": 8.0}, {"a": 2.0, "b": 2.0}, {"a": 12.0, "b": 10.0})
    assert result["design"] == "paired"
    assert result["savings"] == pytest.approx(0.0)
    assert result["wilcoxon"] is None


def test_savings_is_reproducible_with_a_seed():
    rng = np.random.default_rng(3)
    scratch, human, llm = (as_documents(lognormal_minutes(rng, m, 0.4, 20)) for m in (17.6, 9.1, 11.3))
    assert pipeline_savings(scratch, human, llm, seed=1) == pipeline_savings(scratch, human, llm, seed=1)
    assert (
        pipeline_savings(scratch, human, llm, seed=1)["ci_low"]
        != pipeline_savings(scratch, human, llm, seed=2)["ci_low"]
    )


def test_savings_ci_covers_the_true_savings_of_a_known_time_model():
    # Physicians' minutes per document: a document difficulty shared by the three conditions (so the
    # pairs are correlated, as in the study) times condition noise; every factor lognormal with mean 1
    # except the condition means 17.6 / 9.1 / 11.3. Then E[human] = 26.7 and E[LLM] = 11.3 exactly.
    true_savings = 1 - 11.3 / (17.6 + 9.1)
    documents, seeds = 40, 100
    covered = 0
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        difficulty = lognormal_minutes(rng, 1.0, 0.35, documents)
        scratch = difficulty * lognormal_minutes(rng, 17.6, 0.3, documents)
        refine_human = difficulty * lognormal_minutes(rng, 9.1, 0.3, documents)
        refine_llm = difficulty * lognormal_minutes(rng, 11.3, 0.5, documents)
        # 1,000 resamples instead of 2,000 keep the 100 runs fast; coverage does not depend on it.
        result = pipeline_savings(
            as_documents(scratch),
            as_documents(refine_human),
            as_documents(refine_llm),
            resamples=1000,
            seed=seed,
        )
        covered += result["ci_low"] <= true_savings <= result["ci_high"]
    assert covered >= 90


# ---------------------------------------------------------------------------------------------------------
# document_minutes

# An event compactly: (page session, kind, client seconds since page load, log position).
Compact = tuple[str, str, float, int]


def events_of(compact: list[Compact]) -> list[TimeEvent]:
    return [
        TimeEvent(page_session, kind, seconds * 1000, seq) for page_session, kind, seconds, seq in compact
    ]


# (description, events, expected active seconds, or None when the set is left out); idle threshold 60 s.
MINUTES_CASES: list[tuple[str, list[Compact], float | None]] = [
    (
        "one session: the close after the submit does not count",
        [("p", "open", 0, 1), ("p", "add", 30, 2), ("p", "submit", 50, 3), ("p", "close", 95, 4)],
        50,
    ),
    (
        "activity stamped before the submit but logged after it counts (it splits an idle gap)",
        [("p", "open", 0, 1), ("p", "submit", 100, 3), ("p", "activity", 60, 4), ("p", "close", 130, 5)],
        60 + 40,
    ),
    (
        "an earlier page session counts in full",
        [
            ("p1", "open", 0, 1),
            ("p1", "add", 20, 2),
            ("p1", "close", 30, 3),
            ("p2", "open", 0, 4),
            ("p2", "submit", 15, 5),
        ],
        30 + 15,
    ),
    (
        "another tab's events logged after the submit do not count",
        [
            ("p1", "open", 0, 1),
            ("p2", "open", 0, 2),
            ("p1", "activity", 10, 3),
            ("p2", "submit", 20, 4),
            ("p1", "activity", 20, 5),
            ("p1", "close", 25, 6),
        ],
        10 + 20,
    ),
    (
        "the idle threshold caps gaps before the submit",
        [("p", "open", 0, 1), ("p", "activity", 200, 2), ("p", "submit", 210, 3)],
        60 + 10,
    ),
    (
        "submitted again after reopening: the last submit counts",
        [("p", "open", 0, 1), ("p", "submit", 10, 2), ("p", "modify", 20, 3), ("p", "submit", 30, 4)],
        30,
    ),
    ("never submitted: left out", [("p", "open", 0, 1), ("p", "add", 30, 2)], None),
]


@pytest.mark.parametrize(
    ("description", "events", "expected"), MINUTES_CASES, ids=[c[0] for c in MINUTES_CASES]
)
def test_document_minutes_up_to_submission(description, events, expected):
    minutes = document_minutes({"set": events_of(events)}, 60)
    if expected is None:
        assert minutes == {}
    else:
        assert minutes == {"set": pytest.approx(expected / 60)}


def test_document_minutes_with_a_submit_position_given():
    # The submit request carried no client time, so the service passes its log position (edit-event id).
    events = events_of([("p", "open", 0, 1), ("p", "add", 40, 2), ("p", "close", 100, 9)])
    assert document_minutes({"set": events}, 60, submitted_at={"set": 5}) == {"set": pytest.approx(40 / 60)}
    # None means not submitted, even when a submit event is in the log.
    submitted = events_of([("p", "open", 0, 1), ("p", "submit", 40, 2)])
    assert document_minutes({"set": submitted}, 60, submitted_at={"set": None}) == {}


def test_document_minutes_recomputes_with_another_threshold_and_keeps_sets_apart():
    events = {
        "a": events_of([("p", "open", 0, 1), ("p", "activity", 100, 2), ("p", "submit", 110, 3)]),
        "b": events_of([("q", "open", 0, 4), ("q", "submit", 30, 5)]),
    }
    assert document_minutes(events, 60) == {"a": pytest.approx(70 / 60), "b": pytest.approx(30 / 60)}
    assert document_minutes(events, 20) == {"a": pytest.approx(30 / 60), "b": pytest.approx(20 / 60)}
