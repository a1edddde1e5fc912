"""The dashboard's figures as inline SVG drawn on the server: no script, nothing fetched, text escaped.

The strict CSP forbids inline styles and scripts, so every colour and size is an SVG presentation
attribute, and each chart says what it shows in its <title> and <desc> for screen readers.
"""

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

from app.domain.edit_mix import OUTCOMES

CONDITION_ORDER = ("scratch", "refine_human", "refine_llm")
EDIT_OUTCOMES = OUTCOMES  # kept … deleted, undecided (left pending at the submit), added
OUTCOME_NAMES = {
    "kept": "kept",
    "resized": "resized",
    "relabelled": "relabelled",
    "resized_and_relabelled": "resized and relabelled",
    "deleted": "deleted",
    "undecided": "undecided",
    "added": "added",
}
# Colour-blind-safe (Okabe-Ito) so the stacked segments stay apart in print and for most readers;
# undecided in its neutral grey: nobody decided those pre-labels either way.
OUTCOME_COLOURS = {
    "kept": "#009E73",
    "resized": "#F0E442",
    "relabelled": "#E69F00",
    "resized_and_relabelled": "#CC79A7",
    "deleted": "#D55E00",
    "undecided": "#999999",
    "added": "#0072B2",
}
INK, MUTED, GRID, OURS, REFERENCE = "#1b2430", "#5b6675", "#d9dee5", "#1d4e89", "#9aa1ab"
FONT_SIZE = 12


def _text(value: object) -> str:
    """Any text placed in the markup: escaped, quotes included (it may land in an attribute)."""
    return escape(str(value), quote=True)


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Ticks 0, step, 2·step … covering [0, high] with a step of 1, 2 or 5 times a power of ten."""
    if not (high > 0) or math.isinf(high):
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < high - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:g}"


def _svg(
    width: int, height: int, chart_id: str, testid: str, title: str, description: str, body: list[str]
) -> Markup:
    # No xmlns: inline SVG in HTML needs none, and the chart then carries no URL of any kind.
    head = (
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" aria-label="{_text(title)}" '
        f'data-testid="{_text(testid)}" id="{_text(chart_id)}" font-size="{FONT_SIZE}" fill="{INK}">'
        f'<title id="{chart_id}-title">{_text(title)}</title>'
        f'<desc id="{chart_id}-desc">{_text(description)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1) -> str:
    return f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{stroke}" stroke-width="{width}"/>'


def _diamond(cx: float, cy: float, size: float, fill: str) -> str:
    """A square turned 45°: the published study's marker, apart from our dots even in greyscale."""
    half = size / 2
    return (
        f'<rect x="{cx - half}" y="{cy - half}" width="{size}" height="{size}" fill="{fill}" '
        f'transform="rotate(45 {cx} {cy})"/>'
    )


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" (95% CI {low:.1f} to {high:.1f})"


