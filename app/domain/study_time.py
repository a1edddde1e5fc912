"""Minutes per document per condition and the savings of the LLM pipeline (metrics.md "Time")."""

from collections.abc import Callable, Hashable, Iterable, Mapping
from statistics import fmean, median, stdev
from typing import Any, TypeVar

import numpy as np
from scipy import stats

from app.domain.active_time import TimeEvent, active_seconds_from_gaps, visible_gaps
from app.domain.vocabulary import EditKind

SetKey = TypeVar("SetKey", bound=Hashable)

RESAMPLES = 2000
CONFIDENCE = 0.95

# The published study (216 discharge summaries, medication extraction), shown beside our figures.
PUBLISHED_REFERENCE: dict[str, Any] = {
    "documents": 216,
    "task": "medication extraction from discharge summaries",
    "minutes": {
        "scratch": {"mean": 17.6, "ci_low": 15.4, "ci_high": 19.8},
        "refine_human": {"mean": 9.1, "ci_low": 8.2, "ci_high": 9.9},
        "refine_llm": {"mean": 11.3, "ci_low": 8.9, "ci_high": 13.8},
    },
    "human_pipeline_minutes": 26.7,
    "llm_pipeline_minutes": 11.3,
    "savings": 0.58,
    # Regression of time on edits: minutes per edit of each kind.
    "minutes_per_edit": {"modification": 0.35, "addition": 0.29, "deletion": 0.0},
}


