"""Agreement between annotators, as metrics.md "Agreement between annotators" defines it.

Choices the design leaves open, made here once:

- A document counts for a pair (or for Fleiss/α) when the annotators appear under it in ``annotations``; an
  annotator present with no spans submitted an empty set. Relations use the same submitted documents (an
  annotator with no relations there submitted none).
- Labels are reported in schema order, then labels seen only in the data (sorted); a token's category tie
  between spans of equal length goes to the label earlier in that order.
- The "longest" span covering a token is the one covering the most characters (the union of its fragments,
  so a discontinuous span counts its fragments, not the gap between them).
- Pooled figures sum per-document counts: F1 = 2·Σa / Σ(|A|+|B|); κ from the summed confusion table; Fleiss
  from the pooled tokens of all its documents; α from the summed coincidence matrix.
- Fleiss' κ takes the documents with exactly m annotators; by default m is the most common annotator count
  >= 3 (ties: the larger m). Its items are tokens; different documents may have different annotators.
- Krippendorff's α treats each token of a document as a unit coded by the annotators who submitted it; a
  unit with one coder is not pairable and drops out. α is None when fewer than two categories occur.
- κ, Fleiss' κ and α are None where the chance term makes them 0/0 (expected agreement 1, no items).
- Bootstrap: resample r draws ``Generator(PCG64(seed)).integers(0, n, size=n)`` (one call per resample, in
  order) over the documents of the figure, recomputes the pooled figure, skips resamples where it is
  undefined, and takes linear-interpolated percentiles (as numpy and scipy's percentile method do). Pair
  figures resample that pair's documents; means over pairs resample every document with >= 2 annotators.
- Means over pairs are the mean of the pairs' defined figures (None if none is defined).
"""

import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from statistics import fmean

import numpy as np

from app.domain.evaluation import RelationData, match_relations, match_spans, span_overlap
from app.domain.events import AnnotatorEvents, matched_events
from app.domain.spans import SpanData
from app.domain.tokens import TOKEN_PATTERN, tokenize

OUTSIDE = "O"
RULES = ("strict", "lenient")

ALL_TOKENS_NOTE = "over all tokens: inflated by the many tokens both annotators left O"
LABELLED_TOKENS_NOTE = "over tokens at least one of the two labelled: a lower bound"

Annotations = Mapping[str, Mapping[str, Sequence[SpanData]]]
Relations = Mapping[str, Mapping[str, Sequence[RelationData]]]


# ---------------------------------------------------------------------------------------------------------
# Counts and results


@dataclass(frozen=True)
class AgreementCounts:
    """Matched pairs and the sizes of the two annotators' sets, summed over documents."""

    matched: int
    size_a: int
    size_b: int

    def __add__(self, other: "AgreementCounts") -> "AgreementCounts":
        return AgreementCounts(
            self.matched + other.matched, self.size_a + other.size_a, self.size_b + other.size_b
        )

    @property
    def f1(self) -> float | None:
        """2·a / (|A| + |B|), the positive specific agreement; None when both sets are empty."""
        total = self.size_a + self.size_b
        return 2 * self.matched / total if total else None


_NO_COUNTS = AgreementCounts(0, 0, 0)


@dataclass(frozen=True)
class PairAgreement:
    """Span (or relation) agreement of two annotators under one rule, per label and over all labels."""

    annotators: tuple[str, str]
    rule: str
    documents: int
    per_label: dict[str, AgreementCounts]
    overall: AgreementCounts


# ---------------------------------------------------------------------------------------------------------
# Shared helpers


def _label_order(labels: Sequence[str], seen: Iterable[str]) -> list[str]:
    ordered = list(dict.fromkeys(labels))
    return ordered + sorted(set(seen) - set(ordered))


def _labels_in(annotations: Annotations) -> set[str]:
    return {
        span.label
        for by_annotator in annotations.values()
        for spans in by_annotator.values()
        for span in spans
    }


def _both_submitted(annotations: Mapping[str, Mapping[str, object]], a: str, b: str) -> list[str]:
    return [
        document for document, by_annotator in annotations.items() if a in by_annotator and b in by_annotator
    ]


def _chosen(available: Sequence[str], documents: Sequence[str] | None) -> list[str]:
    """The documents to pool: all available ones, or the given ones (repeats count again) among them."""
    if documents is None:
        return list(available)
    allowed = set(available)
    return [document for document in documents if document in allowed]


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be 'strict' or 'lenient', got {rule!r}")