def time_chart(
    per_condition: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Any]],
    *,
    document_minutes: Mapping[str, Sequence[float]] | None = None,
    chart_id: str = "time-chart",
    testid: str = "time-chart",
) -> Markup:
    """Mean active minutes per note of each condition with its 95% CI; the published study's in grey beside.

    `document_minutes` (per condition, one value per note) adds the notes as small dots when given.
    """
    conditions = [c for c in CONDITION_ORDER if c in per_condition] + sorted(
        set(per_condition) - set(CONDITION_ORDER)
    )
    document_minutes = document_minutes or {}
    candidates = [0.0]
    for condition in conditions:
        ours = per_condition[condition]
        published = reference.get(condition) or {}
        for key in ("mean", "ci_low", "ci_high"):
            for figure in (ours.get(key), published.get(key)):
                if figure is not None and math.isfinite(figure):
                    candidates.append(float(figure))
        candidates.extend(float(v) for v in document_minutes.get(condition, ()) if math.isfinite(v))
    ticks = nice_ticks(max(candidates))
    left, right, top, row_height, bottom = 130, 24, 34, 52, 44
    width = 660
    plot_width = width - left - right
    height = top + row_height * max(len(conditions), 1) + bottom
    scale = ticks[-1] or 1.0

    def x(minutes: float) -> float:
        return round(left + plot_width * max(0.0, minutes) / scale, 2)

    body: list[str] = []
    axis_y = top + row_height * max(len(conditions), 1)
    for tick in ticks:
        body.append(
            _line(x(tick), top - 6, x(tick), axis_y, GRID)
            + f'<text x="{x(tick)}" y="{axis_y + 16}" text-anchor="middle" fill="{MUTED}">'
            f"{_tick_label(tick)}</text>"
        )
    body.append(_line(left, axis_y, left + plot_width, axis_y, MUTED))
    body.append(
        f'<text x="{left + plot_width / 2}" y="{axis_y + 36}" text-anchor="middle" fill="{MUTED}">'
        "active minutes per note</text>"
    )
    # Legend
    body.append(
        f'<circle cx="{left + 6}" cy="14" r="5" fill="{OURS}"/>'
        f'<text x="{left + 16}" y="18">this study: mean and 95% CI</text>'
        + _diamond(left + 230.5, 13.5, 9, REFERENCE)
        + f'<text x="{left + 244}" y="18" fill="{MUTED}">published study (216 notes)</text>'
    )
    described = []
    for row, condition in enumerate(conditions):
        centre = top + row_height * row + row_height / 2
        ours = per_condition[condition]
        published = reference.get(condition) or {}
        body.append(f'<text x="{left - 10}" y="{centre + 4}" text-anchor="end">{_text(condition)}</text>')
        mean, low, high, n = ours.get("mean"), ours.get("ci_low"), ours.get("ci_high"), ours.get("n", 0)
        ours_y = centre - 8
        group = [f'<g data-condition="{_text(condition)}" data-series="ours">']
        summary = (
            f"{condition}: mean {_number(mean)} min{_interval(low, high)}, n = {n}"
            if mean is not None
            else f"{condition}: no timed note yet"
        )
        group.append(f"<title>{_text(summary)}</title>")
        for value in document_minutes.get(condition, ()):
            group.append(f'<circle cx="{x(value)}" cy="{ours_y}" r="2.5" fill="{OURS}" fill-opacity="0.35"/>')
        if low is not None and high is not None:
            group.append(_line(x(low), ours_y, x(high), ours_y, OURS, 2))
            for end in (low, high):  # the caps
                group.append(_line(x(end), ours_y - 5, x(end), ours_y + 5, OURS, 2))
        if mean is not None:
            group.append(f'<circle cx="{x(mean)}" cy="{ours_y}" r="5" fill="{OURS}" data-mean="{mean!r}"/>')
        else:
            group.append(f'<text x="{left + 4}" y="{ours_y + 4}" fill="{MUTED}">no timed note yet</text>')
        group.append("</g>")
        body.extend(group)
        described.append(summary)
        if published.get("mean") is not None:
            ref_y = centre + 10
            p_mean, p_low, p_high = published["mean"], published.get("ci_low"), published.get("ci_high")
            reference_summary = f"published {condition}: mean {_number(p_mean)} min{_interval(p_low, p_high)}"
            body.append(
                f'<g data-condition="{_text(condition)}" data-series="published">'
                f"<title>{_text(reference_summary)}</title>"
            )
            if p_low is not None and p_high is not None:
                body.append(_line(x(p_low), ref_y, x(p_high), ref_y, REFERENCE, 2))
            body.append(_diamond(x(p_mean), ref_y, 9, REFERENCE) + "</g>")
            described.append(reference_summary)
    title = "Active minutes per note by condition, with the published study's figures in grey"
    return _svg(width, height, chart_id, testid, title, "; ".join(described) or "no condition", body)


