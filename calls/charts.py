"""Server-rendered SVG charts: bar, line, segmented bar and heatmap, no JavaScript.

Each function returns one `<svg role="img">` with a `<title>` and `<desc>` (its accessible name and a sentence
saying what it shows), a few round ticks on the value axis and a unit, and a `<title>` tooltip on every mark.
Every piece of text goes through `escape`; the result is marked safe only once it is whole.
The page puts a table of the same numbers beside each chart for people who cannot see it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from calls.analytics import WEEKDAY_NAMES, AnalyticsReport

# Drawn about the size a half-width card shows it, so 12px text stays 12px on a laptop screen.
WIDTH = 520
HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 50, 12, 30, 36
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 8

PRIMARY = "#0f766e"
ACCENT = "#c2410c"
GRID = "#e4e8ed"
AXIS = "#8b94a1"
TEXT = "#5a6472"
OUTCOME_COLORS = {
    "booked": "#13703c", "rescheduled": "#2f9e62", "cancelled": "#b42318", "message_taken": "#1f4fa3",
    "answered": "#0f766e", "transferred": "#7c3aed", "abandoned": "#8b94a1", "spam": "#a16207", "other": "#475569",
    "": "#cbd2da",
}
FALLBACK_COLORS = ("#0e7490", "#be185d", "#4d7c0f", "#9333ea")


# --- numbers and labels --------------------------------------------------------------------------------------

def nice_ticks(maximum: float, *, target: int = 4, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least `maximum`: steps of 1, 2, 2.5 or 5 times a power of ten."""
    maximum = maximum if maximum > 0 else 1
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = 10 * magnitude
    for multiple in (1, 2, 2.5, 5, 10):
        candidate = multiple * magnitude
        if candidate >= raw and not (integer and candidate != int(candidate)):
            step = candidate
            break
    if integer:
        step = max(1, step)
    count = max(1, math.ceil(maximum / step - 1e-9))
    return [round(i * step, 10) for i in range(count + 1)]


def _decimals(step: float) -> int:
    for places in range(5):
        if abs(round(step, places) - step) < 1e-9:
            return places
    return 4


def tick_label(value: float, step: float, prefix: str = "") -> str:
    return f"{prefix}{value:,.{_decimals(step)}f}"


def format_count(value: float, noun: str) -> str:
    value = int(round(value))
    return f"{value:,} {noun if value == 1 else noun + 's'}"


def format_minutes(value: float) -> str:
    return f"{value:,.1f} min"


def format_usd(value: float | Decimal, places: int = 2) -> str:
    return f"${float(value):,.{places}f}"


