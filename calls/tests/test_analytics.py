"""The analytics page: per-day figures in the business's time zone, percentiles, charts, the period form."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.models import FloatField, Value
from django.urls import reverse
from django.utils import timezone

from calls import analytics, charts
from calls.analytics import Period
from calls.forms import AnalyticsPeriodForm
from calls.models import Call, CallEvent
from tests.factories import make_call

LA = ZoneInfo("America/Los_Angeles")
SVG = "{http://www.w3.org/2000/svg}"


def local(day: str, time: str = "12:00") -> dt.datetime:
    """An aware instant from a wall-clock time in Los Angeles (Alice's business)."""
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time.fromisoformat(time), tzinfo=LA)


def days(start: str, end: str) -> Period:
    return Period(start=dt.date.fromisoformat(start), end=dt.date.fromisoformat(end))


def add_latencies(call: Call, *ms: object) -> None:
    CallEvent.objects.bulk_create([CallEvent(call=call, order=i, kind=CallEvent.Kind.LATENCY, payload={"ms": v})
                                   for i, v in enumerate(ms)])


def svg_root(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))


# --- per-day figures ---------------------------------------------------------------------------------------

def test_a_call_at_half_past_eleven_at_night_counts_on_its_local_day(alices_business):
    make_call(alices_business, started_at=local("2026-06-10", "23:30"))  # 06:30 UTC on the 11th

    by_day = {d.day: d.calls for d in analytics.calls_by_day(alices_business, days("2026-06-10", "2026-06-11"))}

    assert by_day == {dt.date(2026, 6, 10): 1, dt.date(2026, 6, 11): 0}


def test_days_are_local_days_across_the_spring_dst_change(alices_business):
    # 8 March 2026 has 23 hours in Los Angeles; each call lands on its own local day.
    for wall in [("2026-03-07", "23:30"), ("2026-03-08", "00:15"), ("2026-03-08", "23:30"), ("2026-03-09", "00:15")]:
        make_call(alices_business, started_at=local(*wall))

    by_day = {d.day: d.calls for d in analytics.calls_by_day(alices_business, days("2026-03-07", "2026-03-09"))}

    assert by_day == {dt.date(2026, 3, 7): 1, dt.date(2026, 3, 8): 2, dt.date(2026, 3, 9): 1}


def test_the_period_ends_at_local_midnight_not_utc_midnight(alices_business):
    make_call(alices_business, started_at=local("2026-06-09", "23:59"))  # the day before: out
    make_call(alices_business, started_at=local("2026-06-10", "20:00"))  # 03:00 UTC on the 11th: in
    make_call(alices_business, started_at=local("2026-06-11", "00:00"))  # the day after: out

    totals = analytics.period_totals(alices_business, days("2026-06-10", "2026-06-10"))

    assert totals.calls == 1