def edit_mix_chart(
    by_condition: Mapping[str, Mapping[str, int]], *, chart_id: str = "edit-mix-chart"
) -> Markup:
    """Per condition, a horizontal bar split into the shares of kept, resized … deleted, undecided and
    added spans."""
    conditions = [c for c in CONDITION_ORDER if c in by_condition] + sorted(
        set(by_condition) - set(CONDITION_ORDER)
    )
    legend_rows = math.ceil(len(EDIT_OUTCOMES) / 3)
    left, right, top, row_height, bottom = 130, 80, 20, 40, 42 + 18 * legend_rows
    width = 660
    plot_width = width - left - right
    height = top + row_height * max(len(conditions), 1) + bottom
    axis_y = top + row_height * max(len(conditions), 1)
    body: list[str] = []
    for share in (0, 25, 50, 75, 100):
        position = round(left + plot_width * share / 100, 2)
        body.append(
            _line(position, top - 4, position, axis_y, GRID)
            + f'<text x="{position}" y="{axis_y + 16}" text-anchor="middle" fill="{MUTED}">{share}%</text>'
        )
    described = []
    for row, condition in enumerate(conditions):
        mix = by_condition[condition]
        total = sum(int(mix.get(outcome, 0)) for outcome in EDIT_OUTCOMES)
        bar_y = top + row_height * row + 8
        body.append(f'<text x="{left - 10}" y="{bar_y + 16}" text-anchor="end">{_text(condition)}</text>')
        if not total:
            body.append(f'<text x="{left + 4}" y="{bar_y + 16}" fill="{MUTED}">no pre-labels</text>')
            described.append(f"{condition}: no pre-labels")
            continue
        start = 0.0
        parts = []
        for outcome in EDIT_OUTCOMES:
            count = int(mix.get(outcome, 0))
            if not count:
                continue
            share = count / total
            segment_width = plot_width * share
            name = OUTCOME_NAMES[outcome]
            parts.append(f"{name} {count} ({share:.0%})")
            body.append(
                f'<rect x="{round(left + start, 2)}" y="{bar_y}" width="{round(segment_width, 2)}" '
                f'height="24" '
                f'fill="{OUTCOME_COLOURS[outcome]}" data-outcome="{outcome}" data-count="{count}">'
                f"<title>{_text(f'{condition}: {name} {count} of {total} ({share:.0%})')}</title></rect>"
            )
            start += segment_width
        body.append(f'<text x="{left + plot_width + 8}" y="{bar_y + 16}" fill="{MUTED}">n = {total}</text>')
        described.append(f"{condition}: " + ", ".join(parts))
    # The legend in lines of three columns: the longer names do not fit on one.
    for index, outcome in enumerate(EDIT_OUTCOMES):
        position, legend_y = left + 160 * (index % 3), axis_y + 36 + 18 * (index // 3)
        body.append(
            f'<rect x="{position}" y="{legend_y - 10}" width="11" height="11" '
            f'fill="{OUTCOME_COLOURS[outcome]}"/>'
            f'<text x="{position + 16}" y="{legend_y}">{_text(OUTCOME_NAMES[outcome])}</text>'
        )
    title = "Edit mix per condition: what became of each pre-label, and the spans added"
    return _svg(
        width, height, chart_id, "edit-mix-chart", title, "; ".join(described) or "no pre-labels", body
    )


def agreement_chart(
    per_label: Mapping[str, Mapping[str, Any] | None],
    overall: Mapping[str, Any] | None = None,
    *,
    measure: str = "strict span F1",
    chart_id: str = "agreement-chart",
) -> Markup:
    """Per label, a horizontal bar of an agreement figure ({"value", "ci"}, from 0 to 1) with its 95% CI as
    a whisker; "all labels" last when ``overall`` is given. A label with no figure says so in words."""
    rows = list(per_label.items()) + ([("all labels", overall)] if overall is not None else [])
    left, right, top, row_height, bottom = 130, 110, 12, 26, 40
    width = 660
    plot_width = width - left - right
    height = top + row_height * max(len(rows), 1) + bottom
    axis_y = top + row_height * max(len(rows), 1)

    def x(value: float) -> float:
        return round(left + plot_width * min(1.0, max(0.0, value)), 2)

    body: list[str] = []
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        body.append(
            _line(x(tick), top - 4, x(tick), axis_y, GRID)
            + f'<text x="{x(tick)}" y="{axis_y + 16}" text-anchor="middle" fill="{MUTED}">{tick:g}</text>'
        )
    body.append(
        f'<text x="{left + plot_width / 2}" y="{axis_y + 34}" text-anchor="middle" fill="{MUTED}">'
        f"{_text(measure)}, mean over pairs of physicians</text>"
    )
    described = []
    for row, (label, figure) in enumerate(rows):
        bar_y = top + row_height * row + 4
        value = None if figure is None else figure.get("value")
        ci = None if figure is None else figure.get("ci")
        body.append(f'<text x="{left - 10}" y="{bar_y + 13}" text-anchor="end">{_text(label)}</text>')
        if value is None:
            body.append(f'<text x="{left + 4}" y="{bar_y + 13}" fill="{MUTED}">nothing to compare yet</text>')
            described.append(f"{label}: nothing to compare yet")
            continue
        interval = "" if not ci else f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})"
        summary = f"{label}: {value:.2f}{interval}"
        fill = INK if overall is not None and row == len(rows) - 1 else OURS  # "all labels" apart
        group = [f'<g data-label="{_text(label)}" data-value="{value!r}"><title>{_text(summary)}</title>']
        group.append(
            f'<rect x="{left}" y="{bar_y}" width="{round(x(value) - left, 2)}" height="16" fill="{fill}" '
            'fill-opacity="0.75"/>'
        )
        if ci:
            centre = bar_y + 8
            group.append(_line(x(ci[0]), centre, x(ci[1]), centre, INK, 1.5))
            for end in ci:
                group.append(_line(x(end), centre - 5, x(end), centre + 5, INK, 1.5))
        group.append(
            f'<text x="{left + plot_width + 8}" y="{bar_y + 13}" fill="{MUTED}">{value:.2f}'
            f"{'' if not ci else f' [{ci[0]:.2f}, {ci[1]:.2f}]'}</text></g>"
        )
        body.extend(group)
        described.append(summary)
    title = f"Agreement per label: {measure} with its 95% CI"
    return _svg(width, height, chart_id, "agreement-chart", title, "; ".join(described) or "no label", body)