def _mean_defined(values: Iterable[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return fmean(defined) if defined else None


# ---------------------------------------------------------------------------------------------------------
# Span agreement


@dataclass(frozen=True)
class _SpanSummary:
    """What matching needs of one annotator's spans on one document, computed once for all of its pairs."""

    sizes: dict[str, int]  # label -> number of spans
    strict_keys: dict[tuple, int]  # (label, start, end) or (label, fragment ranges) -> number of spans
    extents: dict[str, list[tuple[int, int, SpanData]]]  # label -> (first start, last end, span), by start


def _summarise_spans(spans: Sequence[SpanData]) -> _SpanSummary:
    sizes: dict[str, int] = {}
    strict_keys: dict[tuple, int] = {}
    extents: dict[str, list[tuple[int, int, SpanData]]] = {}
    for span in spans:
        label, fragments = span.label, span.fragments
        sizes[label] = sizes.get(label, 0) + 1
        if len(fragments) == 1:
            start, end = fragments[0].start, fragments[0].end
            key: tuple = (label, start, end)
        else:
            # Fragment *sets* are compared, as evaluation.match_spans does: listing order does not matter.
            ranges = frozenset((fragment.start, fragment.end) for fragment in fragments)
            key = (label, *next(iter(ranges))) if len(ranges) == 1 else (label, ranges)
            start, end = min(r[0] for r in ranges), max(r[1] for r in ranges)
        strict_keys[key] = strict_keys.get(key, 0) + 1
        if label in extents:
            extents[label].append((start, end, span))
        else:
            extents[label] = [(start, end, span)]
    for items in extents.values():
        items.sort(key=lambda item: item[0])
    return _SpanSummary(sizes, strict_keys, extents)


def _strict_matched(a: _SpanSummary, b: _SpanSummary) -> Counter:
    # Strict candidates are classes of equal (label, fragment set); a one-to-one matching pairs min(count)
    # of each class, exactly as evaluation.match_spans(rule="strict") does.
    matched: Counter = Counter()
    for key, count in a.strict_keys.items():
        other = b.strict_keys.get(key)
        if other:
            matched[key[0]] += min(count, other)
    return matched


def _lenient_matched(a: _SpanSummary, b: _SpanSummary) -> Counter:
    """Per label, the size of a maximum one-to-one lenient matching (as evaluation.match_spans finds)."""
    # Spans whose extents do not overlap share no character, so a maximum matching is the sum of maximum
    # matchings within runs of overlapping extents; most runs hold one span from each side, and only the
    # others go to match_spans (whose lenient rule compares every pair of the run).
    matched: Counter = Counter()
    for label, items_a in a.extents.items():
        items_b = b.extents.get(label)
        if not items_b:
            continue
        merged = sorted(
            [(start, end, 0, span) for start, end, span in items_a]
            + [(start, end, 1, span) for start, end, span in items_b],
            key=lambda item: item[0],
        )
        total, reach = 0, -1
        run_a: list[SpanData] = []
        run_b: list[SpanData] = []
        for start, end, side, span in merged:
            if start >= reach:
                if run_a and run_b:
                    total += _run_matched(run_a, run_b)
                run_a, run_b = [], []
            (run_b if side else run_a).append(span)
            reach = max(reach, end)
        if run_a and run_b:
            total += _run_matched(run_a, run_b)
        if total:
            matched[label] = total
    return matched


def _run_matched(run_a: list[SpanData], run_b: list[SpanData]) -> int:
    if len(run_a) == 1 and len(run_b) == 1:
        if len(run_a[0].fragments) == 1 and len(run_b[0].fragments) == 1:
            return 1  # two contiguous spans in one run of overlapping extents share a character
        return 1 if span_overlap(run_a[0], run_b[0]) else 0
    return len(match_spans(run_a, run_b, rule="lenient"))


def _span_document_counts(a: _SpanSummary, b: _SpanSummary, rule: str) -> dict[str, AgreementCounts]:
    """Per label: matched pairs, |A| and |B| of one document."""
    matched = _strict_matched(a, b) if rule == "strict" else _lenient_matched(a, b)
    return {
        label: AgreementCounts(matched.get(label, 0), a.sizes.get(label, 0), b.sizes.get(label, 0))
        for label in a.sizes.keys() | b.sizes.keys()
    }


def pairwise_span_agreement(
    annotations: Annotations,
    a: str,
    b: str,
    *,
    rule: str,
    labels: Sequence[str],
    documents: Sequence[str] | None = None,
) -> PairAgreement:
    """Span F1 of annotators a and b over the documents both submitted (or the given ones among them)."""
    _check_rule(rule)
    chosen = _chosen(_both_submitted(annotations, a, b), documents)
    totals: dict[str, AgreementCounts] = defaultdict(lambda: _NO_COUNTS)
    for document in chosen:
        by_annotator = annotations[document]
        summary_a, summary_b = _summarise_spans(by_annotator[a]), _summarise_spans(by_annotator[b])
        for label, counts in _span_document_counts(summary_a, summary_b, rule).items():
            totals[label] = totals[label] + counts
    per_label = {label: totals.get(label, _NO_COUNTS) for label in _label_order(labels, totals)}
    return PairAgreement(
        annotators=(a, b),
        rule=rule,
        documents=len(chosen),
        per_label=per_label,
        overall=sum(per_label.values(), _NO_COUNTS),
    )


# ---------------------------------------------------------------------------------------------------------
# Relation agreement


def _relation_document_counts(
    relations_a: Sequence[RelationData], relations_b: Sequence[RelationData], rule: str
) -> dict[str, AgreementCounts]:
    """Per relation type: matched pairs, |A| and |B| of one document."""
    # Relations can only match within one (type, head label, tail label), so each group is matched alone.
    groups: dict[tuple[str, str, str], tuple[list[RelationData], list[RelationData]]] = defaultdict(
        lambda: ([], [])
    )
    for side, relations in ((0, relations_a), (1, relations_b)):
        for relation in relations:
            groups[(relation.type, relation.head.label, relation.tail.label)][side].append(relation)
    counts: dict[str, AgreementCounts] = defaultdict(lambda: _NO_COUNTS)
    for (relation_type, _, _), (group_a, group_b) in groups.items():
        matched = len(match_relations(group_a, group_b, rule=rule)) if group_a and group_b else 0
        counts[relation_type] = counts[relation_type] + AgreementCounts(matched, len(group_a), len(group_b))
    return counts


def pairwise_relation_agreement(
    relations: Relations,
    a: str,
    b: str,
    *,
    rule: str,
    types: Sequence[str] = (),
    documents: Sequence[str] | None = None,
) -> PairAgreement:
    """Relation F1 of annotators a and b: equal types, both arguments matching under `rule`, one-to-one.

    Without `documents`, pools the documents under which both appear in `relations`; otherwise those given
    (repeats count again), an annotator missing there having submitted no relation.
    """
    _check_rule(rule)
    chosen = _both_submitted(relations, a, b) if documents is None else list(documents)
    totals: dict[str, AgreementCounts] = defaultdict(lambda: _NO_COUNTS)
    for document in chosen:
        by_annotator = relations.get(document, {})
        counts = _relation_document_counts(by_annotator.get(a, ()), by_annotator.get(b, ()), rule)
        for relation_type, type_counts in counts.items():
            totals[relation_type] = totals[relation_type] + type_counts
    per_type = {label: totals.get(label, _NO_COUNTS) for label in _label_order(types, totals)}
    return PairAgreement(
        annotators=(a, b),
        rule=rule,
        documents=len(chosen),
        per_label=per_type,
        overall=sum(per_type.values(), _NO_COUNTS),
    )


# ---------------------------------------------------------------------------------------------------------
# Token categories


def _token_bounds(text: str) -> tuple[np.ndarray, np.ndarray]:
    # The pattern of tokens.tokenize, without building a Token per token (long notes, many documents).
    bounds = np.array([match.span() for match in TOKEN_PATTERN.finditer(text)], dtype=np.int64).reshape(-1, 2)
    return bounds[:, 0], bounds[:, 1]


def _covered_characters(span: SpanData) -> int:
    if len(span.fragments) == 1:
        return span.fragments[0].end - span.fragments[0].start
    covered, reach = 0, -1
    for fragment in sorted(span.fragments):
        if fragment.end > reach:
            covered += fragment.end - max(fragment.start, reach)
            reach = fragment.end
    return covered


def _category_codes(
    starts: np.ndarray,
    ends: np.ndarray,
    text_length: int,
    spans: Sequence[SpanData],
    code_of: Mapping[str, int],
) -> np.ndarray:
    """Per token, the code (1 + position in label order) of the winning span's label, 0 for O."""
    codes = np.zeros(len(starts), dtype=np.int64)
    if not spans:
        return codes
    # Paint the spans from the weakest to the strongest claim, so that each token keeps the strongest:
    # the longest span, and among equally long ones the label earliest in the schema.
    ranked = sorted(spans, key=lambda span: (_covered_characters(span), -code_of[span.label]))
    fragment_starts, fragment_ends, fragment_codes = [], [], []
    for span in ranked:
        code = code_of[span.label]
        for fragment in span.fragments:
            if fragment.end > text_length:
                raise ValueError(
                    f"fragment [{fragment.start}, {fragment.end}) runs past the text's end ({text_length})"
                )
            fragment_starts.append(fragment.start)
            fragment_ends.append(fragment.end)
            fragment_codes.append(code)
    # Tokens sharing a character with [start, end): their end lies beyond start and their start before end.
    firsts = np.searchsorted(ends, fragment_starts, side="right").tolist()
    stops = np.searchsorted(starts, fragment_ends, side="left").tolist()
    for first, stop, code in zip(firsts, stops, fragment_codes, strict=True):
        if first < stop:
            codes[first:stop] = code
    return codes


def _codes(label_order: Sequence[str]) -> dict[str, int]:
    return {label: position + 1 for position, label in enumerate(label_order)}


def token_categories(text: str, spans: Sequence[SpanData], labels: Sequence[str]) -> list[str]:
    """Per token of the text, the label of the longest span covering one of its characters (ties by schema
    order), else "O"."""
    order = _label_order(labels, (span.label for span in spans))
    tokens = tokenize(text)
    starts = np.array([token.start for token in tokens], dtype=np.int64)
    ends = np.array([token.end for token in tokens], dtype=np.int64)
    categories = [OUTSIDE, *order]
    return [categories[code] for code in _category_codes(starts, ends, len(text), spans, _codes(order))]


class _TokenCodes:
    """Category codes of each (document, annotator), computed once and shared by κ, Fleiss and α."""

    def __init__(self, annotations: Annotations, texts: Mapping[str, str], label_order: Sequence[str]):
        self.annotations = annotations
        self.texts = texts
        self.code_of = _codes(label_order)
        self.categories = len(label_order) + 1
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def of(self, document: str) -> dict[str, np.ndarray]:
        cached = self._cache.get(document)
        if cached is None:
            if document not in self.texts:
                raise ValueError(f"token-level agreement needs the text of document {document!r}")
            text = self.texts[document]
            starts, ends = _token_bounds(text)
            try:
                cached = {
                    annotator: _category_codes(starts, ends, len(text), spans, self.code_of)
                    for annotator, spans in self.annotations[document].items()
                }
            except ValueError as error:
                raise ValueError(f"document {document!r}: {error}") from None
            self._cache[document] = cached
        return cached


# ---------------------------------------------------------------------------------------------------------
# Chance-corrected figures from summed per-document statistics (rows: one per resample or a single one)


def _kappa_from_confusion(confusion: np.ndarray, labelled_only: bool) -> np.ndarray:
    """Cohen's κ per row of stacked K×K confusion tables; NaN where undefined."""
    table = np.array(confusion, dtype=np.float64, copy=True)
    if labelled_only:
        table[..., 0, 0] = 0.0
    total = table.sum(axis=(-2, -1))
    agreed = np.trace(table, axis1=-2, axis2=-1)
    chance = (table.sum(axis=-1) * table.sum(axis=-2)).sum(axis=-1)
    # κ = (p_o − p_e)/(1 − p_e) multiplied through by N², which keeps the undefined case exact.
    numerator = total * agreed - chance
    denominator = total * total - chance
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _fleiss_from_sums(sums: np.ndarray, m: int) -> np.ndarray:
    """Fleiss' κ per row of [tokens, Σ_i Σ_j n_ij², Σ_i n_ij for each category j]; NaN where undefined."""
    sums = np.asarray(sums, dtype=np.float64)
    tokens, squares, totals = sums[..., 0], sums[..., 1], sums[..., 2:]
    ratings = tokens * m
    chance = (totals * totals).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_agreement = (squares - ratings) / (ratings * (m - 1))
        expected = chance / (ratings * ratings)
        kappa = (mean_agreement - expected) / (1 - expected)
    return np.where((ratings > 0) & (ratings * ratings > chance), kappa, np.nan)


def _alpha_from_coincidences(coincidences: np.ndarray) -> np.ndarray:
    """Nominal α per row of stacked coincidence matrices; NaN when fewer than two categories occur."""
    matrix = np.asarray(coincidences, dtype=np.float64)
    per_category = matrix.sum(axis=-1)
    pairable = per_category.sum(axis=-1)
    observed = pairable - np.trace(matrix, axis1=-2, axis2=-1)
    expected = pairable * pairable - (per_category * per_category).sum(axis=-1)
    defined = (per_category > 0).sum(axis=-1) >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1 - (pairable - 1) * observed / expected
    return np.where(defined, alpha, np.nan)


def _as_figure(values: np.ndarray) -> float | None:
    value = float(values)
    return None if np.isnan(value) else value


def _confusion(codes_a: np.ndarray, codes_b: np.ndarray, categories: int) -> np.ndarray:
    return np.bincount(codes_a * categories + codes_b, minlength=categories * categories).reshape(
        categories, categories
    )


def _category_counts(codes: Iterable[np.ndarray], categories: int) -> np.ndarray:
    """Tokens × categories: how many annotators put each token in each category."""
    stacked = np.stack(list(codes))
    tokens = stacked.shape[1]
    flat = (np.arange(tokens)[None, :] * categories + stacked).ravel()
    return np.bincount(flat, minlength=tokens * categories).reshape(tokens, categories)


def _fleiss_row(counts: np.ndarray) -> np.ndarray:
    return np.concatenate(([counts.shape[0], int((counts * counts).sum())], counts.sum(axis=0)))


def _coincidence_matrix(counts: np.ndarray, coders: int) -> np.ndarray:
    # o_ck = Σ_u (n_uc·n_uk − [c = k]·n_uc) / (m_u − 1); every token of a document has the same m_u coders.
    return (counts.T @ counts - np.diag(counts.sum(axis=0))) / (coders - 1)


def cohen_kappa_tokens(
    annotations: Annotations,
    a: str,
    b: str,
    texts: Mapping[str, str],
    labels: Sequence[str],
    *,
    labelled_only: bool = False,
    documents: Sequence[str] | None = None,
) -> float | None:
    """Cohen's κ of a and b over the tokens of the documents both submitted; labelled_only drops tokens both
    left O. None when undefined."""
    order = _label_order(labels, _labels_in(annotations))
    codes = _TokenCodes(annotations, texts, order)
    confusion = np.zeros((codes.categories, codes.categories), dtype=np.int64)
    for document in _chosen(_both_submitted(annotations, a, b), documents):
        by_annotator = codes.of(document)
        confusion += _confusion(by_annotator[a], by_annotator[b], codes.categories)
    return _as_figure(_kappa_from_confusion(confusion, labelled_only))


def _annotator_counts(annotations: Annotations) -> dict[str, int]:
    return {document: len(by_annotator) for document, by_annotator in annotations.items()}


def fleiss_default_m(annotations: Annotations) -> int | None:
    """The most common number (>= 3) of annotators per document, the larger on a tie; None if none has 3."""
    frequency = Counter(count for count in _annotator_counts(annotations).values() if count >= 3)
    if not frequency:
        return None
    return max(frequency, key=lambda count: (frequency[count], count))


def fleiss_kappa_tokens(
    annotations: Annotations,
    texts: Mapping[str, str],
    labels: Sequence[str],
    m: int | None = None,
    *,
    documents: Sequence[str] | None = None,
) -> float | None:
    """Fleiss' κ over the tokens of the documents that exactly m (>= 3) annotators did; None if undefined."""
    if m is None:
        m = fleiss_default_m(annotations)
        if m is None:
            return None
    if m < 3:
        raise ValueError(f"Fleiss' κ needs m >= 3 annotators per document, got {m}")
    order = _label_order(labels, _labels_in(annotations))
    codes = _TokenCodes(annotations, texts, order)
    eligible = [document for document, count in _annotator_counts(annotations).items() if count == m]
    sums = np.zeros(codes.categories + 2, dtype=np.int64)
    for document in _chosen(eligible, documents):
        sums += _fleiss_row(_category_counts(codes.of(document).values(), codes.categories))
    return _as_figure(_fleiss_from_sums(sums, m))


def krippendorff_alpha_tokens(
    annotations: Annotations,
    texts: Mapping[str, str],
    labels: Sequence[str],
    *,
    documents: Sequence[str] | None = None,
) -> float | None:
    """Nominal Krippendorff's α over tokens, each coded by the annotators who submitted its document."""
    order = _label_order(labels, _labels_in(annotations))
    codes = _TokenCodes(annotations, texts, order)
    pairable = [document for document, count in _annotator_counts(annotations).items() if count >= 2]
    coincidences = np.zeros((codes.categories, codes.categories), dtype=np.float64)
    for document in _chosen(pairable, documents):
        by_annotator = codes.of(document)
        counts = _category_counts(by_annotator.values(), codes.categories)
        coincidences += _coincidence_matrix(counts, len(by_annotator))
    return _as_figure(_alpha_from_coincidences(coincidences))


# ---------------------------------------------------------------------------------------------------------
# Bootstrap


def _generator(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _interval(values: Sequence[float] | np.ndarray, level: float) -> tuple[float, float] | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def _check_bootstrap(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")


def bootstrap_ci(
    document_keys: Sequence[str],
    statistic: Callable[[list[str]], float | None],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile bootstrap over documents of a pooled figure; None if no resample defines it."""
    _check_bootstrap(resamples, level)
    keys = list(document_keys)
    if not keys:
        return None
    generator = _generator(seed)
    values = []
    for _ in range(resamples):
        drawn = generator.integers(0, len(keys), size=len(keys))
        value = statistic([keys[i] for i in drawn])
        if value is not None:
            values.append(value)
    return _interval(values, level)


_CHUNK = 200


def _resampled_sums(rows: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Resamples × columns: the documents' rows summed over each resample (the draws of bootstrap_ci)."""
    documents = rows.shape[0]
    generator = _generator(seed)
    # Columns that are 0 in every document sum to 0 in every resample: only the others are multiplied
    # (a study's confusion tables and relation counts are mostly such columns).
    used = np.flatnonzero(rows.any(axis=0))
    matrix = rows[:, used].astype(np.float64)  # exact: the counts stay far below 2**53
    sums = np.zeros((resamples, rows.shape[1]))
    for first in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - first)
        # How often each document was drawn in each resample: a chunk of resample sums is one matrix product.
        drawn = np.stack([generator.integers(0, documents, size=documents) for _ in range(size)])
        offsets = (np.arange(size)[:, None] * documents + drawn).ravel()
        weights = np.bincount(offsets, minlength=size * documents).reshape(size, documents)
        sums[first : first + size, used] = weights.astype(np.float64) @ matrix
    return sums


Interval = tuple[float, float] | None


class _Bootstrap:
    """Point figures and percentile intervals of many pooled figures, computed together.

    A block is one row of sufficient statistics per document and a function from summed rows (stacked on
    a leading axis) to figures (NaN where undefined). The draws depend only on the seed and the number of
    documents, so blocks with equally many documents share one set of draws: exactly what separate
    bootstrap_ci calls with the same seed would draw, at the cost of one matrix product.
    """

    def __init__(self, resamples: int, seed: int, level: float):
        self.resamples, self.seed, self.level = resamples, seed, level
        self.blocks: list[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]] = []

    def add(self, rows: np.ndarray, figures: Callable[[np.ndarray], np.ndarray]) -> int:
        self.blocks.append((rows, figures))
        return len(self.blocks) - 1

    def run(self) -> list[tuple[list[float | None], list[Interval]]]:
        results: list = [None] * len(self.blocks)
        by_size: dict[int, list[int]] = defaultdict(list)
        for index, (rows, _) in enumerate(self.blocks):
            by_size[rows.shape[0]].append(index)
        for documents, members in by_size.items():
            flat = [
                self.blocks[index][0].reshape(documents, int(np.prod(self.blocks[index][0].shape[1:])))
                for index in members
            ]
            sums = _resampled_sums(np.hstack(flat), self.resamples, self.seed) if documents else None
            offset = 0
            for index, columns in zip(members, flat, strict=True):
                rows, figures = self.blocks[index]
                point = np.atleast_1d(figures(rows.sum(axis=0)[None, ...])[0])
                values = [None if np.isnan(value) else float(value) for value in point]
                if sums is None:
                    intervals: list[Interval] = [None] * len(values)
                else:
                    block_sums = sums[:, offset : offset + columns.shape[1]]
                    resampled = figures(block_sums.reshape((self.resamples, *rows.shape[1:])))
                    resampled = resampled.reshape(self.resamples, -1)
                    intervals = [_interval(resampled[:, k], self.level) for k in range(resampled.shape[1])]
                offset += columns.shape[1]
                results[index] = (values, intervals)
        return results


# ---------------------------------------------------------------------------------------------------------
# Report


def _figure(value: float | None, interval: Interval) -> dict:
    return {"value": value, "ci": None if interval is None else [interval[0], interval[1]]}


def _f1_values(sums: np.ndarray) -> np.ndarray:
    """F1 from [..., (matched, |A|, |B|)] along the last axis; NaN where both sets are empty."""
    total = sums[..., 1] + sums[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * sums[..., 0] / np.where(total > 0, total, 1.0), np.nan)


def _f1_figures(sums: np.ndarray) -> np.ndarray:
    """From [..., labels, (matched, |A|, |B|)]: the per-label F1 values, then the F1 pooled over labels."""
    return np.concatenate([_f1_values(sums), _f1_values(sums.sum(axis=-2))[..., None]], axis=-1)


def _kappa_figures(sums: np.ndarray) -> np.ndarray:
    """From [..., K, K] confusion tables: κ over all tokens, then over the tokens at least one labelled."""
    return np.stack([_kappa_from_confusion(sums, False), _kappa_from_confusion(sums, True)], axis=-1)


def _mean_over_pairs(figures: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def mean(sums: np.ndarray) -> np.ndarray:
        # [..., pairs, features] -> per pair figures -> their mean, leaving out pairs where it is undefined.
        per_pair = figures(sums)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all pairs undefined: NaN, i.e. undefined
            return np.nanmean(per_pair, axis=-2)

    return mean


def _labelled(result: tuple[list[float | None], list[Interval]], names: Sequence[str]) -> dict:
    values, intervals = result
    figures = [_figure(value, interval) for value, interval in zip(values, intervals, strict=True)]
    return {"overall": figures[-1], "per_label": dict(zip(names, figures[:-1], strict=True))}


def _kappas(result: tuple[list[float | None], list[Interval]]) -> dict:
    values, intervals = result
    return {
        "all_tokens": {**_figure(values[0], intervals[0]), "note": ALL_TOKENS_NOTE},
        "labelled_tokens": {**_figure(values[1], intervals[1]), "note": LABELLED_TOKENS_NOTE},
    }


# ---------------------------------------------------------------------------------------------------------
# One document's share of the report, and the report pooled from the shares
#
# Every pooled figure is a function of per-document sums, so a document's share can be computed once when
# its sets change, stored, and pooled with the others' for every later report (app.services.metrics). A
# share names labels, not codes: documents computed when other labels had been seen still pool.


def _counts_entries(counts: Mapping[str, AgreementCounts]) -> list[list]:
    return [[label, c.matched, c.size_a, c.size_b] for label, c in counts.items()]


def _sparse(matrix: np.ndarray, names: Sequence[str | None]) -> list[list]:
    rows, columns = np.nonzero(matrix)
    return [
        [names[i], names[j], int(matrix[i, j])] for i, j in zip(rows.tolist(), columns.tolist(), strict=True)
    ]


# Question kinds whose answers are compared with Cohen's κ (text and evidence answers are not).
COMPARED_QUESTIONS = ("choice", "multi_choice", "scale")
UNSET = "(unset)"


@dataclass(frozen=True)
class AttributeRule:
    """What an attribute means for agreement: its default (an unset value is the default) and the
    entity types it applies to (empty: all)."""

    default: str | None = None
    applies_to: tuple[str, ...] = ()


def _attribute_value(span: SpanData, name: str, rule: AttributeRule) -> str:
    value = span.attributes.get(name)
    if value is None:
        value = rule.default
    return UNSET if value is None else str(value)


def _annotation_details(
    spans_a: Sequence[SpanData],
    spans_b: Sequence[SpanData],
    attributes: Mapping[str, AttributeRule],
) -> tuple[list[list], list[int]]:
    """On the spans both annotators marked alike (strict match): the attribute values side by side,
    counted, and how many of the coded pairs carry the same code."""
    pairs: Counter = Counter()
    agreed = compared = 0
    for i, j in match_spans(spans_a, spans_b, rule="strict"):
        a, b = spans_a[i], spans_b[j]
        for name, rule in attributes.items():
            if rule.applies_to and a.label not in rule.applies_to:
                continue
            pairs[(name, _attribute_value(a, name, rule), _attribute_value(b, name, rule))] += 1
        if a.concept is not None or b.concept is not None:
            compared += 1
            agreed += a.concept == b.concept
    return [[*key, count] for key, count in sorted(pairs.items())], [agreed, compared]


_NO_EVENTS = AnnotatorEvents([], [], [])


def _event_counts(a: AnnotatorEvents, b: AnnotatorEvents, rule: str) -> dict[str, AgreementCounts]:
    """Per event type: matched events (one to one under ``rule``), |A| and |B| of one document."""
    matched = matched_events(a.events, b.events, rule)
    sizes_a, sizes_b = Counter(e.type for e in a.events), Counter(e.type for e in b.events)
    return {
        kind: AgreementCounts(matched.get(kind, 0), sizes_a[kind], sizes_b[kind])
        for kind in sorted(set(sizes_a) | set(sizes_b))
    }


def _event_relation_counts(a: AnnotatorEvents, b: AnnotatorEvents) -> dict[str, AgreementCounts]:
    """Per type of relation with an event argument: the same type and arguments (events strictly)."""
    left, right = Counter(a.relations), Counter(b.relations)
    both = left & right
    kinds = sorted({r[0] for r in left} | {r[0] for r in right})
    return {
        kind: AgreementCounts(
            sum(n for r, n in both.items() if r[0] == kind),
            sum(n for r, n in left.items() if r[0] == kind),
            sum(n for r, n in right.items() if r[0] == kind),
        )
        for kind in kinds
    }


def _event_attribute_pairs(a: AnnotatorEvents, b: AnnotatorEvents) -> list[list]:
    """On the events both annotated alike (strict): each attribute either set, side by side, counted."""
    values_a: dict[tuple, dict[str, str]] = defaultdict(dict)
    values_b: dict[tuple, dict[str, str]] = defaultdict(dict)
    for values, events in ((values_a, a), (values_b, b)):
        for name, key, value in events.attributes:
            values[key][name] = value
    keys = Counter(e.key for e in a.events) & Counter(e.key for e in b.events)
    pairs: Counter = Counter()
    for key in keys:
        for name in sorted(set(values_a[key]) | set(values_b[key])):
            pairs[(name, values_a[key].get(name, UNSET), values_b[key].get(name, UNSET))] += 1
    return [[*key, count] for key, count in sorted(pairs.items())]


def document_agreement(
    document: str,
    by_annotator: Mapping[str, Sequence[SpanData]],
    relations: Mapping[str, Sequence[RelationData]],
    text: str | None,
    labels: Sequence[str],
    *,
    attributes: Mapping[str, AttributeRule] | None = None,
    answers: Mapping[str, Mapping[str, object]] | None = None,
    questions: Mapping[str, str] | None = None,
    events: Mapping[str, AnnotatorEvents] | None = None,
) -> dict:
    """What pooled_agreement needs of one document, as plain JSON.

    ``by_annotator`` holds the spans of every annotator who submitted the document (possibly none),
    ``relations`` theirs; the text is needed only when two or more annotators did. ``attributes``
    (name -> AttributeRule), ``answers`` (annotator -> question key -> value) and ``questions`` (key ->
    kind) add attribute, code and answer agreement; ``events`` (annotator -> AnnotatorEvents) event,
    event-relation and event-attribute agreement.
    """
    attributes = attributes or {}
    events = events or {}
    answers = answers or {}
    compared_questions = {key: kind for key, kind in (questions or {}).items() if kind in COMPARED_QUESTIONS}
    annotators = sorted(by_annotator)
    seen = sorted({span.label for spans in by_annotator.values() for span in spans})
    share: dict = {
        "annotators": annotators,
        "labels": seen,
        "relation_types": sorted({r.type for a in annotators for r in relations.get(a, ())}),
        "event_types": sorted({e.type for a in annotators for e in events.get(a, _NO_EVENTS).events}),
        "event_relation_types": sorted(
            {r[0] for a in annotators for r in events.get(a, _NO_EVENTS).relations}
        ),
        "events_unresolved": sum(events.get(a, _NO_EVENTS).unresolved for a in annotators),
        "pairs": [],
        "fleiss": None,
        "coincidence": None,
        "strict_f1_mean": None,
    }
    if len(annotators) < 2:
        return share
    if text is None:
        raise ValueError(f"token-level agreement needs the text of document {document!r}")
    # This document's labels in report order: the pooled order keeps their relative order (schema labels
    # first, then the others sorted), so token categories break ties exactly as over the whole corpus.
    order = _label_order(labels, seen)
    names: list[str | None] = [None, *order]  # code 0 is O
    categories = len(names)
    starts, ends = _token_bounds(text)
    try:
        codes = {
            a: _category_codes(starts, ends, len(text), by_annotator[a], _codes(order)) for a in annotators
        }
    except ValueError as error:
        raise ValueError(f"document {document!r}: {error}") from None
    summaries = {a: _summarise_spans(by_annotator[a]) for a in annotators}
    strict_f1 = []
    for a, b in combinations(annotators, 2):
        spans = {rule: _span_document_counts(summaries[a], summaries[b], rule) for rule in RULES}
        relation_counts = {
            rule: _relation_document_counts(relations.get(a, ()), relations.get(b, ()), rule)
            for rule in RULES
        }
        strict_f1.append(sum(spans["strict"].values(), _NO_COUNTS).f1)
        attribute_pairs, coded = _annotation_details(by_annotator[a], by_annotator[b], attributes)
        answers_a, answers_b = answers.get(a, {}), answers.get(b, {})
        events_a, events_b = events.get(a, _NO_EVENTS), events.get(b, _NO_EVENTS)
        share["pairs"].append(
            {
                "annotators": [a, b],
                "spans": {rule: _counts_entries(spans[rule]) for rule in RULES},
                "relations": {rule: _counts_entries(relation_counts[rule]) for rule in RULES},
                "confusion": _sparse(_confusion(codes[a], codes[b], categories), names),
                "attributes": attribute_pairs,
                "events": {rule: _counts_entries(_event_counts(events_a, events_b, rule)) for rule in RULES},
                "event_relations": {"strict": _counts_entries(_event_relation_counts(events_a, events_b))},
                "event_attributes": _event_attribute_pairs(events_a, events_b),
                "codes": coded,
                # Both answered: the two answers side by side, per compared question.
                "answers": [
                    [key, answers_a[key], answers_b[key]]
                    for key in sorted(compared_questions)
                    if answers_a.get(key) is not None and answers_b.get(key) is not None
                ],
            }
        )
    counts = _category_counts(codes.values(), categories)
    totals = counts.sum(axis=0)
    if len(annotators) >= 3:
        share["fleiss"] = {
            "tokens": int(counts.shape[0]),
            "squares": int((counts * counts).sum()),
            "totals": [[names[j], int(totals[j])] for j in np.nonzero(totals)[0].tolist()],
        }
    # The coincidence matrix times (coders − 1), in integers; pooled_agreement divides, as
    # _coincidence_matrix does.
    share["coincidence"] = _sparse(counts.T @ counts - np.diag(totals), names)
    share["strict_f1_mean"] = _mean_defined(strict_f1)
    return share


def _fill_counts(target: np.ndarray, row: int, entries: list[list], position: Mapping[str, int]) -> None:
    for label, matched, size_a, size_b in entries:
        target[row, position[label]] = (matched, size_a, size_b)


def _nominal_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's κ of paired category values (as sklearn's cohen_kappa_score); None where undefined."""
    categories = sorted({value for pair in pairs for value in pair})
    if not pairs:
        return None
    code = {value: index for index, value in enumerate(categories)}
    confusion = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for value_a, value_b in pairs:
        confusion[code[value_a], code[value_b]] += 1
    return _as_figure(_kappa_from_confusion(confusion, False))


def _weighted_kappa(pairs: Sequence[tuple[int, int]]) -> float | None:
    """Quadratic-weighted Cohen's κ of paired scale answers (sklearn's weights="quadratic")."""
    if not pairs:
        return None
    values = sorted({value for pair in pairs for value in pair})
    code = {value: index for index, value in enumerate(values)}
    k = len(values)
    observed = np.zeros((k, k))
    for value_a, value_b in pairs:
        observed[code[value_a], code[value_b]] += 1
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2
    denominator = (weights * expected).sum()
    return None if denominator == 0 else float(1 - (weights * observed).sum() / denominator)


def _attribute_figures(pairs: Counter) -> dict:
    by_name: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for (name, value_a, value_b), count in pairs.items():
        by_name[name].extend([(value_a, value_b)] * count)
    figures = {}
    for name, values in sorted(by_name.items()):
        # Spans where neither annotator set a value agree trivially: reported beside the figures, and a
        # second κ leaves them out, so that a rarely used attribute does not look reliable by silence.
        set_by_one = [(a, b) for a, b in values if not (a == UNSET and b == UNSET)]
        figures[name] = {
            "kappa": _nominal_kappa(values),
            "matched_spans": len(values),
            "observed_agreement": sum(a == b for a, b in values) / len(values),
            "neither_set": len(values) - len(set_by_one),
            "kappa_where_set": _nominal_kappa(set_by_one),
        }
    return figures


def _answer_figures(pairs: Sequence[tuple], kind: str) -> dict:
    figures: dict = {"kind": kind, "documents": len(pairs)}
    if kind == "multi_choice":  # one yes/no decision per offered choice
        options = sorted({option for pair in pairs for answer in pair for option in answer})
        figures["per_choice"] = {
            option: _nominal_kappa([(str(option in a), str(option in b)) for a, b in pairs])
            for option in options
        }
        figures["exact_agreement"] = sum(set(a) == set(b) for a, b in pairs) / len(pairs) if pairs else None
        return figures
    figures["kappa"] = _nominal_kappa([(str(a), str(b)) for a, b in pairs])
    if kind == "scale":
        figures["quadratic_weighted_kappa"] = _weighted_kappa(pairs)
    figures["exact_agreement"] = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return figures


def _event_figures(
    results: list, handles: Mapping, event_order: Sequence[str], relation_order: Sequence[str]
):
    """Event F1 (strict, lenient) per event type, and F1 of relations with an event argument; None when
    the documents have none."""
    return {
        "event_f1": {rule: _labelled(results[handles["events"][rule]], event_order) for rule in RULES}
        if handles["events"] is not None
        else None,
        "event_relation_f1": {"strict": _labelled(results[handles["event_relations"]], relation_order)}
        if handles["event_relations"] is not None
        else None,
    }


def pooled_agreement(
    shares: Mapping[str, Mapping],
    labels: Sequence[str],
    *,
    relation_types: Sequence[str] = (),
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    question_kinds: Mapping[str, str] | None = None,
) -> dict:
    """The agreement report from the documents' shares (document_agreement), in the documents' order."""
    _check_bootstrap(resamples, level)
    order = _label_order(labels, {label for share in shares.values() for label in share["labels"]})
    type_order = _label_order(
        relation_types, {kind for share in shares.values() for kind in share["relation_types"]}
    )
    annotators = sorted({annotator for share in shares.values() for annotator in share["annotators"]})
    label_position = {label: index for index, label in enumerate(order)}
    type_position = {kind: index for index, kind in enumerate(type_order)}
    code_of: dict[str | None, int] = {None: 0, **{label: index + 1 for index, label in enumerate(order)}}
    categories = len(order) + 1
    shared = [document for document, share in shares.items() if len(share["annotators"]) >= 2]
    pair_names = list(combinations(annotators, 2))
    pair_index = {pair: index for index, pair in enumerate(pair_names)}

    # Which documents each pair did, in document order, before the arrays are sized.
    pair_documents: list[list[int]] = [[] for _ in pair_names]  # positions in `shared`
    for row, document in enumerate(shared):
        for pair in shares[document]["pairs"]:
            pair_documents[pair_index[tuple(pair["annotators"])]].append(row)
    span_rows = {
        rule: [np.zeros((len(rows), len(order), 3), dtype=np.int64) for rows in pair_documents]
        for rule in RULES
    }
    relation_rows = {
        rule: [np.zeros((len(rows), len(type_order), 3), dtype=np.int64) for rows in pair_documents]
        for rule in RULES
    }
    # Events: types as they occur in the data (brat's conf has them, the label schema does not).
    event_order = sorted({kind for share in shares.values() for kind in share.get("event_types", ())})
    event_relation_order = sorted(
        {kind for share in shares.values() for kind in share.get("event_relation_types", ())}
    )
    event_position = {kind: index for index, kind in enumerate(event_order)}
    event_relation_position = {kind: index for index, kind in enumerate(event_relation_order)}
    event_rows = {
        rule: [np.zeros((len(rows), len(event_order), 3), dtype=np.int64) for rows in pair_documents]
        for rule in RULES
    }
    event_relation_rows = [
        np.zeros((len(rows), len(event_relation_order), 3), dtype=np.int64) for rows in pair_documents
    ]
    confusion_rows = [
        np.zeros((len(rows), categories, categories), dtype=np.int64) for rows in pair_documents
    ]
    filled = [0] * len(pair_names)
    coincidences = np.zeros((len(shared), categories, categories))
    for row, document in enumerate(shared):
        share = shares[document]
        for pair in share["pairs"]:
            index = pair_index[tuple(pair["annotators"])]
            at = filled[index]
            filled[index] += 1
            for rule in RULES:
                _fill_counts(span_rows[rule][index], at, pair["spans"][rule], label_position)
                _fill_counts(relation_rows[rule][index], at, pair["relations"][rule], type_position)
                _fill_counts(
                    event_rows[rule][index], at, pair.get("events", {}).get(rule, ()), event_position
                )
            _fill_counts(
                event_relation_rows[index],
                at,
                pair.get("event_relations", {}).get("strict", ()),
                event_relation_position,
            )
            confusion = confusion_rows[index][at]
            for a, b, count in pair["confusion"]:
                confusion[code_of[a], code_of[b]] = count
        numerators = np.zeros((categories, categories), dtype=np.int64)
        for a, b, value in share["coincidence"]:
            numerators[code_of[a], code_of[b]] = value
        coincidences[row] = numerators / (len(share["annotators"]) - 1)

    bootstrap = _Bootstrap(resamples, seed, level)
    pair_handles = [
        {
            "spans": {rule: bootstrap.add(span_rows[rule][index], _f1_figures) for rule in RULES},
            "relations": {rule: bootstrap.add(relation_rows[rule][index], _f1_figures) for rule in RULES},
            "kappa": bootstrap.add(confusion_rows[index], _kappa_figures),
            "events": {rule: bootstrap.add(event_rows[rule][index], _f1_figures) for rule in RULES}
            if event_order
            else None,
            "event_relations": bootstrap.add(event_relation_rows[index], _f1_figures)
            if event_relation_order
            else None,
        }
        for index in range(len(pair_names))
    ]

    # Means over pairs resample every document with >= 2 annotators and recompute each pair's pooled
    # figure on the documents it drew, so a pair's rows are zero where it did not annotate both.
    def aligned(blocks: list[np.ndarray]) -> np.ndarray:
        rows = np.zeros((len(shared), len(pair_names), *blocks[0].shape[1:]), dtype=np.int64)
        for column, block in enumerate(blocks):
            rows[pair_documents[column], column] = block
        return rows

    mean_handles = None
    if pair_names:
        mean_handles = {
            "spans": {
                rule: bootstrap.add(aligned(span_rows[rule]), _mean_over_pairs(_f1_figures)) for rule in RULES
            },
            "relations": {
                rule: bootstrap.add(aligned(relation_rows[rule]), _mean_over_pairs(_f1_figures))
                for rule in RULES
            },
            "kappa": bootstrap.add(aligned(confusion_rows), _mean_over_pairs(_kappa_figures)),
            "events": {
                rule: bootstrap.add(aligned(event_rows[rule]), _mean_over_pairs(_f1_figures))
                for rule in RULES
            }
            if event_order
            else None,
            "event_relations": bootstrap.add(aligned(event_relation_rows), _mean_over_pairs(_f1_figures))
            if event_relation_order
            else None,
        }

    frequency = Counter(len(share["annotators"]) for share in shares.values())
    frequency = Counter({count: n for count, n in frequency.items() if count >= 3})
    m = max(frequency, key=lambda count: (frequency[count], count)) if frequency else None
    fleiss_handle = eligible = None
    if m is not None:
        eligible = [document for document in shared if len(shares[document]["annotators"]) == m]
        fleiss_rows = np.zeros((len(eligible), categories + 2), dtype=np.int64)
        for row, document in enumerate(eligible):
            fleiss = shares[document]["fleiss"]
            fleiss_rows[row, 0], fleiss_rows[row, 1] = fleiss["tokens"], fleiss["squares"]
            for label, total in fleiss["totals"]:
                fleiss_rows[row, 2 + code_of[label]] = total
        fleiss_handle = bootstrap.add(fleiss_rows, lambda sums: _fleiss_from_sums(sums, m))
    alpha_handle = bootstrap.add(coincidences, _alpha_from_coincidences)

    # Attribute, code and answer agreement: point figures from the pooled pairs of each annotator pair.
    attribute_pairs: list[Counter] = [Counter() for _ in pair_names]
    event_attribute_pairs: list[Counter] = [Counter() for _ in pair_names]
    codes = [[0, 0] for _ in pair_names]
    answer_pairs: list[dict[str, list[tuple]]] = [defaultdict(list) for _ in pair_names]
    question_kinds = dict(question_kinds or {})
    for document in shared:
        for pair in shares[document]["pairs"]:
            index = pair_index[tuple(pair["annotators"])]
            for name, value_a, value_b, count in pair.get("attributes", ()):
                attribute_pairs[index][(name, value_a, value_b)] += count
            for name, value_a, value_b, count in pair.get("event_attributes", ()):
                event_attribute_pairs[index][(name, value_a, value_b)] += count
            agreed, compared = pair.get("codes", (0, 0))
            codes[index][0] += agreed
            codes[index][1] += compared
            for key, value_a, value_b in pair.get("answers", ()):
                answer_pairs[index][key].append((value_a, value_b))

    results = bootstrap.run()
    pair_reports = [
        {
            "annotators": [a, b],
            "documents": len(pair_documents[index]),
            "span_f1": {rule: _labelled(results[handles["spans"][rule]], order) for rule in RULES},
            "token_kappa": _kappas(results[handles["kappa"]]),
            "relation_f1": {
                rule: _labelled(results[handles["relations"][rule]], type_order) for rule in RULES
            },
            "attribute_kappa": _attribute_figures(attribute_pairs[index]),
            **_event_figures(results, handles, event_order, event_relation_order),
            "event_attribute_kappa": _attribute_figures(event_attribute_pairs[index]),
            "code_agreement": {
                "agreed": codes[index][0],
                "compared": codes[index][1],
                "rate": codes[index][0] / codes[index][1] if codes[index][1] else None,
            },
            "answer_kappa": {
                key: _answer_figures(answer_pairs[index][key], question_kinds.get(key, "choice"))
                for key in sorted(answer_pairs[index])
            },
        }
        for index, ((a, b), handles) in enumerate(zip(pair_names, pair_handles, strict=True))
    ]
    mean_report = None
    if mean_handles is not None:
        mean_report = {
            "documents": len(shared),
            "span_f1": {rule: _labelled(results[mean_handles["spans"][rule]], order) for rule in RULES},
            "token_kappa": _kappas(results[mean_handles["kappa"]]),
            "relation_f1": {
                rule: _labelled(results[mean_handles["relations"][rule]], type_order) for rule in RULES
            },
            **_event_figures(results, mean_handles, event_order, event_relation_order),
        }
    fleiss_report = None
    if fleiss_handle is not None:
        (value,), (interval,) = results[fleiss_handle]
        fleiss_report = {"m": m, "documents": len(eligible), **_figure(value, interval)}
    (alpha,), (alpha_interval,) = results[alpha_handle]
    return {
        "labels": order,
        "relation_types": type_order,
        "event_types": event_order,
        "event_relation_types": event_relation_order,
        # Events left out of agreement: a trigger or an argument missing (deleted in the editor) or a cycle.
        "events_unresolved": sum(share.get("events_unresolved", 0) for share in shares.values()),
        "annotators": annotators,
        "bootstrap": {"method": "percentile", "resamples": resamples, "seed": seed, "level": level},
        "pairs": pair_reports,
        "mean_over_pairs": mean_report,
        "fleiss_kappa": fleiss_report,
        "krippendorff_alpha": {"documents": len(shared), **_figure(alpha, alpha_interval)},
    }


def agreement_report(
    annotations: Annotations,
    relations: Relations,
    texts: Mapping[str, str],
    labels: Sequence[str],
    *,
    relation_types: Sequence[str] = (),
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    attributes: Mapping[str, AttributeRule] | None = None,
    answers: Mapping[str, Mapping[str, Mapping[str, object]]] | None = None,
    questions: Mapping[str, str] | None = None,
) -> dict:
    """Every agreement figure of metrics.md with percentile-bootstrap intervals; JSON-serialisable.

    ``answers`` is document -> annotator -> question key -> value; ``questions`` key -> kind."""
    _check_bootstrap(resamples, level)
    shares = {
        document: document_agreement(
            document,
            by_annotator,
            relations.get(document, {}),
            texts.get(document),
            labels,
            attributes=attributes,
            answers=(answers or {}).get(document),
            questions=questions,
        )  # fmt: skip
        for document, by_annotator in annotations.items()
    }
    return pooled_agreement(
        shares, labels, relation_types=relation_types, resamples=resamples, seed=seed, level=level,
        question_kinds=questions,
    )  # fmt: skip


def ranked_by_disagreement(means: Iterable[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    """(document, mean pairwise strict F1) worst first, undefined last, ties by document."""
    return sorted(means, key=lambda item: (item[1] is None, item[1] if item[1] is not None else 0.0, item[0]))


def documents_by_disagreement(
    annotations: Annotations, labels: Sequence[str]
) -> list[tuple[str, float | None]]:
    """Documents with >= 2 annotators and their mean pairwise strict span F1, worst first (undefined last)."""
    ranked = []
    for document, by_annotator in annotations.items():
        if len(by_annotator) < 2:
            continue
        summaries = {annotator: _summarise_spans(spans) for annotator, spans in by_annotator.items()}
        f1_values = [
            sum(_span_document_counts(summaries[a], summaries[b], "strict").values(), _NO_COUNTS).f1
            for a, b in combinations(sorted(by_annotator), 2)
        ]
        ranked.append((document, _mean_defined(f1_values)))
    return ranked_by_disagreement(ranked)