def test_days_without_calls_are_zeros_on_a_continuous_axis(alices_business):
    make_call(alices_business, started_at=local("2026-06-02"), duration_seconds=90, cost_usd=Decimal("0.25"))

    rows = analytics.calls_by_day(alices_business, days("2026-06-01", "2026-06-05"))

    assert [r.day for r in rows] == [dt.date(2026, 6, d) for d in range(1, 6)]
    assert [(r.calls, r.seconds, r.cost_usd) for r in rows] == [
        (0, 0, 0), (1, 90, Decimal("0.25")), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
    assert rows[0].cost_per_call_usd is None


def test_minutes_and_cost_add_up_per_day(alices_business):
    make_call(alices_business, started_at=local("2026-06-02", "09:00"), duration_seconds=120, cost_usd=Decimal("0.10"))
    make_call(alices_business, started_at=local("2026-06-02", "17:00"), duration_seconds=30, cost_usd=Decimal("0.05"))
    # Still in progress: no duration yet.
    make_call(alices_business, started_at=local("2026-06-02", "17:05"), status=Call.Status.IN_PROGRESS)

    (day,) = analytics.calls_by_day(alices_business, days("2026-06-02", "2026-06-02"))

    assert (day.calls, day.seconds, day.minutes, day.cost_usd) == (3, 150, 2.5, Decimal("0.15"))
    assert day.cost_per_call_usd == Decimal("0.05")


def test_a_channel_counts_only_its_calls_and_their_latencies(alices_business):
    phone = make_call(alices_business, started_at=local("2026-06-02", "09:00"), channel="twilio", duration_seconds=60)
    test_call = make_call(alices_business, started_at=local("2026-06-02", "10:00"), channel="browser",
                          duration_seconds=600)
    add_latencies(phone, 700)
    add_latencies(test_call, 100)
    period = Period(start=dt.date(2026, 6, 2), end=dt.date(2026, 6, 2), channel="twilio")

    (day,) = analytics.calls_by_day(alices_business, period)
    latency = analytics.latency_for_period(alices_business, period)

    assert (day.calls, day.seconds) == (1, 60)
    assert (latency.turns, latency.p50_ms) == (1, 700)
    assert analytics.period_totals(alices_business, days("2026-06-02", "2026-06-02")).calls == 2  # all, unfiltered


def test_another_business_calls_are_not_counted(alices_business, charlie):
    charlies_business = charlie.memberships.get().business
    make_call(alices_business, started_at=local("2026-06-02"))

    assert analytics.period_totals(charlies_business, days("2026-06-01", "2026-06-30")).calls == 0
    assert analytics.period_totals(alices_business, days("2026-06-01", "2026-06-30")).calls == 1


# --- outcome mix, totals -----------------------------------------------------------------------------------

def test_outcome_mix_counts_each_outcome_with_its_share(alices_business):
    for outcome in ["booked", "booked", "message_taken", ""]:
        make_call(alices_business, started_at=local("2026-06-02"), outcome=outcome)

    mix = analytics.outcome_mix(alices_business, days("2026-06-01", "2026-06-30"))

    assert [(o.outcome, o.label, o.calls, o.share) for o in mix] == [
        ("booked", "Booked", 2, .5), ("", "No outcome yet", 1, .25), ("message_taken", "Message taken", 1, .25)]


def test_period_totals_count_follow_ups_transfers_failures_and_costs(alices_business):
    make_call(alices_business, started_at=local("2026-06-02"), duration_seconds=60, follow_up_needed=True,
              cost_usd=Decimal("0.30"), supervisor_cost_usd=Decimal("0.10"), summary_cost_usd=Decimal("0.02"))
    make_call(alices_business, started_at=local("2026-06-03"), duration_seconds=120, follow_up_needed=False,
              end_reason="transferred", cost_usd=Decimal("0.10"), channel=Call.Channel.BROWSER)
    make_call(alices_business, started_at=local("2026-06-04"), status=Call.Status.FAILED)

    totals = analytics.period_totals(alices_business, days("2026-06-01", "2026-06-30"))

    assert (totals.calls, totals.seconds, totals.average_seconds) == (3, 180, 90)
    assert (totals.cost_usd, totals.realtime_cost_usd) == (Decimal("0.40"), Decimal("0.28"))
    assert totals.cost_per_call_usd == Decimal("0.40") / 3
    assert (totals.follow_up_calls, totals.summarised_calls, totals.follow_up_share) == (1, 2, .5)
    assert (totals.transferred_calls, totals.failed_calls, totals.browser_calls) == (1, 1, 1)


# --- latency -----------------------------------------------------------------------------------------------

def test_latency_percentiles_match_hand_computed_values(alices_business):
    first = make_call(alices_business, started_at=local("2026-06-02", "10:00"))
    second = make_call(alices_business, started_at=local("2026-06-02", "23:30"))  # still the 2nd, locally
    add_latencies(first, 100, 400, 1000)
    add_latencies(second, 300, 200)
    add_latencies(make_call(alices_business, started_at=local("2026-06-04")), 500)
    # Sorted 100 200 300 400 1000: p50 is the middle one; p95 sits at 3.8 → 400 + 0.8 × (1000 − 400) = 880.
    period = days("2026-06-02", "2026-06-04")

    per_day = analytics.latency_by_day(alices_business, period)
    overall = analytics.latency_for_period(alices_business, period)

    assert [(d.turns, d.p50_ms, d.p95_ms) for d in per_day] == [
        (5, 300, pytest.approx(880)), (0, None, None), (1, 500, 500)]
    # All six: 100 200 300 400 500 1000 → p50 = 350; p95 at 4.75 → 500 + 0.75 × 500 = 875.
    assert (overall.turns, overall.p50_ms, overall.p95_ms) == (6, 350, pytest.approx(875))


def test_latency_ignores_events_without_a_numeric_ms(alices_business):
    call = make_call(alices_business, started_at=local("2026-06-02"))
    add_latencies(call, 100, "fast", None, True, 300)
    CallEvent.objects.create(call=call, order=9, kind=CallEvent.Kind.LATENCY, payload={"after_vad_ms": 5})
    CallEvent.objects.create(call=call, order=10, kind=CallEvent.Kind.BARGE_IN, payload={"ms": 99999})

    overall = analytics.latency_for_period(alices_business, days("2026-06-02", "2026-06-02"))

    assert (overall.turns, overall.p50_ms) == (2, 200)


def test_the_python_percentile_agrees_with_postgresql(db):
    values = [120.0, 80.0, 950.0, 310.0, 305.0, 40.0, 2200.0]
    assert connection.vendor == "postgresql"
    for fraction in (0, .5, .9, .95, 1):
        with connection.cursor() as cursor:
            cursor.execute("SELECT percentile_cont(%s) WITHIN GROUP (ORDER BY v) FROM unnest(%s::float8[]) AS v",
                           [fraction, values])
            (expected,) = cursor.fetchone()
        assert analytics.percentile(values, fraction) == pytest.approx(expected)
    assert analytics.percentile([], .5) is None


def test_a_percentile_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError):
        analytics.PercentileCont(Value(1.0, output_field=FloatField()), 1.5)