def format_ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _num(value: float) -> str:
    """A coordinate: short, and never in exponent notation."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


# --- shared pieces ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CategoryAxis:
    """The categories along x: a full name per category (for tooltips) and the few short labels drawn."""

    names: list[str]
    labels: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.names)


def day_axis(days: Sequence[dt.date]) -> CategoryAxis:
    """Days along x: every day labelled in a week, else about eight evenly spaced labels (a week apart if it fits)."""
    short = len(days) <= 7
    step = next((s for s in (1, 2, 3, 7, 14, 28, 56, 91) if math.ceil(len(days) / s) <= MAX_X_LABELS), 91)
    labels = [(i, f"{day:%a} {day.day}" if short else f"{day.day} {day:%b}") for i, day in enumerate(days)
              if i % step == 0]
    return CategoryAxis(names=[f"{day:%a} {day.day} {day:%b %Y}" for day in days], labels=labels)


def _open(chart_id: str, title: str, description: str, height: int = HEIGHT) -> list[str]:
    chart_id = escape(chart_id)
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {height}" '
            f'role="img" aria-labelledby="{chart_id}-title {chart_id}-desc">',
            f'<title id="{chart_id}-title">{escape(title)}</title>',
            f'<desc id="{chart_id}-desc">{escape(description)}</desc>']


def _close(parts: list[str]) -> SafeString:
    parts.append("</svg>")
    return mark_safe("\n".join(parts))


def _value_axis(parts: list[str], ticks: list[float], unit: str, prefix: str) -> None:
    """Horizontal grid lines with their values on the left, and the unit above them."""
    step = ticks[1] - ticks[0]
    for value in ticks:
        y = TOP + PLOT_HEIGHT - value / ticks[-1] * PLOT_HEIGHT
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + PLOT_WIDTH}" y1="{_num(y)}" y2="{_num(y)}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end" fill="{TEXT}">'
                     f'{escape(tick_label(value, step, prefix))}</text>')
    parts.append(f'<text class="unit" x="2" y="{TOP - 14}" fill="{TEXT}">{escape(unit)}</text>')


def _category_axis(parts: list[str], axis: CategoryAxis) -> None:
    band = PLOT_WIDTH / max(1, len(axis))
    baseline = TOP + PLOT_HEIGHT
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + PLOT_WIDTH}" y1="{baseline}" y2="{baseline}" '
                 f'stroke="{AXIS}"/>')
    for index, label in axis.labels:
        x = LEFT + (index + .5) * band
        parts.append(f'<line class="axis" x1="{_num(x)}" x2="{_num(x)}" y1="{baseline}" y2="{baseline + 4}" '
                     f'stroke="{AXIS}"/>')
        parts.append(f'<text class="tick" x="{_num(x)}" y="{baseline + 18}" text-anchor="middle" fill="{TEXT}">'
                     f'{escape(label)}</text>')


def _empty_note(parts: list[str], text: str) -> None:
    parts.append(f'<text class="empty" x="{LEFT + PLOT_WIDTH / 2}" y="{TOP + PLOT_HEIGHT / 2}" '
                 f'text-anchor="middle" fill="{TEXT}">{escape(text)}</text>')


# --- the charts ------------------------------------------------------------------------------------------

def bar_chart(*, chart_id: str, title: str, description: str, axis: CategoryAxis, values: Sequence[float],
              unit: str, value_text: Callable[[float], str], prefix: str = "", integer: bool = False,
              color: str = PRIMARY, empty_text: str = "Nothing in this period") -> SafeString:
    """One bar per category, zero-height where the value is 0, so the axis stays continuous."""
    parts = _open(chart_id, title, description)
    ticks = nice_ticks(max(values, default=0), integer=integer)
    _value_axis(parts, ticks, unit, prefix)
    band = PLOT_WIDTH / max(1, len(axis))
    width = max(1.0, band * (.72 if band > 4 else .9))
    baseline = TOP + PLOT_HEIGHT
    for index, (name, value) in enumerate(zip(axis.names, values)):
        height = value / ticks[-1] * PLOT_HEIGHT
        x = LEFT + index * band + (band - width) / 2
        parts.append(f'<rect class="bar" x="{_num(x)}" y="{_num(baseline - height)}" width="{_num(width)}" '
                     f'height="{_num(height)}" fill="{escape(color)}" rx="{1.5 if width > 4 else 0}">'
                     f'<title>{escape(name)}: {escape(value_text(value))}</title></rect>')
    _category_axis(parts, axis)
    if not any(values):
        _empty_note(parts, empty_text)
    return _close(parts)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no value that day, the line breaks
    color: str
    dashed: bool = False


def line_chart(*, chart_id: str, title: str, description: str, axis: CategoryAxis, series: Sequence[Series],
               unit: str, value_text: Callable[[float], str], prefix: str = "",
               empty_text: str = "Nothing in this period") -> SafeString:
    """One line per series with a dot per value; a missing value breaks the line rather than faking a zero."""
    parts = _open(chart_id, title, description)
    present = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(present, default=0))
    _value_axis(parts, ticks, unit, prefix)
    band = PLOT_WIDTH / max(1, len(axis))
    radius = 3 if len(axis) <= 31 else 2 if len(axis) <= 92 else 1.4
    for s in series:
        points = [(LEFT + (i + .5) * band, TOP + PLOT_HEIGHT - v / ticks[-1] * PLOT_HEIGHT, i, v)
                  for i, v in enumerate(s.values) if v is not None]
        path, previous = [], None
        for x, y, index, _ in points:
            path.append(f"{'L' if previous == index - 1 else 'M'}{_num(x)} {_num(y)}")
            previous = index
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        if path:
            parts.append(f'<path class="line" d="{" ".join(path)}" fill="none" stroke="{escape(s.color)}" '
                         f'stroke-width="2" stroke-linejoin="round"{dash}/>')
        for x, y, index, value in points:
            parts.append(f'<circle class="dot" cx="{_num(x)}" cy="{_num(y)}" r="{radius}" fill="{escape(s.color)}">'
                         f'<title>{escape(axis.names[index])}, {escape(s.name)}: {escape(value_text(value))}</title>'
                         f'</circle>')
    _category_axis(parts, axis)
    # The legend, top right: a short stretch of each line, dashed like the line, and its name.
    x = WIDTH - RIGHT
    for s in reversed(series):
        text_width = 7 * len(s.name)
        x -= text_width
        parts.append(f'<text class="legend" x="{_num(x)}" y="{TOP - 14}" fill="{TEXT}">{escape(s.name)}</text>')
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(f'<line x1="{_num(x - 26)}" x2="{_num(x - 6)}" y1="{TOP - 18}" y2="{TOP - 18}" '
                     f'stroke="{escape(s.color)}" stroke-width="2"{dash}/>')
        x -= 40
    if not present:
        _empty_note(parts, empty_text)
    return _close(parts)


@dataclass(frozen=True)
class Segment:
    label: str
    value: int
    color: str


def segmented_bar(*, chart_id: str, title: str, description: str, segments: Sequence[Segment],
                  noun: str = "call", empty_text: str = "Nothing in this period") -> SafeString:
    """One bar split into shares (a 100 % stacked bar), and a legend with each share's count and percentage."""
    rows = math.ceil(len(segments) / 2)
    height = 8 + 32 + 16 + max(1, rows) * 24
    parts = _open(chart_id, title, description, height)
    total = sum(s.value for s in segments)
    x = 0.0
    if not total:
        parts.append(f'<rect class="segment-empty" x="0" y="8" width="{WIDTH}" height="32" rx="6" fill="{GRID}"/>')
        parts.append(f'<text class="empty" x="{WIDTH / 2}" y="76" text-anchor="middle" fill="{TEXT}">'
                     f'{escape(empty_text)}</text>')
    for segment in segments:
        if not total:
            break
        width = segment.value / total * WIDTH
        share = f"{segment.value / total:.0%}"
        parts.append(f'<rect class="segment" x="{_num(x)}" y="8" width="{_num(width)}" height="32" '
                     f'fill="{escape(segment.color)}"><title>{escape(segment.label)}: '
                     f'{escape(format_count(segment.value, noun))} ({share})</title></rect>')
        x += width
    for index, segment in enumerate(segments if total else []):
        column, row = index % 2, index // 2
        lx, ly = column * WIDTH / 2, 8 + 32 + 16 + row * 24
        share = f"{segment.value / total:.0%}"
        parts.append(f'<rect x="{_num(lx)}" y="{ly}" width="12" height="12" rx="2" fill="{escape(segment.color)}"/>')
        parts.append(f'<text class="legend" x="{_num(lx + 18)}" y="{ly + 11}" fill="{TEXT}">'
                     f'<tspan class="legend-label">{escape(segment.label)}</tspan> '
                     f'{escape(f"{segment.value:,}")} ({share})</text>')
    return _close(parts)


