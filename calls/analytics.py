"""Reads for the analytics page: what a business's calls added up to over a period of local days.

Every function takes the business and a `Period` (local dates, both ends included) and runs one query, whatever
the number of calls: grouping, counting and summing happen in the database, by day in the business's time zone.
Turn-latency percentiles use PostgreSQL's `percentile_cont`; SQLite (the embedded dev mode) has no percentile
aggregate, so there the one query fetches the measurements and Python interpolates the same way.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Aggregate, Avg, CharField, Count, FloatField, Func, Q, QuerySet, Sum
from django.db.models.fields.json import KT, KeyTransform
from django.db.models.functions import Cast, ExtractHour, ExtractIsoWeekDay, TruncDate

from accounts.models import Business
from calls.models import Call, CallEvent
from calls.outcomes import OUTCOME_LABELS
from calls.selectors.local_time import local_day_bounds
from calls.selectors.timeline import percentile

MAX_PERIOD_DAYS = 366
PRESET_DAYS = (7, 30, 90)
DEFAULT_PRESET_DAYS = 30

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- the period --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """Local calendar days `start`..`end`, both included, in the business's time zone; the calls of one
    channel (phone or browser test calls) or, with `channel` empty, all of them."""

    start: dt.date
    end: dt.date
    channel: str = ""

    @classmethod
    def last_days(cls, days: int, *, today: dt.date, channel: str = "") -> Period:
        """The `days` days ending with (and including) `today`."""
        return cls(start=today - dt.timedelta(days=days - 1), end=today, channel=channel)

    @property
    def length(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.length)]


def _bounds(business: Business, period: Period) -> tuple[dt.datetime, dt.datetime]:
    """[the first day's local midnight, the local midnight after the last day)."""
    return (local_day_bounds(business=business, day=period.start)[0],
            local_day_bounds(business=business, day=period.end)[1])


def _calls(business: Business, period: Period) -> QuerySet[Call]:
    starts_at, ends_at = _bounds(business, period)
    # order_by(): no default ordering may leak into a GROUP BY.
    calls = Call.objects.filter(business=business, started_at__gte=starts_at, started_at__lt=ends_at)
    return (calls.filter(channel=period.channel) if period.channel else calls).order_by()


def _latency_events(business: Business, period: Period) -> QuerySet[CallEvent]:
    """Turn-latency events of the period's calls; a turn counts on the local day its call started."""
    starts_at, ends_at = _bounds(business, period)
    events = CallEvent.objects.filter(call__business=business, call__started_at__gte=starts_at,
                                      call__started_at__lt=ends_at, kind=CallEvent.Kind.LATENCY)
    return (events.filter(call__channel=period.channel) if period.channel else events).order_by()


# --- percentiles -------------------------------------------------------------------------------------------

class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)`: linear interpolation."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()
    allow_distinct = False

    def __init__(self, expression, fraction: float, **extra) -> None:
        fraction = float(fraction)
        if not 0 <= fraction <= 1:
            raise ValueError("A percentile's fraction lies between 0 and 1.")
        # A float we checked, never user input: safe to put in the SQL text.
        super().__init__(expression, fraction=repr(fraction), **extra)


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def _numeric_latency_events(business: Business, period: Period) -> QuerySet[CallEvent]:
    """On PostgreSQL: latency events whose payload's "ms" is a JSON number, so the cast cannot fail."""
    return (_latency_events(business, period)
            .alias(ms_type=Func(KeyTransform("ms", "payload"), function="JSONB_TYPEOF", output_field=CharField()))
            .filter(ms_type="number"))


def _ms_value(payload: object) -> float | None:
    ms = payload.get("ms") if isinstance(payload, dict) else None
    return float(ms) if isinstance(ms, (int, float)) and not isinstance(ms, bool) else None


# --- what the page shows -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayStats:
    day: dt.date
    calls: int
    seconds: int
    cost_usd: Decimal

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        return self.cost_usd / self.calls if self.calls else None


@dataclass(frozen=True)
class DayLatency:
    day: dt.date
    turns: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class LatencySummary:
    turns: int
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class OutcomeCount:
    outcome: str
    calls: int
    share: float  # of all the period's calls, 0..1

    @property
    def label(self) -> str:
        return OUTCOME_LABELS.get(self.outcome) or self.outcome.replace("_", " ").capitalize()


@dataclass(frozen=True)
class BusyHours:
    """Calls started in each local hour of each weekday: `grid[weekday][hour]`, Monday = 0."""

    grid: list[list[int]]

    @property
    def peak(self) -> int:
        return max(max(row) for row in self.grid)

    def busiest(self) -> tuple[int, int, int] | None:
        """(weekday, hour, calls) of the busiest hour, the earliest in the week on a tie; None without calls."""
        cells = [(-calls, weekday, hour) for weekday, row in enumerate(self.grid) for hour, calls in enumerate(row)]
        calls, weekday, hour = min(cells)
        return (weekday, hour, -calls) if calls else None

    def ranked(self) -> list[tuple[str, int, int]]:
        """(weekday name, hour, calls) of every hour with calls, busiest first."""
        cells = [(WEEKDAY_NAMES[weekday], hour, calls) for weekday, row in enumerate(self.grid)
                 for hour, calls in enumerate(row) if calls]
        return sorted(cells, key=lambda cell: -cell[2])


@dataclass(frozen=True)
class PeriodTotals:
    calls: int
    seconds: int
    average_seconds: float | None  # over calls with a known duration
    cost_usd: Decimal  # everything: realtime + supervisor + summary
    supervisor_cost_usd: Decimal
    summary_cost_usd: Decimal
    summarised_calls: int  # calls whose summary says whether a follow-up is needed
    follow_up_calls: int
    transferred_calls: int
    failed_calls: int
    browser_calls: int

    @property
    def minutes(self) -> float:
        return self.seconds / 60

    @property
    def realtime_cost_usd(self) -> Decimal:
        return self.cost_usd - self.supervisor_cost_usd - self.summary_cost_usd

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        return self.cost_usd / self.calls if self.calls else None

    @property
    def follow_up_share(self) -> float | None:
        return self.follow_up_calls / self.summarised_calls if self.summarised_calls else None

    @property
    def transferred_share(self) -> float | None:
        return self.transferred_calls / self.calls if self.calls else None

    @property
    def failed_share(self) -> float | None:
        return self.failed_calls / self.calls if self.calls else None


@dataclass(frozen=True)
class AnalyticsReport:
    period: Period
    time_zone: str
    totals: PeriodTotals
    latency: LatencySummary
    days: list[DayStats]
    latency_days: list[DayLatency]
    outcomes: list[OutcomeCount]
    hours: BusyHours


def calls_by_day(business: Business, period: Period) -> list[DayStats]:
    """Calls, seconds and cost for every local day of the period, days without calls included as zeros."""
    rows = (_calls(business, period).annotate(day=TruncDate("started_at", tzinfo=business.tzinfo))
            .values("day").annotate(calls=Count("id"), seconds=Sum("duration_seconds"), cost=Sum("cost_usd")))
    by_day = {row["day"]: row for row in rows}
    days = []
    for day in period.dates():
        row = by_day.get(day, {})
        days.append(DayStats(day=day, calls=row.get("calls", 0), seconds=row.get("seconds") or 0,
                             cost_usd=row.get("cost") or Decimal(0)))
    return days


def latency_by_day(business: Business, period: Period) -> list[DayLatency]:
    """Turn-latency p50/p95 for every local day of the period; None on days without a measured turn."""
    found: dict[dt.date, DayLatency] = {}
    if _is_postgres():
        ms = Cast(KT("payload__ms"), FloatField())
        rows = (_numeric_latency_events(business, period)
                .annotate(day=TruncDate("call__started_at", tzinfo=business.tzinfo)).values("day")
                .annotate(turns=Count("id"), p50=PercentileCont(ms, 0.5), p95=PercentileCont(ms, 0.95)))
        found = {row["day"]: DayLatency(row["day"], row["turns"], row["p50"], row["p95"]) for row in rows}
    else:
        values: dict[dt.date, list[float]] = defaultdict(list)
        rows = (_latency_events(business, period)
                .annotate(day=TruncDate("call__started_at", tzinfo=business.tzinfo)).values_list("day", "payload"))
        for day, payload in rows:
            ms = _ms_value(payload)
            if ms is not None:
                values[day].append(ms)
        found = {day: DayLatency(day, len(ms), percentile(ms, 0.5), percentile(ms, 0.95)) for day, ms in values.items()}
    return [found.get(day) or DayLatency(day, 0, None, None) for day in period.dates()]


def latency_for_period(business: Business, period: Period) -> LatencySummary:
    """Turn-latency p50/p95 over every measured turn of the period's calls."""
    if _is_postgres():
        ms = Cast(KT("payload__ms"), FloatField())
        row = _numeric_latency_events(business, period).aggregate(
            turns=Count("id"), p50=PercentileCont(ms, 0.5), p95=PercentileCont(ms, 0.95))
        return LatencySummary(turns=row["turns"], p50_ms=row["p50"], p95_ms=row["p95"])
    values = [ms for payload in _latency_events(business, period).values_list("payload", flat=True)
              if (ms := _ms_value(payload)) is not None]
    return LatencySummary(turns=len(values), p50_ms=percentile(values, 0.5), p95_ms=percentile(values, 0.95))


def outcome_mix(business: Business, period: Period) -> list[OutcomeCount]:
    """How the period's calls ended up, most frequent first; calls not yet summarised have the outcome ""."""
    rows = list(_calls(business, period).values("outcome").annotate(calls=Count("id")).order_by("-calls", "outcome"))
    total = sum(row["calls"] for row in rows)
    return [OutcomeCount(outcome=row["outcome"], calls=row["calls"], share=row["calls"] / total) for row in rows]


def busiest_hours(business: Business, period: Period) -> BusyHours:
    """Calls per weekday and hour of the day, both local to the business."""
    tz = business.tzinfo
    rows = (_calls(business, period)
            .annotate(weekday=ExtractIsoWeekDay("started_at", tzinfo=tz), hour=ExtractHour("started_at", tzinfo=tz))
            .values("weekday", "hour").annotate(calls=Count("id")))
    grid = [[0] * 24 for _ in range(7)]
    for row in rows:
        grid[row["weekday"] - 1][row["hour"]] = row["calls"]
    return BusyHours(grid=grid)


def period_totals(business: Business, period: Period) -> PeriodTotals:
    """The headline figures of the period, in one aggregate query."""
    transferred = Q(outcome="transferred") | Q(end_reason="transferred")
    row = _calls(business, period).aggregate(
        calls=Count("id"), seconds=Sum("duration_seconds"), average_seconds=Avg("duration_seconds"),
        cost=Sum("cost_usd"), supervisor_cost=Sum("supervisor_cost_usd"), summary_cost=Sum("summary_cost_usd"),
        summarised=Count("id", filter=Q(follow_up_needed__isnull=False)),
        follow_up=Count("id", filter=Q(follow_up_needed=True)),
        transferred=Count("id", filter=transferred),
        failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        browser=Count("id", filter=Q(channel=Call.Channel.BROWSER)),
    )
    return PeriodTotals(
        calls=row["calls"], seconds=row["seconds"] or 0,
        average_seconds=float(row["average_seconds"]) if row["average_seconds"] is not None else None,
        cost_usd=row["cost"] or Decimal(0), supervisor_cost_usd=row["supervisor_cost"] or Decimal(0),
        summary_cost_usd=row["summary_cost"] or Decimal(0), summarised_calls=row["summarised"],
        follow_up_calls=row["follow_up"], transferred_calls=row["transferred"], failed_calls=row["failed"],
        browser_calls=row["browser"])


def analytics_report(business: Business, period: Period) -> AnalyticsReport:
    """Everything the analytics page shows, in a fixed number of queries (six), whatever the number of calls."""
    return AnalyticsReport(
        period=period, time_zone=business.time_zone, totals=period_totals(business, period),
        latency=latency_for_period(business, period), days=calls_by_day(business, period),
        latency_days=latency_by_day(business, period), outcomes=outcome_mix(business, period),
        hours=busiest_hours(business, period))


# --- the CSV export --------------------------------------------------------------------------------------------

ANALYTICS_CSV_COLUMNS = ["day", "calls", "seconds", "minutes", "cost_usd", "cost_per_call_usd", "latency_turns",
                         "latency_p50_ms", "latency_p95_ms"]


def _csv_figures(*, calls: int, seconds: int, cost_usd: Decimal, turns: int, p50_ms: float | None,
                 p95_ms: float | None) -> list[object]:
    """One row's figures, unrounded where the page rounds for reading (a spreadsheet does its own rounding)."""
    per_call = (cost_usd / calls).quantize(Decimal("0.000001")) if calls else ""
    return [calls, seconds, f"{seconds / 60:.2f}", cost_usd, per_call, turns,
            "" if p50_ms is None else f"{p50_ms:.1f}", "" if p95_ms is None else f"{p95_ms:.1f}"]


def analytics_csv_rows(report: AnalyticsReport) -> list[list[object]]:
    """The page's per-day figures (every local day of the period, quiet days as zeros), then the period's totals
    in a last row whose day is "total". A period is at most MAX_PERIOD_DAYS days, so this is a bounded list."""
    latency_by_date = {d.day: d for d in report.latency_days}
    rows: list[list[object]] = []
    for day in report.days:
        latency = latency_by_date[day.day]
        rows.append([day.day.isoformat(), *_csv_figures(
            calls=day.calls, seconds=day.seconds, cost_usd=day.cost_usd, turns=latency.turns,
            p50_ms=latency.p50_ms, p95_ms=latency.p95_ms)])
    totals, latency = report.totals, report.latency
    rows.append(["total", *_csv_figures(calls=totals.calls, seconds=totals.seconds, cost_usd=totals.cost_usd,
                                        turns=latency.turns, p50_ms=latency.p50_ms, p95_ms=latency.p95_ms)])
    return rows