# --- busiest hours -----------------------------------------------------------------------------------------

def test_busiest_hours_use_local_weekday_and_hour(alices_business):
    # Sunday 7 June 2026, 23:30 in Los Angeles is Monday 06:30 UTC.
    make_call(alices_business, started_at=local("2026-06-07", "23:30"))
    make_call(alices_business, started_at=local("2026-06-07", "23:05"))
    make_call(alices_business, started_at=local("2026-06-08", "09:15"))

    hours = analytics.busiest_hours(alices_business, days("2026-06-01", "2026-06-30"))

    assert hours.grid[6][23] == 2 and hours.grid[0][9] == 1 and hours.grid[0][6] == 0
    assert sum(map(sum, hours.grid)) == 3
    assert hours.busiest() == (6, 23, 2)
    assert hours.ranked() == [("Sunday", 23, 2), ("Monday", 9, 1)]


# --- a fixed number of queries -----------------------------------------------------------------------------

def _seed(business, count: int) -> None:
    for i in range(count):
        call = make_call(business, started_at=local("2026-06-01") + dt.timedelta(hours=7 * i), duration_seconds=60,
                         outcome=["booked", "answered", "spam"][i % 3], cost_usd=Decimal("0.05"))
        add_latencies(call, 200 + i, 400 + i)


@pytest.mark.parametrize("count", [1, 40])
def test_the_report_takes_six_queries_whatever_the_number_of_calls(alices_business, django_assert_num_queries, count):
    _seed(alices_business, count)

    with django_assert_num_queries(6):
        report = analytics.analytics_report(alices_business, days("2026-06-01", "2026-06-30"))

    assert report.totals.calls == count


def test_the_page_query_count_does_not_grow_with_calls(client, alice, alices_business):
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    client.force_login(alice)
    url = reverse("analytics") + "?period=custom&start=2026-06-01&end=2026-06-30"
    _seed(alices_business, 2)
    with CaptureQueriesContext(conn) as few:
        assert client.get(url).status_code == 200
    _seed(alices_business, 50)
    with CaptureQueriesContext(conn) as many:
        assert client.get(url).status_code == 200

    assert len(many) == len(few)


# --- the period form ---------------------------------------------------------------------------------------

TODAY = dt.date(2026, 6, 30)


def period_of(data: dict) -> Period | dict:
    form = AnalyticsPeriodForm(data, today=TODAY)
    return form.chosen_period() if form.is_valid() else form.errors


def test_no_choice_means_the_last_thirty_days_including_today():
    assert period_of({}) == Period(start=dt.date(2026, 6, 1), end=TODAY)


@pytest.mark.parametrize("preset, start", [("7", "2026-06-24"), ("30", "2026-06-01"), ("90", "2026-04-02")])
def test_presets_end_today(preset, start):
    assert period_of({"period": preset}) == Period(start=dt.date.fromisoformat(start), end=TODAY)


def test_the_channel_choice_is_kept_with_a_preset_and_a_custom_range():
    assert period_of({"period": "7", "channel": "twilio"}) == Period(start=dt.date(2026, 6, 24), end=TODAY,
                                                                     channel="twilio")
    assert period_of({"period": "custom", "start": "2026-01-05", "end": "2026-02-10", "channel": "browser"}) == \
        Period(start=dt.date(2026, 1, 5), end=dt.date(2026, 2, 10), channel="browser")
    assert "channel" in period_of({"channel": "fax"})


def test_a_custom_range_is_taken_as_given():
    chosen = period_of({"period": "custom", "start": "2026-01-05", "end": "2026-02-10"})
    assert chosen == days("2026-01-05", "2026-02-10")