def _generator(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _percentile_interval(estimates: np.ndarray) -> tuple[float | None, float | None]:
    """The central CONFIDENCE interval of bootstrap estimates, leaving out resamples where it is undefined."""
    finite = estimates[np.isfinite(estimates)]
    if finite.size == 0:
        return None, None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def condition_summary(
    minutes_by_document: Mapping[str, float], *, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """n, mean, median, SD and the percentile-bootstrap 95% CI of the mean minutes of one condition."""
    # Sorting by document makes the resamples, and so the CI, independent of the mapping's order.
    documents = sorted(minutes_by_document)
    values = [float(minutes_by_document[d]) for d in documents]
    n = len(values)
    summary: dict[str, Any] = {
        "n": n,
        "mean": fmean(values) if n else None,
        "median": median(values) if n else None,
        "sd": stdev(values) if n >= 2 else None,  # sample SD (ddof=1), undefined for one document
        "ci_low": None,
        "ci_high": None,
        "confidence": CONFIDENCE,
        "resamples": resamples,
        "seed": seed,
    }
    # One document resamples to itself: a zero-width interval would claim a certainty there is not.
    if n >= 2:
        sample = np.asarray(values)
        indices = _generator(seed).integers(0, n, size=(resamples, n))
        summary["ci_low"], summary["ci_high"] = _percentile_interval(sample[indices].mean(axis=1))
    return summary


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, NaN (undefined) where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / np.where(denominator != 0, denominator, 1), np.nan)


def _wilcoxon(differences: list[float]) -> dict[str, Any] | None:
    """Wilcoxon signed-rank test on paired differences; None when no difference is non-zero."""
    # scipy drops zero differences (zero_method="wilcox"); with none left the test is undefined.
    if not any(d != 0 for d in differences):
        return None
    result = stats.wilcoxon(differences)
    return {
        "statistic": float(result.statistic),
        "p_value": float(result.pvalue),
        "n": len(differences),
        "n_nonzero": sum(1 for d in differences if d != 0),
    }


def _compare(
    first: Mapping[str, float],
    second: Mapping[str, float],
    statistics: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
    *,
    resamples: int,
    seed: int,
) -> dict[str, Any]:
    """Figures of two samples of per-document minutes, bootstrapped paired when documents are shared.

    Each statistic takes arrays of resampled means (first, second) and returns the figure per resample.
    """
    paired = sorted(set(first) & set(second))
    result: dict[str, Any] = {
        "design": "paired" if paired else "independent",
        "paired_documents": paired,
        # In the paired design the documents of one pipeline only are left out of every figure, so that
        # the estimate and its interval describe the same documents.
        "excluded_documents": {
            "first": sorted(set(first) - set(second)) if paired else [],
            "second": sorted(set(second) - set(first)) if paired else [],
        },
        "resamples": resamples,
        "seed": seed,
        "confidence": CONFIDENCE,
        "wilcoxon": None,
    }
    if paired:
        first_docs = second_docs = paired
    else:
        first_docs, second_docs = sorted(first), sorted(second)
    a = np.asarray([float(first[d]) for d in first_docs])
    b = np.asarray([float(second[d]) for d in second_docs])
    result["n_first"], result["n_second"] = a.size, b.size
    result["mean_first"] = float(a.mean()) if a.size else None
    result["mean_second"] = float(b.mean()) if b.size else None

    rng = _generator(seed)
    if a.size and b.size:
        if paired:
            # One index array for both sides keeps each document's two costs together.
            indices = rng.integers(0, a.size, size=(resamples, a.size))
            boot_a, boot_b = a[indices].mean(axis=1), b[indices].mean(axis=1)
        else:
            boot_a = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
            boot_b = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    for name, statistic in statistics.items():
        if not (a.size and b.size):
            result[name], result[f"{name}_ci_low"], result[f"{name}_ci_high"] = None, None, None
            continue
        estimate = float(statistic(np.asarray([a.mean()]), np.asarray([b.mean()]))[0])
        result[name] = estimate if np.isfinite(estimate) else None
        low, high = (
            _percentile_interval(statistic(boot_a, boot_b)) if result[name] is not None else (None, None)
        )
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = low, high
    if paired:
        result["wilcoxon"] = _wilcoxon([float(x - y) for x, y in zip(a, b, strict=True)])
    return result


def pipeline_savings(
    scratch: Mapping[str, float],
    refine_human: Mapping[str, float],
    refine_llm: Mapping[str, float],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Savings 1 − mean(LLM pipeline)/mean(human pipeline) with a bootstrap CI, and scratch vs refine_llm."""
    # The human pipeline costs both steps, so only documents with both a scratch and a refine_human time.
    human = {d: float(scratch[d]) + float(refine_human[d]) for d in sorted(set(scratch) & set(refine_human))}
    llm = {d: float(refine_llm[d]) for d in refine_llm}
    savings = _compare(human, llm, {"savings": lambda h, m: 1 - _ratio(m, h)}, resamples=resamples, seed=seed)
    direct = _compare(
        {d: float(v) for d, v in scratch.items()},
        llm,
        {"difference": lambda s, m: s - m, "ratio": lambda s, m: _ratio(m, s)},
        resamples=resamples,
        seed=seed,
    )
    return {
        "design": savings["design"],
        "paired_documents": savings["paired_documents"],
        "excluded_documents": {
            "human": savings["excluded_documents"]["first"],
            "llm": savings["excluded_documents"]["second"],
        },
        # Documents with only one of scratch and refine_human have no human pipeline cost.
        "incomplete_human_documents": sorted(set(scratch) ^ set(refine_human)),
        "human_pipeline_mean": savings["mean_first"],
        "llm_pipeline_mean": savings["mean_second"],
        "n_human": savings["n_first"],
        "n_llm": savings["n_second"],
        "savings": savings["savings"],
        "ci_low": savings["savings_ci_low"],
        "ci_high": savings["savings_ci_high"],
        # Differences are human pipeline − LLM pipeline per paired document.
        "wilcoxon": savings["wilcoxon"],
        "direct": {
            "design": direct["design"],
            "paired_documents": direct["paired_documents"],
            "excluded_documents": {
                "scratch": direct["excluded_documents"]["first"],
                "refine_llm": direct["excluded_documents"]["second"],
            },
            "scratch_mean": direct["mean_first"],
            "refine_llm_mean": direct["mean_second"],
            "n_scratch": direct["n_first"],
            "n_refine_llm": direct["n_second"],
            # scratch − refine_llm minutes, and refine_llm / scratch.
            "difference": direct["difference"],
            "difference_ci_low": direct["difference_ci_low"],
            "difference_ci_high": direct["difference_ci_high"],
            "ratio": direct["ratio"],
            "ratio_ci_low": direct["ratio_ci_low"],
            "ratio_ci_high": direct["ratio_ci_high"],
            "wilcoxon": direct["wilcoxon"],
        },
        "resamples": resamples,
        "seed": seed,
        "confidence": CONFIDENCE,
        "reference": PUBLISHED_REFERENCE,
    }


def _up_to_submission(events: list[TimeEvent], submit_seq: int) -> list[TimeEvent]:
    """The events of a set that happened up to its submission (see document_minutes)."""
    submit = next((e for e in events if e.seq == submit_seq and e.kind == EditKind.submit), None)
    kept = []
    for event in events:
        if submit is not None and event.page_session == submit.page_session:
            # Within the page that submitted, the client's clock orders events exactly, so activity sent
            # in a batch after the submit request but stamped before it still counts.
            if event.monotonic_ms <= submit.monotonic_ms:
                kept.append(event)
        elif event.seq <= submit_seq:
            # Other page sessions have unrelated client clocks; the log's order (the server's) decides.
            kept.append(event)
    return kept


def document_minutes(
    events_by_set: Mapping[SetKey, Iterable[TimeEvent]],
    idle_threshold_seconds: float,
    *,
    submitted_at: Mapping[SetKey, int | None] | None = None,
) -> dict[SetKey, float]:
    """Active minutes of each submitted annotation set, over all its page sessions up to its submission.

    "Up to submission" uses the log position of the set's submit event (TimeEvent.seq, the edit-event id,
    which the server assigns in arrival order): in the page session that submitted, events whose client
    monotonic time is <= the submit's; in every other page session, events logged no later than the
    submit. `submitted_at` gives that position per set (needed when the submit event carried no client
    time and so is not among the events); without it, the last submit event among the set's events is
    used. Sets with no submission are left out: their time is not a document's time yet.
    """
    minutes: dict[SetKey, float] = {}
    for set_key, set_events in events_by_set.items():
        events = list(set_events)
        if submitted_at is not None and set_key in submitted_at:
            submit_seq = submitted_at[set_key]
        else:
            submits = [e.seq for e in events if e.kind == EditKind.submit]
            submit_seq = max(submits) if submits else None
        gaps = submission_gaps(events, submit_seq)
        if gaps is not None:
            minutes[set_key] = minutes_from_gaps(gaps, idle_threshold_seconds)
    return minutes


def submission_gaps(events: list[TimeEvent], submit_seq: int | None) -> list[list[float]] | None:
    """The visible gaps (active_time.visible_gaps) of one set's events up to its submission at log
    position submit_seq (see document_minutes); None for a set not submitted."""
    if submit_seq is None:
        return None
    return visible_gaps(_up_to_submission(events, submit_seq))


def minutes_from_gaps(gaps: Iterable[list[float]], idle_threshold_seconds: float) -> float:
    """Active minutes of a set from its submission_gaps, at the given idle threshold."""
    return active_seconds_from_gaps(gaps, idle_threshold_seconds) / 60
