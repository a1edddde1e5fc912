"""Span and relation matching and P/R/F, as metrics.md "Spans and matching" and "Precision, recall, F" say.

Choices the design leaves open, made here once:

- A document present on one side only counts as an empty set on the other (its spans are all FN or FP).
- Lenient matching takes a maximum one-to-one matching and, among the maximum matchings, one with the
  largest total overlap in characters (exact, via the Hungarian algorithm on weight BIG + overlap, run per
  connected group of overlapping spans so that large documents stay cheap).
- F_β is defined exactly when P and R are; when both are 0 it is 0 (the count form
  (1+β²)TP / ((1+β²)TP + β²FN + FP) has a non-zero denominator there). Undefined figures are None.
- Macro figures are the mean of the per-label figures that are defined; a label whose figure is undefined
  (e.g. no response spans for precision) is left out, and the macro figure is None if no label has one.
- Type-agnostic evaluations (labels ignored) report ``micro`` only: ``per_label`` is empty, since a match
  may join two labels and belongs to neither.
"""

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

from app.domain.spans import SpanData
from app.domain.tokens import tokenize

MODES = ("strict", "lenient", "token")
RELATION_MODES = ("strict", "lenient")

# Internal label for type-agnostic evaluation; never reported.
_ANY_LABEL = "\x00any"


@dataclass(frozen=True)
class Counts:
    """Matched pairs (TP), unmatched response items (FP) and unmatched reference items (FN)."""

    tp: int
    fp: int
    fn: int

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float | None:
        """TP / (TP + FP); None when there is no response item."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        """TP / (TP + FN); None when there is no reference item."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def f_beta(self, beta: float) -> float | None:
        """(1+β²)·P·R / (β²·P + R); None when P or R is undefined, 0 when both are 0."""
        precision, recall = self.precision, self.recall
        if precision is None or recall is None:
            return None
        if precision == 0 and recall == 0:
            return 0.0
        beta2 = beta * beta
        return (1 + beta2) * precision * recall / (beta2 * precision + recall)

    @property
    def f1(self) -> float | None:
        """F_1, the harmonic mean of P and R."""
        return self.f_beta(1.0)

    @property
    def f2(self) -> float | None:
        """F_2, which weighs recall (the published study chose its configuration by it)."""
        return self.f_beta(2.0)


def _macro(values: Iterable[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return fmean(defined) if defined else None


@dataclass(frozen=True)
class Evaluation:
    """Counts per label (in schema order, then labels seen only in the data) and summed over labels."""

    mode: str  # strict | lenient | token
    per_label: dict[str, Counts]
    micro: Counts
    type_agnostic: bool = field(default=False)

    @property
    def macro_precision(self) -> float | None:
        """Mean of the defined per-label precisions; None if no label has one."""
        return _macro(counts.precision for counts in self.per_label.values())

    @property
    def macro_recall(self) -> float | None:
        """Mean of the defined per-label recalls; None if no label has one."""
        return _macro(counts.recall for counts in self.per_label.values())

    @property
    def macro_f1(self) -> float | None:
        """Mean of the defined per-label F1 values (not F1 of macro P and R); None if none is defined."""
        return _macro(counts.f1 for counts in self.per_label.values())

    @property
    def macro_f2(self) -> float | None:
        """Mean of the defined per-label F2 values; None if none is defined."""
        return _macro(counts.f2 for counts in self.per_label.values())


@dataclass(frozen=True)
class RelationData:
    """A relation between two spans of one document: its type, head (first) and tail (second) argument."""

    type: str
    head: SpanData
    tail: SpanData


# ---------------------------------------------------------------------------------------------------------
# Characters and overlap


def _intervals(span: SpanData) -> list[tuple[int, int]]:
    """The span's characters as sorted, disjoint, non-touching half-open intervals."""
    merged: list[tuple[int, int]] = []
    for fragment in sorted(span.fragments):
        if merged and fragment.start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], fragment.end))
        else:
            merged.append((fragment.start, fragment.end))
    return merged