def _shade(intensity: float) -> str:
    """From a pale tint of the brand colour (few) to the brand colour itself (most)."""
    pale, full = (0xd9, 0xef, 0xec), (0x0f, 0x76, 0x6e)
    return "#" + "".join(f"{round(p + (f - p) * intensity):02x}" for p, f in zip(pale, full))


def heatmap(*, chart_id: str, title: str, description: str, grid: Sequence[Sequence[int]],
            row_labels: Sequence[str], row_names: Sequence[str], axis_title: str, noun: str = "call") -> SafeString:
    """Weekday rows × 24 hour columns; darker is busier, and each cell with calls shows its count."""
    left, top, cell_height = 44, 8, 26
    cell_width = (WIDTH - left - RIGHT) / 24
    plot_bottom = top + cell_height * len(grid)
    height = plot_bottom + 72
    parts = _open(chart_id, title, description, height)
    peak = max((max(row) for row in grid), default=0)
    for r, row in enumerate(grid):
        y = top + r * cell_height
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + cell_height / 2 + 4}" text-anchor="end" '
                     f'fill="{TEXT}">{escape(row_labels[r])}</text>')
        for hour, value in enumerate(row):
            x = left + hour * cell_width
            intensity = value / peak if peak else 0
            fill = _shade(intensity) if value else "#f1f3f5"
            tip = f"{row_names[r]} {hour:02d}:00–{hour:02d}:59: {format_count(value, noun)}"
            parts.append(f'<rect class="cell" x="{_num(x + 1)}" y="{y + 1}" width="{_num(cell_width - 2)}" '
                         f'height="{cell_height - 2}" rx="3" fill="{fill}" data-value="{value}">'
                         f'<title>{escape(tip)}</title></rect>')
            if value:
                colour = "#ffffff" if intensity > .55 else "#131a22"
                parts.append(f'<text class="cell-value" x="{_num(x + cell_width / 2)}" y="{y + cell_height / 2 + 4}" '
                             f'text-anchor="middle" fill="{colour}">{value}</text>')
    for hour in range(0, 24, 3):
        x = left + hour * cell_width
        parts.append(f'<text class="tick" x="{_num(x + 1)}" y="{plot_bottom + 16}" fill="{TEXT}">{hour:02d}:00</text>')
    parts.append(f'<text class="unit" x="{left}" y="{plot_bottom + 38}" fill="{TEXT}">{escape(axis_title)}</text>')
    # The scale, under the axis title: fewer → more.
    x, y = left + 44, plot_bottom + 54
    parts.append(f'<text class="legend" x="{x - 6}" y="{y + 10}" text-anchor="end" fill="{TEXT}">Fewer</text>')
    for step in range(5):
        parts.append(f'<rect x="{x + step * 16}" y="{y}" width="14" height="12" rx="2" fill="{_shade(step / 4)}"/>')
    parts.append(f'<text class="legend" x="{x + 5 * 16 + 4}" y="{y + 10}" fill="{TEXT}">More</text>')
    return _close(parts)