@pytest.mark.parametrize("data, field, message", [
    ({"period": "custom", "start": "2026-03-10", "end": "2026-03-01"}, "start", "comes after the last day"),
    ({"period": "custom", "start": "2025-01-01", "end": "2026-06-01"}, "__all__", "at most 366 days"),
    ({"period": "custom", "start": "2026-06-01", "end": "2026-07-01"}, "end", "up to today"),
    ({"period": "custom", "start": "not-a-date", "end": "2026-06-01"}, "start", "valid date"),
    ({"period": "custom", "end": "2026-06-01"}, "start", "Choose the first day"),
    ({"period": "365"}, "period", "valid choice"),
])
def test_a_bad_period_is_a_form_error(data, field, message):
    errors = period_of(data)
    assert isinstance(errors, dict) and message in " ".join(errors[field])


def test_a_range_of_exactly_366_days_is_allowed():
    assert period_of({"period": "custom", "start": "2025-06-30", "end": "2026-06-30"}).length == 366


# --- charts ------------------------------------------------------------------------------------------------

def test_nice_ticks_are_round_and_cover_the_maximum():
    assert charts.nice_ticks(7, integer=True) == [0, 2, 4, 6, 8]
    assert charts.nice_ticks(3, integer=True) == [0, 1, 2, 3]
    assert charts.nice_ticks(0, integer=True) == [0, 1]
    assert charts.nice_ticks(0.83) == [0, 0.25, 0.5, 0.75, 1]
    assert charts.nice_ticks(1234) == [0, 500, 1000, 1500]


def test_a_bar_chart_is_well_formed_svg_with_one_bar_per_day_and_labels():
    axis = charts.day_axis([dt.date(2026, 6, d) for d in range(1, 8)])
    svg = svg_root(charts.bar_chart(chart_id="c", title="Calls per day", description="d", axis=axis,
                                    values=[0, 3, 6, 0, 1, 0, 2], unit="calls",
                                    value_text=lambda v: charts.format_count(v, "call"), integer=True))

    bars = svg.findall(f"{SVG}rect[@class='bar']")
    assert svg.get("role") == "img" and svg.find(f"{SVG}title").text == "Calls per day"
    assert [float(b.get("height")) for b in bars][:3] == [0, charts.PLOT_HEIGHT / 2, charts.PLOT_HEIGHT]
    assert bars[2].find(f"{SVG}title").text == "Wed 3 Jun 2026: 6 calls"
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert {"0", "2", "4", "6", "calls", "Mon 1", "Sun 7"} <= set(texts)


def test_a_long_period_labels_only_a_few_days():
    axis = charts.day_axis([dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(90)])
    assert 4 <= len(axis.labels) <= charts.MAX_X_LABELS and axis.labels[0] == (0, "1 Jan")


def test_chart_text_is_escaped():
    axis = charts.CategoryAxis(names=['<b>"x"&</b>'], labels=[(0, "<i>")])
    svg = str(charts.bar_chart(chart_id='a"b', title="<script>alert(1)</script>", description="&", axis=axis,
                               values=[1], unit="<u>", value_text=str))

    root = svg_root(svg)
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg
    assert root.find(f"{SVG}title").text == "<script>alert(1)</script>"


def test_a_line_breaks_where_a_day_has_no_value():
    axis = charts.day_axis([dt.date(2026, 6, d) for d in range(1, 6)])
    svg = svg_root(charts.line_chart(chart_id="l", title="Latency", description="d", axis=axis, unit="ms",
                                     series=[charts.Series("p50", [100, 200, None, 300, 250], "#000"),
                                             charts.Series("p95", [150, 400, None, 900, 500], "#111", dashed=True)],
                                     value_text=charts.format_ms))

    paths = svg.findall(f"{SVG}path")
    assert [p.get("d").count("M") for p in paths] == [2, 2]
    assert len(svg.findall(f"{SVG}circle")) == 8
    assert {"p50", "p95", "ms", "1,000"} <= {t.text for t in svg.iter(f"{SVG}text")}


def test_empty_charts_say_there_is_nothing_to_show():
    axis = charts.day_axis([dt.date(2026, 6, d) for d in range(1, 4)])
    line = svg_root(charts.line_chart(chart_id="l", title="t", description="d", axis=axis, unit="ms",
                                      series=[charts.Series("p50", [None] * 3, "#000")], value_text=str,
                                      empty_text="No measured turns"))
    bars = svg_root(charts.bar_chart(chart_id="b", title="t", description="d", axis=axis, values=[0, 0, 0],
                                     unit="calls", value_text=str))
    mix = svg_root(charts.segmented_bar(chart_id="m", title="t", description="d", segments=[]))

    assert "No measured turns" in {t.text for t in line.iter(f"{SVG}text")}
    assert "Nothing in this period" in {t.text for t in bars.iter(f"{SVG}text")}
    assert "Nothing in this period" in {t.text for t in mix.iter(f"{SVG}text")}


