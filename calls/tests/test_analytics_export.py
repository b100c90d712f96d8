"""The analytics page's CSV export: the page's per-day figures and totals, for the same period and calls, of the
member's own business only, streamed like the calls list's export."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from accounts.models import Business
from calls.models import Call, CallEvent
from tests.factories import make_call

LA = ZoneInfo("America/Los_Angeles")
EXPORT = "/dashboard/analytics/export.csv"
HEADER = ["day", "calls", "seconds", "minutes", "cost_usd", "cost_per_call_usd", "latency_turns", "latency_p50_ms",
          "latency_p95_ms"]
QUIET_DAY = ["0", "0", "0.00", "0", "", "0", "", ""]


def at(day: str, time: str = "12:00") -> dt.datetime:
    """An aware instant from a wall-clock time in Los Angeles (Alice's business)."""
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time.fromisoformat(time), tzinfo=LA)


def add_latencies(call: Call, *ms: float) -> None:
    CallEvent.objects.bulk_create([CallEvent(call=call, order=i, kind=CallEvent.Kind.LATENCY, payload={"ms": v})
                                   for i, v in enumerate(ms, 1)])


def export(client, **params):
    """The export as the product serves it (under ASGI), with `client`'s session: (response, body)."""
    async def fetch():
        asgi_client = AsyncClient()
        asgi_client.cookies = client.cookies
        response = await asgi_client.get(EXPORT, params)
        body = b"".join([chunk async for chunk in response.streaming_content]) if response.streaming else b""
        return response, body

    return async_to_sync(fetch)()


def export_rows(client, **params) -> list[list[str]]:
    response, body = export(client, **params)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(body.decode())))


def by_day(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in rows[1:]}


@pytest.fixture
def owner_client(client, alice, alices_business):
    client.force_login(alice)
    return client


def test_the_export_has_a_row_per_local_day_with_its_figures_then_the_totals(owner_client, alices_business):
    first = make_call(alices_business, started_at=at("2026-06-02", "09:00"), duration_seconds=150,
                      cost_usd=Decimal("0.12"))
    make_call(alices_business, started_at=at("2026-06-02", "23:30"), duration_seconds=90, cost_usd=Decimal("0.08"))
    add_latencies(first, 600, 800)

    rows = export_rows(owner_client, period="custom", start="2026-06-01", end="2026-06-03")

    assert rows == [
        HEADER,
        ["2026-06-01", *QUIET_DAY],
        ["2026-06-02", "2", "240", "4.00", "0.200000", "0.100000", "2", "700.0", "790.0"],
        ["2026-06-03", *QUIET_DAY],
        ["total", "2", "240", "4.00", "0.200000", "0.100000", "2", "700.0", "790.0"],
    ]


def test_the_export_has_the_same_totals_as_the_page(owner_client, alices_business):
    for n in range(3):
        make_call(alices_business, started_at=at("2026-06-0%d" % (n + 1)), duration_seconds=60 * (n + 1),
                  cost_usd=Decimal("0.05"))
    period = {"period": "custom", "start": "2026-06-01", "end": "2026-06-07"}

    totals = owner_client.get(reverse("analytics"), period).context["report"].totals
    total_row = by_day(export_rows(owner_client, **period))["total"]

    assert total_row[:4] == [str(totals.calls), str(totals.seconds), f"{totals.minutes:.2f}", str(totals.cost_usd)]
    assert total_row[:4] == ["3", "360", "6.00", "0.150000"]


def test_another_business_calls_are_not_in_the_export(owner_client, alices_business, charlie):
    charlies_business = Business.objects.get(name="Charlie Plumbing")
    make_call(alices_business, started_at=at("2026-06-02"), duration_seconds=60, cost_usd=Decimal("0.10"))
    for _ in range(4):
        make_call(charlies_business, started_at=at("2026-06-02"), duration_seconds=600, cost_usd=Decimal("9.99"))

    days = by_day(export_rows(owner_client, period="custom", start="2026-06-01", end="2026-06-03"))

    assert days["2026-06-02"][:4] == ["1", "60", "1.00", "0.100000"] and days["total"][0] == "1"


def test_the_custom_period_bounds_the_rows_and_the_totals(owner_client, alices_business):
    make_call(alices_business, started_at=at("2026-06-01"))
    make_call(alices_business, started_at=at("2026-06-10"))
    make_call(alices_business, started_at=at("2026-06-13", "00:30"))  # after the period, in local time

    days = by_day(export_rows(owner_client, period="custom", start="2026-06-05", end="2026-06-12"))

    assert list(days) == [f"2026-06-{d:02d}" for d in range(5, 13)] + ["total"]
    assert days["total"][0] == "1"


def test_a_preset_period_covers_the_last_days_up_to_today(owner_client, alices_business):
    make_call(alices_business, started_at=timezone.now() - dt.timedelta(days=2))
    make_call(alices_business, started_at=timezone.now() - dt.timedelta(days=20))
    today = timezone.localdate(timezone=LA)

    days = by_day(export_rows(owner_client, period="7"))

    assert list(days)[:-1] == [(today - dt.timedelta(days=n)).isoformat() for n in range(6, -1, -1)]
    assert days["total"][0] == "1"


def test_the_channel_choice_applies_to_the_export(owner_client, alices_business):
    make_call(alices_business, started_at=at("2026-06-02"), channel="browser")
    make_call(alices_business, started_at=at("2026-06-02"), channel="twilio")
    make_call(alices_business, started_at=at("2026-06-02"), channel="twilio")

    days = by_day(export_rows(owner_client, period="custom", start="2026-06-01", end="2026-06-03",
                              channel="browser"))

    assert days["total"][0] == "1"


def test_the_export_is_streamed_as_an_attachment_named_for_its_period(owner_client, alices_business):
    response, _ = export(owner_client, period="custom", start="2026-06-01", end="2026-06-03", channel="twilio")

    assert response.streaming
    assert response["Content-Disposition"] == 'attachment; filename="analytics-2026-06-01-to-2026-06-03-twilio.csv"'


def test_a_bad_period_sends_the_member_back_to_the_page_and_its_error(owner_client, alices_business):
    response, _ = export(owner_client, period="custom", start="2026-05-10", end="2026-05-01")

    assert response.status_code == 302
    page = owner_client.get(response["Location"])
    assert "The first day comes after the last day." in page.content.decode()


def test_the_page_links_the_export_for_its_period_and_calls(owner_client, alices_business):
    html = owner_client.get(reverse("analytics"), {"period": "custom", "start": "2026-06-01", "end": "2026-06-03",
                                                   "channel": "twilio"}).content.decode()

    assert f'href="{EXPORT}?period=custom&amp;channel=twilio&amp;start=2026-06-01&amp;end=2026-06-03"' in html


def test_anonymous_visitors_are_sent_to_login(client, db):
    response, _ = export(client, period="7")

    assert response.status_code == 302 and reverse("account_login") in response["Location"]