# --- the analytics page's charts ---------------------------------------------------------------------------

def _peak_sentence(axis: CategoryAxis, values: Sequence[float], value_text: Callable[[float], str]) -> str:
    if not any(values):
        return "Nothing in this period."
    index = max(range(len(values)), key=lambda i: (values[i], -i))
    return f"Highest: {value_text(values[index])} on {axis.names[index]}."


def analytics_charts(report: AnalyticsReport) -> dict[str, SafeString]:
    """The page's charts, by name: calls, minutes, cost, cost_per_call, latency, outcomes, hours."""
    axis = day_axis([d.day for d in report.days])
    span = f"from {axis.names[0]} to {axis.names[-1]}" if len(axis) else ""
    calls = [d.calls for d in report.days]
    minutes = [d.minutes for d in report.days]
    cost = [float(d.cost_usd) for d in report.days]
    cost_per_call = [float(d.cost_per_call_usd) if d.cost_per_call_usd is not None else None for d in report.days]

    def calls_text(v: float) -> str:
        return format_count(v, "call")

    def ms_text(v: float) -> str:
        return format_ms(v)

    charts = {
        "calls": bar_chart(chart_id="chart-calls", title="Calls per day",
                           description=f"Bar chart of calls per day {span}. {_peak_sentence(axis, calls, calls_text)}",
                           axis=axis, values=calls, unit="calls", value_text=calls_text, integer=True),
        "minutes": bar_chart(chart_id="chart-minutes", title="Minutes per day",
                             description=f"Bar chart of call minutes per day {span}. "
                                         f"{_peak_sentence(axis, minutes, format_minutes)}",
                             axis=axis, values=minutes, unit="minutes", value_text=format_minutes),
        "cost": bar_chart(chart_id="chart-cost", title="Cost per day",
                          description=f"Bar chart of cost in US dollars per day {span}. "
                                      f"{_peak_sentence(axis, cost, format_usd)}",
                          axis=axis, values=cost, unit="USD", prefix="$", value_text=format_usd, color="#1f4fa3"),
        "cost_per_call": line_chart(chart_id="chart-cost-per-call", title="Average cost per call",
                                    description=f"Line chart of the average cost of a call, per day {span}; "
                                                f"days without calls have no point.",
                                    axis=axis, series=[Series("per call", cost_per_call, "#1f4fa3")], unit="USD",
                                    prefix="$", value_text=lambda v: format_usd(v, 4)),
        "latency": line_chart(
            chart_id="chart-latency", title="Turn latency per day (p50 and p95)",
            description=f"Line chart of the time from the caller finishing to the agent starting to answer, "
                        f"per day {span}: the median (p50, solid) and the 95th percentile (p95, dashed), "
                        f"in milliseconds.",
            axis=axis, series=[Series("p50", [d.p50_ms for d in report.latency_days], PRIMARY),
                               Series("p95", [d.p95_ms for d in report.latency_days], ACCENT, dashed=True)],
            unit="ms", value_text=ms_text, empty_text="No measured turns in this period"),
    }
    fallback = iter(FALLBACK_COLORS * 4)
    segments = [Segment(o.label, o.calls, OUTCOME_COLORS.get(o.outcome) or next(fallback)) for o in report.outcomes]
    mix = "; ".join(f"{o.label} {o.calls} ({o.share:.0%})" for o in report.outcomes) or "no calls"
    charts["outcomes"] = segmented_bar(chart_id="chart-outcomes", title="Outcome mix",
                                       description=f"Stacked bar of how the period's calls ended: {mix}.",
                                       segments=segments)
    busiest = report.hours.busiest()
    busiest_text = (f"Busiest: {WEEKDAY_NAMES[busiest[0]]} {busiest[1]:02d}:00 with {format_count(busiest[2], 'call')}."
                    if busiest else "No calls in this period.")
    charts["hours"] = heatmap(chart_id="chart-hours", title="Busiest hours",
                              description=f"Heatmap of calls by weekday and hour of the day in {report.time_zone}. "
                                          f"{busiest_text}",
                              grid=report.hours.grid, row_labels=[n[:3] for n in WEEKDAY_NAMES],
                              row_names=WEEKDAY_NAMES, axis_title=f"Hour of the day ({report.time_zone})")
    return charts


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str = ""


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "—"