def test_the_outcome_bar_splits_the_width_by_share():
    svg = svg_root(charts.segmented_bar(chart_id="m", title="t", description="d", segments=[
        charts.Segment("Booked", 3, "#0a0"), charts.Segment("Spam", 1, "#a00")]))

    segments = svg.findall(f"{SVG}rect[@class='segment']")
    assert [float(s.get("width")) for s in segments] == [charts.WIDTH * .75, charts.WIDTH * .25]
    assert segments[0].find(f"{SVG}title").text == "Booked: 3 calls (75%)"


def test_the_heatmap_has_a_cell_per_weekday_and_hour_with_counts():
    grid = [[0] * 24 for _ in range(7)]
    grid[2][14] = 5
    svg = svg_root(charts.heatmap(chart_id="h", title="Busiest hours", description="d", grid=grid,
                                  row_labels=["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                                  row_names=analytics.WEEKDAY_NAMES, axis_title="Hour of the day"))

    cells = svg.findall(f"{SVG}rect[@class='cell']")
    busy = [c for c in cells if c.get("data-value") == "5"]
    assert len(cells) == 7 * 24 and len(busy) == 1
    assert busy[0].find(f"{SVG}title").text == "Wednesday 14:00–14:59: 5 calls"
    assert {"Mon", "Sun", "00:00", "21:00", "5"} <= {t.text for t in svg.iter(f"{SVG}text")}


# --- the page ----------------------------------------------------------------------------------------------

def test_the_page_shows_charts_and_figures_for_the_period(client, alice, alices_business):
    call = make_call(alices_business, started_at=local("2026-06-02", "10:00"), duration_seconds=150,
                     outcome="booked", cost_usd=Decimal("0.12"), follow_up_needed=True)
    add_latencies(call, 640)
    client.force_login(alice)

    page = client.get(reverse("analytics"), {"period": "custom", "start": "2026-06-01", "end": "2026-06-07"})

    html = page.content.decode()
    assert page.status_code == 200
    for chart_id in ["chart-calls", "chart-minutes", "chart-outcomes", "chart-hours", "chart-latency", "chart-cost"]:
        assert f'id="{chart_id}"' in html
    assert "Booked: 1 call (100%)" in html and "640 ms" in html and "$0.12" in html and "2:30" in html
    assert "America/Los_Angeles" in html


def test_the_page_links_each_set_of_calls_keeping_the_period(client, alice, alices_business):
    client.force_login(alice)
    html = client.get(reverse("analytics"), {"period": "7", "channel": "twilio"}).content.decode()
    assert 'href="?period=7&amp;channel=browser"' in html and 'href="?period=7"' in html
    assert 'href="?period=30&amp;channel=twilio"' in html  # the presets keep the channel


def test_the_default_page_covers_the_last_thirty_days(client, alice, alices_business):
    make_call(alices_business, started_at=timezone.now() - dt.timedelta(days=2), outcome="answered")
    make_call(alices_business, started_at=timezone.now() - dt.timedelta(days=45), outcome="spam")
    client.force_login(alice)

    html = client.get(reverse("analytics")).content.decode()

    assert "Question answered: 1 call (100%)" in html and "Spam" not in html


def test_a_bad_period_shows_a_form_error_not_a_crash(client, alice, alices_business):
    client.force_login(alice)

    page = client.get(reverse("analytics"), {"period": "custom", "start": "2026-05-10", "end": "2026-05-01"})

    assert page.status_code == 200
    assert "The first day comes after the last day." in page.content.decode()
    assert page.context["report"] is None


def test_a_period_without_calls_shows_the_empty_state(client, alice, alices_business):
    client.force_login(alice)

    html = client.get(reverse("analytics"), {"period": "7"}).content.decode()

    assert "No calls in this period" in html and 'id="chart-calls"' not in html


def test_charlie_never_sees_alices_calls(client, alices_business, charlie):
    make_call(alices_business, started_at=timezone.now() - dt.timedelta(days=1), outcome="booked",
              duration_seconds=600, cost_usd=Decimal("9.99"))
    client.force_login(charlie)

    page = client.get(reverse("analytics"))

    assert page.context["report"].totals.calls == 0
    html = page.content.decode()
    assert "No calls in this period" in html and "$9.99" not in html and "Booked" not in html


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(reverse("analytics"))
    assert response.status_code == 302 and reverse("account_login") in response["Location"]