def _shared_characters(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Number of characters two interval lists have in common (both sorted and disjoint)."""
    shared, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low < high:
            shared += high - low
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return shared


def span_overlap(a: SpanData, b: SpanData) -> int:
    """Number of characters two spans share, whatever their labels."""
    return _shared_characters(_intervals(a), _intervals(b))


def _strict_key(span: SpanData, type_agnostic: bool) -> Hashable:
    # Fragment *sets* are compared, so the order in which fragments were listed does not matter.
    fragments = frozenset(span.fragments)
    return fragments if type_agnostic else (span.label, fragments)


# ---------------------------------------------------------------------------------------------------------
# One-to-one matching


def _hungarian(weights: list[list[int]]) -> list[tuple[int, int]]:
    """A maximum-weight assignment of the rows of a non-negative integer matrix to its columns.

    The classic O(n²m) shortest-augmenting-path form (rows <= columns), minimising the negated weights.
    Pairs of weight 0 stand for "no edge" and are dropped by the caller.
    """
    rows, columns = len(weights), len(weights[0])
    if rows > columns:
        transposed = [[weights[i][j] for i in range(rows)] for j in range(columns)]
        return [(i, j) for j, i in _hungarian(transposed)]
    infinity = float("inf")
    u = [0] * (rows + 1)
    v = [0] * (columns + 1)
    owner = [0] * (columns + 1)  # owner[j]: the row (1-based) assigned to column j, 0 if none
    way = [0] * (columns + 1)
    for row in range(1, rows + 1):
        owner[0] = row
        j0 = 0
        min_reduced = [infinity] * (columns + 1)
        used = [False] * (columns + 1)
        while True:
            used[j0] = True
            i0, delta, j1 = owner[j0], infinity, 0
            for j in range(1, columns + 1):
                if not used[j]:
                    reduced = -weights[i0 - 1][j - 1] - u[i0] - v[j]
                    if reduced < min_reduced[j]:
                        min_reduced[j], way[j] = reduced, j0
                    if min_reduced[j] < delta:
                        delta, j1 = min_reduced[j], j
            for j in range(columns + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_reduced[j] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return [(owner[j] - 1, j - 1) for j in range(1, columns + 1) if owner[j]]


def _maximum_matching(edges: Mapping[tuple[int, int], int]) -> list[tuple[int, int]]:
    """A maximum one-to-one matching of (reference, response) edges with the largest total overlap.

    ``edges`` maps candidate pairs to their overlap (>= 0). Maximising Σ (BIG + overlap) with BIG larger
    than any total overlap first maximises the number of pairs, then the overlap among maximum matchings.
    """
    # Connected groups of candidate pairs are independent, so each is solved on its own small matrix.
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(node: tuple[str, int]) -> tuple[str, int]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in edges:
        parent[root(("ref", i))] = root(("resp", j))
    groups: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for i, j in edges:
        groups[root(("ref", i))].append((i, j))

    matched: list[tuple[int, int]] = []
    for group in groups.values():
        if len(group) == 1:
            matched.append(group[0])
            continue
        reference_ids = sorted({i for i, _ in group})
        response_ids = sorted({j for _, j in group})
        big = sum(edges[pair] for pair in group) + 1
        weights = [[0] * len(response_ids) for _ in reference_ids]
        row_of = {i: row for row, i in enumerate(reference_ids)}
        column_of = {j: column for column, j in enumerate(response_ids)}
        for i, j in group:
            weights[row_of[i]][column_of[j]] = big + edges[(i, j)]
        for row, column in _hungarian(weights):
            if weights[row][column]:
                matched.append((reference_ids[row], response_ids[column]))
    return sorted(matched)


def _match(
    reference: Sequence[object],
    response: Sequence[object],
    strict_key: Callable[[object], Hashable],
    lenient_overlap: Callable[[int, int], int | None],
    rule: str,
) -> list[tuple[int, int]]:
    if rule == "strict":
        # Strict candidates are classes of equal keys, so pairing within each class is a maximum matching.
        waiting: dict[Hashable, list[int]] = defaultdict(list)
        for j, item in enumerate(response):
            waiting[strict_key(item)].append(j)
        pairs = []
        for i, item in enumerate(reference):
            candidates = waiting.get(strict_key(item))
            if candidates:
                pairs.append((i, candidates.pop(0)))
        return pairs
    if rule == "lenient":
        edges = {}
        for i in range(len(reference)):
            for j in range(len(response)):
                overlap = lenient_overlap(i, j)
                if overlap is not None:
                    edges[(i, j)] = overlap
        return _maximum_matching(edges)
    raise ValueError(f"rule must be 'strict' or 'lenient', got {rule!r}")


def match_spans(
    reference: Sequence[SpanData], response: Sequence[SpanData], *, rule: str, type_agnostic: bool = False
) -> list[tuple[int, int]]:
    """One-to-one (reference index, response index) pairs of one document under the strict or lenient rule."""
    reference_intervals = [_intervals(span) for span in reference]
    response_intervals = [_intervals(span) for span in response]

    def lenient_overlap(i: int, j: int) -> int | None:
        if not type_agnostic and reference[i].label != response[j].label:
            return None
        shared = _shared_characters(reference_intervals[i], response_intervals[j])
        return shared if shared else None

    return _match(reference, response, lambda span: _strict_key(span, type_agnostic), lenient_overlap, rule)


def match_relations(
    reference: Sequence[RelationData], response: Sequence[RelationData], *, rule: str
) -> list[tuple[int, int]]:
    """One-to-one pairs of relations of one document: equal types, head and tail matching under `rule`."""

    def strict_key(relation: RelationData) -> Hashable:
        return (relation.type, _strict_key(relation.head, False), _strict_key(relation.tail, False))

    def lenient_overlap(i: int, j: int) -> int | None:
        a, b = reference[i], response[j]
        if a.type != b.type or a.head.label != b.head.label or a.tail.label != b.tail.label:
            return None
        head, tail = span_overlap(a.head, b.head), span_overlap(a.tail, b.tail)
        # Both arguments must share a character; the tie-break prefers the most shared in total.
        return head + tail if head and tail else None

    return _match(reference, response, strict_key, lenient_overlap, rule)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _label_order(labels: Sequence[str] | None, seen: Iterable[str]) -> list[str]:
    ordered = list(dict.fromkeys(labels or ()))
    return ordered + sorted(set(seen) - set(ordered))


def _documents(*sides: Mapping[str, Sequence[object]]) -> list[str]:
    return list(dict.fromkeys(document for side in sides for document in side))


def _by_label(items: Sequence[object], label_of: Callable[[object], str]) -> dict[str, list[object]]:
    grouped: dict[str, list[object]] = defaultdict(list)
    for item in items:
        grouped[label_of(item)].append(item)
    return grouped


def _token_counts(
    reference: Mapping[str, Sequence[SpanData]],
    response: Mapping[str, Sequence[SpanData]],
    texts: Mapping[str, str],
    label_of: Callable[[SpanData], str],
) -> dict[str, Counts]:
    """Per label, the (document, token) pairs carrying it on each side, compared as sets."""

    def carried(side: Mapping[str, Sequence[SpanData]], document: str, starts: list[int], ends: list[int]):
        pairs: dict[str, set[int]] = defaultdict(set)
        text_length = len(texts[document])
        for span in side.get(document, ()):
            for fragment in span.fragments:
                if fragment.end > text_length:
                    raise ValueError(
                        f"document {document!r}: fragment [{fragment.start}, {fragment.end}) "
                        f"runs past the text's end ({text_length})"
                    )
                # A token carries the label when the fragment covers one of its characters: the first
                # such token is the first whose end lies beyond the fragment's start.
                k = bisect_right(ends, fragment.start)
                while k < len(starts) and starts[k] < fragment.end:
                    pairs[label_of(span)].add(k)
                    k += 1
        return pairs

    counts: dict[str, Counts] = defaultdict(lambda: Counts(0, 0, 0))
    for document in _documents(reference, response):
        if document not in texts:
            raise ValueError(f"token-level evaluation needs the text of document {document!r}")
        tokens = tokenize(texts[document])
        starts, ends = [t.start for t in tokens], [t.end for t in tokens]
        gold = carried(reference, document, starts, ends)
        system = carried(response, document, starts, ends)
        # A label whose spans cover only white space still appears in the data, so it is reported.
        present = {label_of(span) for side in (reference, response) for span in side.get(document, ())}
        for label in present:
            g, s = gold.get(label, set()), system.get(label, set())
            counts[label] = counts[label] + Counts(len(g & s), len(s - g), len(g - s))
    return counts


def _evaluate_items(
    reference: Mapping[str, Sequence[object]],
    response: Mapping[str, Sequence[object]],
    label_of: Callable[[object], str],
    match: Callable[[Sequence[object], Sequence[object]], list[tuple[int, int]]],
) -> dict[str, Counts]:
    counts: dict[str, Counts] = defaultdict(lambda: Counts(0, 0, 0))
    for document in _documents(reference, response):
        gold = _by_label(reference.get(document, ()), label_of)
        system = _by_label(response.get(document, ()), label_of)
        for label in gold.keys() | system.keys():
            g, s = gold.get(label, []), system.get(label, [])
            tp = len(match(g, s))
            counts[label] = counts[label] + Counts(tp, len(s) - tp, len(g) - tp)
    return counts


def _assemble(
    mode: str, counts: Mapping[str, Counts], labels: Sequence[str] | None, type_agnostic: bool
) -> Evaluation:
    micro = sum(counts.values(), Counts(0, 0, 0))
    if type_agnostic:
        return Evaluation(mode=mode, per_label={}, micro=micro, type_agnostic=True)
    per_label = {label: counts.get(label, Counts(0, 0, 0)) for label in _label_order(labels, counts)}
    return Evaluation(mode=mode, per_label=per_label, micro=micro)


def evaluate(
    reference: Mapping[str, Sequence[SpanData]],
    response: Mapping[str, Sequence[SpanData]],
    *,
    mode: str,
    texts: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
    type_agnostic: bool = False,
) -> Evaluation:
    """Response spans against reference spans, per document, in mode strict, lenient or token."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def label_of(span: SpanData) -> str:
        return _ANY_LABEL if type_agnostic else span.label

    if mode == "token":
        if texts is None:
            raise ValueError("token-level evaluation needs the documents' texts")
        counts = _token_counts(reference, response, texts, label_of)
    else:
        counts = _evaluate_items(
            reference,
            response,
            label_of,
            lambda g, s: match_spans(g, s, rule=mode, type_agnostic=type_agnostic),
        )
    return _assemble(mode, counts, labels, type_agnostic)


def evaluate_all(
    reference: Mapping[str, Sequence[SpanData]],
    response: Mapping[str, Sequence[SpanData]],
    texts: Mapping[str, str],
    labels: Sequence[str] | None = None,
) -> dict[str, Evaluation]:
    """The strict, lenient and token-level evaluations of one response against one reference."""
    return {mode: evaluate(reference, response, mode=mode, texts=texts, labels=labels) for mode in MODES}


def evaluate_relations(
    reference: Mapping[str, Sequence[RelationData]],
    response: Mapping[str, Sequence[RelationData]],
    mode: str,
    *,
    types: Sequence[str] | None = None,
) -> Evaluation:
    """Response relations against reference relations, per relation type, strict or lenient."""
    if mode not in RELATION_MODES:
        raise ValueError(f"mode must be one of {RELATION_MODES}, got {mode!r}")
    counts = _evaluate_items(
        reference,
        response,
        lambda relation: relation.type,
        lambda g, s: match_relations(g, s, rule=mode),
    )
    return _assemble(mode, counts, types, False)


def evaluation_counts(
    reference: Sequence[SpanData], response: Sequence[SpanData], text: str
) -> dict[str, list[list]]:
    """One document's share of evaluate_all, as JSON: mode -> [[label, tp, fp, fn], ...].

    Evaluations pool per-document counts, so a document's share can be stored when its sets change and
    summed later (evaluations_from_counts) without reading its spans again.
    """
    evaluations = evaluate_all({"": reference}, {"": response}, {"": text})
    return {
        mode: [[label, c.tp, c.fp, c.fn] for label, c in evaluation.per_label.items()]
        for mode, evaluation in evaluations.items()
    }


def evaluations_from_counts(
    shares: Iterable[Mapping[str, list[list]]], labels: Sequence[str] | None = None
) -> dict[str, Evaluation]:
    """evaluate_all over the documents whose evaluation_counts these are."""
    totals: dict[str, dict[str, list[int]]] = {mode: {} for mode in MODES}
    for share in shares:
        for mode, entries in share.items():
            by_label = totals[mode]
            for label, tp, fp, fn in entries:
                total = by_label.get(label)
                if total is None:
                    by_label[label] = [tp, fp, fn]
                else:
                    total[0] += tp
                    total[1] += fp
                    total[2] += fn
    return {
        mode: _assemble(mode, {label: Counts(*c) for label, c in totals[mode].items()}, labels, False)
        for mode in MODES
    }