def headline_figures(report: AnalyticsReport) -> list[Figure]:
    """The period's headline numbers, as the page prints them."""
    totals, latency = report.totals, report.latency
    average = round(totals.average_seconds) if totals.average_seconds is not None else None
    figures = [
        Figure("Calls", f"{totals.calls:,}",
               f"{format_count(totals.browser_calls, 'browser test call')}" if totals.browser_calls else ""),
        Figure("Minutes", f"{totals.minutes:,.1f}"),
        Figure("Average call", f"{average // 60}:{average % 60:02d}" if average is not None else "—",
               "minutes:seconds"),
        Figure("Turn latency p50", format_ms(latency.p50_ms) if latency.p50_ms is not None else "—",
               f"over {format_count(latency.turns, 'turn')}" if latency.turns else "No measured turns"),
        Figure("Turn latency p95", format_ms(latency.p95_ms) if latency.p95_ms is not None else "—",
               "95 % of answers start sooner"),
        Figure("Total cost", format_usd(totals.cost_usd),
               f"Realtime {format_usd(totals.realtime_cost_usd)} · supervisor {format_usd(totals.supervisor_cost_usd)}"
               f" · summaries {format_usd(totals.summary_cost_usd)}"),
        Figure("Cost per call", format_usd(totals.cost_per_call_usd, 4) if totals.cost_per_call_usd is not None
               else "—", "average"),
        Figure("Needed a follow-up", _share(totals.follow_up_calls, totals.summarised_calls),
               f"{totals.follow_up_calls:,} of {format_count(totals.summarised_calls, 'summarised call')}"),
        Figure("Transferred", _share(totals.transferred_calls, totals.calls),
               format_count(totals.transferred_calls, "call")),
        Figure("Failed", _share(totals.failed_calls, totals.calls), format_count(totals.failed_calls, "call")),
    ]
    return figures
