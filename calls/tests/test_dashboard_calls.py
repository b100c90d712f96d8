"""The dashboard's calls pages: the list (filters, full-text search, keyset paging, live marker), a call's detail
(timeline, latency, cost, what it produced) and the CSV export; each only ever shows the member's own business."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import warnings
from html.parser import HTMLParser
from decimal import Decimal

import pytest
from django.db import connection
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from calls.models import Call
from calls.postcall.summary import call_summarize
from calls.services.lifecycle import call_create_inbound
from calls.services.recording import CallRecord, call_record_entries
from calls.services.search_document import call_search_refresh
from tests.factories import (
    make_appointment,
    make_business,
    make_call,
    make_customer,
    make_event,
    make_message,
    make_transcript,
    make_user,
)
from voice.offline.realtime import RealtimeStandin

UTC = dt.timezone.utc
LIST = "/dashboard/calls/"
EXPORT = "/dashboard/calls/export.csv"


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def page(client, url=LIST, **params) -> str:
    response = client.get(url, params)
    assert response.status_code == 200
    return response.content.decode()


def listed_ids(client, **params) -> list[int]:
    return [call.id for call in client.get(LIST, params).context["page"].calls]


def export_rows(client, **params) -> list[list[str]]:
    """The export as the async handler serves it (the product runs under ASGI), with `client`'s session."""
    async def fetch():
        asgi_client = AsyncClient()
        asgi_client.cookies = client.cookies
        response = await asgi_client.get(EXPORT, params)
        assert response.status_code == 200 and response.streaming
        return response, b"".join([chunk async for chunk in response.streaming_content])

    response, body = async_to_sync(fetch)()
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(body.decode())))


@pytest.fixture
def owner_client(client, alice, alices_business):
    client.force_login(alice)
    return client


@pytest.fixture
def others_call(charlie):
    """A call of Charlie's business that says every word the tests search for."""
    business = charlie.memberships.get().business
    call = make_call(business, from_number="+14155550123", caller_name="Dana Scully", outcome="booked",
                     summary="Whitening appointment booked.", started_at=at("2026-03-09T18:00"))
    call_record_entries(call_id=call.id, record=CallRecord(transcripts=[
        {"order": 1, "speaker": "caller", "text": "I want whitening with crocodile", "start_ms": 0, "end_ms": 900}]))
    return call


# --- the list -------------------------------------------------------------------------------------------------

def test_the_list_shows_the_newest_call_first_in_the_business_time_zone(owner_client, alices_business):
    older = make_call(alices_business, started_at=at("2026-01-15T17:00"))
    newer = make_call(alices_business, started_at=at("2026-01-15T18:30"))
    html = page(owner_client)
    assert listed_ids(owner_client) == [newer.id, older.id]
    assert "Thu 15 Jan 2026, 10:30" in html  # 18:30 UTC is 10:30 in Los Angeles
    assert "Thu 15 Jan 2026, 18:30" not in html


def test_a_row_shows_caller_duration_outcome_summary_and_cost(owner_client, alices_business):
    make_call(alices_business, from_number="+14155550199", caller_name="Fox Mulder", duration_seconds=125,
              outcome="message_taken", summary="Wants a call back about the X-ray results.", cost_usd=Decimal("0.0421"),
              status=Call.Status.COMPLETED)
    html = page(owner_client)
    for text in ("Fox Mulder", "+1 415-555-0199", "2:05", "Message taken", "Wants a call back about the X-ray results.",
                 "$0.0421"):
        assert text in html


def test_browser_test_calls_are_labelled(owner_client, alices_business):
    make_call(alices_business, channel=Call.Channel.BROWSER, from_number="alice@example.com")
    assert "Browser test call" in page(owner_client)


@pytest.mark.parametrize("status,live", [("ringing", True), ("in_progress", True), ("completed", False),
                                         ("failed", False)])
def test_only_ringing_and_in_progress_calls_are_marked_live(owner_client, alices_business, status, live):
    make_call(alices_business, status=status)
    assert ('class="live-badge"' in page(owner_client)) is live


def test_staff_see_the_calls_too(client, bob, alices_business):
    call = make_call(alices_business, caller_name="Walter Skinner")
    client.force_login(bob)
    assert listed_ids(client) == [call.id] and "Walter Skinner" in page(client)


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


@pytest.mark.parametrize("field,wanted,other", [
    ("outcome", {"outcome": "booked"}, {"outcome": "answered"}),
    ("status", {"status": "failed"}, {"status": "completed"}),
    ("channel", {"channel": "browser"}, {"channel": "twilio"}),
])
def test_the_list_filters_by_outcome_status_and_channel(owner_client, alices_business, field, wanted, other):
    match = make_call(alices_business, **wanted)
    make_call(alices_business, **other)
    assert listed_ids(owner_client, **{field: wanted[field]}) == [match.id]


def test_the_date_range_means_local_days_of_the_business(owner_client, alices_business):
    # 2026-03-10 06:30 UTC is 23:30 on 9 March in Los Angeles (PDT, UTC-7).
    late_evening = make_call(alices_business, started_at=at("2026-03-10T06:30"))
    next_morning = make_call(alices_business, started_at=at("2026-03-10T15:00"))
    assert listed_ids(owner_client, date_from="2026-03-09", date_to="2026-03-09") == [late_evening.id]
    assert listed_ids(owner_client, date_from="2026-03-10") == [next_morning.id]
    assert listed_ids(owner_client, date_to="2026-03-09") == [late_evening.id]


def test_an_invalid_filter_is_reported_and_left_out(owner_client, alices_business):
    call = make_call(alices_business, outcome="booked")
    response = owner_client.get(LIST, {"outcome": "<script>", "date_from": "yesterday"})
    assert response.status_code == 200 and "<script>" not in response.content.decode()
    assert response.context["form"].errors.keys() == {"outcome", "date_from"}
    assert [c.id for c in response.context["page"].calls] == [call.id]


def test_a_business_with_no_calls_is_told_what_to_do_next(owner_client, alices_business):
    alices_business.phone_number = ""
    alices_business.save()
    html = page(owner_client)
    assert "No calls yet" in html and reverse("settings_number") in html and "/dashboard/test-call/" in html


def test_a_filter_with_no_match_says_so(owner_client, alices_business):
    make_call(alices_business, outcome="answered")
    html = page(owner_client, outcome="spam")
    assert "No calls match" in html and "No calls yet" not in html


def test_the_first_unfiltered_page_subscribes_to_live_updates(owner_client, alices_business):
    make_call(alices_business)
    assert 'data-live-socket="/ws/dashboard/calls/"' in page(owner_client)
    assert 'id="call-list-live" data-live-region' in page(owner_client, outcome="booked")
    assert "data-live-socket" not in page(owner_client, outcome="booked")
    assert "calls/live.js" in page(owner_client)


def test_the_list_never_shows_another_business_calls(owner_client, alices_business, others_call):
    mine = recorded_call(alices_business, "CAT1", "+14155550123", ["hello"])
    assert listed_ids(owner_client) == [mine.id]
    assert listed_ids(owner_client, q="crocodile") == []
    assert listed_ids(owner_client, q="5550123") == [mine.id]  # same number, only Alice's call


# --- search -----------------------------------------------------------------------------------------------

@pytest.fixture
def summary_standin(settings):
    server = RealtimeStandin(script={"summary": {"document": {
        "summary": "Asked whether the clinic offers orthodontic retainers.", "caller_name": "Monica Reyes",
        "reason": "Retainers.", "outcome": "answered", "action_items": [], "sentiment": "neutral",
        "follow_up_needed": False, "follow_up_reason": ""}}}, port=0)
    server.start_in_thread()
    settings.OPENAI_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test-standin"
    yield server
    server.stop()


def recorded_call(business, sid: str, number: str, turns: list[str]) -> Call:
    """A call made and recorded the way the voice core does it: created by the webhook, turns flushed."""
    call = call_create_inbound(business=business, twilio_call_sid=sid, from_number=number,
                               to_number=business.phone_number)
    call_record_entries(call_id=call.id, record=CallRecord(transcripts=[
        {"order": n, "speaker": "caller" if n % 2 else "agent", "text": text, "start_ms": n * 1000, "end_ms": None}
        for n, text in enumerate(turns, 1)]))
    return call


def test_search_finds_a_word_said_in_the_call(owner_client, alices_business):
    call = recorded_call(alices_business, "CA1", "+14155550111", ["Can I move my appointment to Friday?", "Sure."])
    recorded_call(alices_business, "CA2", "+14155550112", ["What are your opening hours?"])
    assert listed_ids(owner_client, q="friday") == [call.id]
    assert listed_ids(owner_client, q="appointments") == [call.id]  # stemmed: appointment(s)
    assert listed_ids(owner_client, q="move friday") == [call.id]  # every word must match
    assert listed_ids(owner_client, q="move hours") == []


def test_search_finds_the_summary_and_the_callers_name_once_the_summary_is_stored(
        owner_client, alices_business, summary_standin):
    call = recorded_call(alices_business, "CA3", "+14155550113", ["Hi, it's Monica.", "Hello Monica."])
    assert listed_ids(owner_client, q="retainers") == []
    assert call_summarize(call_id=call.id)
    assert listed_ids(owner_client, q="orthodontic retainers") == [call.id]
    assert listed_ids(owner_client, q="Reyes") == [call.id]  # the extracted caller name
    assert listed_ids(owner_client, q="Mon") == [call.id]  # words match as prefixes


@pytest.mark.parametrize("typed", ["+14155550177", "4155550177", "(415) 555-0177", "5550177", "0177", "415555"])
def test_search_finds_a_caller_by_any_part_of_their_number(owner_client, alices_business, typed):
    call = recorded_call(alices_business, "CA4", "+14155550177", ["Hello?"])
    recorded_call(alices_business, "CA5", "+12125559999", ["Hello?"])
    assert listed_ids(owner_client, q=typed) == [call.id]


def test_search_with_punctuation_only_finds_nothing_and_does_not_fail(owner_client, alices_business):
    recorded_call(alices_business, "CA6", "+14155550178", ["Hello?"])
    assert listed_ids(owner_client, q="&|!():*'") == []


def test_search_combines_with_the_filters(owner_client, alices_business):
    booked = recorded_call(alices_business, "CA7", "+14155550179", ["Book a cleaning please"])
    recorded_call(alices_business, "CA8", "+14155550180", ["Cancel my cleaning"])
    Call.objects.filter(id=booked.id).update(outcome="booked")
    assert listed_ids(owner_client, q="cleaning", outcome="booked") == [booked.id]


def test_the_search_document_is_rebuilt_not_appended(alices_business):
    call = recorded_call(alices_business, "CA9", "+14155550181", ["zebra"])
    call_search_refresh(call_id=call.id)
    call_search_refresh(call_id=call.id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT length(search_vector) FROM calls_call WHERE id = %s", [call.id])
        lexemes = cursor.fetchone()[0]
    # "zebra", the number as text, and its 8 suffixes of 4+ digits ("14155550181" … "0181"); nothing twice.
    assert lexemes == 1 + 1 + 8


def transcript_rows_read() -> int:
    """Rows of the transcript table this transaction has read so far (PostgreSQL's per-transaction counters)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                       "WHERE relname = 'calls_transcriptentry'")
        row = cursor.fetchone()
    return row[0] if row else 0


def test_a_flush_makes_its_words_searchable_without_reading_the_transcript_again(owner_client, alices_business):
    """A long live call: each one-second flush costs the same, whatever was said before."""
    call = recorded_call(alices_business, "CA10", "+14155550182", [f"turn number {n} about teeth" for n in range(300)])
    before = transcript_rows_read()
    call_record_entries(call_id=call.id, record=CallRecord(transcripts=[
        {"order": 301, "speaker": "caller", "text": "Do you see zebras?", "start_ms": 301_000, "end_ms": None}]))
    assert transcript_rows_read() - before < 20  # not the 301 rows a rebuild reads
    assert listed_ids(owner_client, q="zebra") == [call.id]  # while the call is live
    assert listed_ids(owner_client, q="teeth") == [call.id]


def test_the_rebuild_after_a_call_equals_a_document_built_in_one_go(alices_business):
    call = recorded_call(alices_business, "CA11", "+14155550183", ["Move my cleaning to Friday", "Sure"])
    call_record_entries(call_id=call.id, record=CallRecord(transcripts=[
        {"order": 3, "speaker": "caller", "text": "Thanks, bye", "start_ms": 3000, "end_ms": None}]))

    def document() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT search_vector::text FROM calls_call WHERE id = %s", [call.id])
            return cursor.fetchone()[0]

    appended = document()
    assert all(word in appended for word in ("'friday'", "'thank'", "'bye'"))
    call_search_refresh(call_id=call.id)  # as after the summary, or an operator's edit
    rebuilt = document()
    Call.objects.filter(id=call.id).update(search_vector=None)
    call_search_refresh(call_id=call.id)
    assert rebuilt == document()


# --- paging -----------------------------------------------------------------------------------------------

def test_keyset_pages_walk_every_call_once_in_order_even_with_equal_start_times(owner_client, alices_business):
    base = at("2026-02-01T12:00")
    # Pairs of calls share a start time, so the id has to settle the order across page boundaries.
    calls = [make_call(alices_business, started_at=base + dt.timedelta(minutes=n // 2)) for n in range(120)]
    expected = [c.id for c in sorted(calls, key=lambda c: (c.started_at, c.id), reverse=True)]
    seen, params, pages = [], {}, 0
    while True:
        response = owner_client.get(LIST, params)
        current = response.context["page"]
        seen += [c.id for c in current.calls]
        pages += 1
        if current.older is None:
            break
        params = {"after": current.older}
    assert seen == expected and pages == 3
    assert [c.id for c in response.context["page"].calls] == expected[100:]
    back = owner_client.get(LIST, {"before": response.context["page"].newer}).context["page"]
    assert [c.id for c in back.calls] == expected[50:100] and back.newer and back.older
    first = owner_client.get(LIST, {"before": back.newer}).context["page"]
    assert [c.id for c in first.calls] == expected[:50] and first.newer is None


def test_paging_keeps_the_filters(owner_client, alices_business):
    for _ in range(55):
        make_call(alices_business, outcome="booked")
    make_call(alices_business, outcome="answered")
    html = page(owner_client, outcome="booked")
    older = owner_client.get(LIST, {"outcome": "booked"}).context["page"].older
    assert f"outcome=booked&amp;after={older}" in html
    assert len(listed_ids(owner_client, outcome="booked", after=older)) == 5


def test_a_broken_cursor_shows_the_first_page(owner_client, alices_business):
    call = make_call(alices_business)
    assert listed_ids(owner_client, after="nonsense") == [call.id]
    assert listed_ids(owner_client, before="99999999999999999999_1") == [call.id]


# --- query counts -----------------------------------------------------------------------------------------

def count_queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params or {}).status_code == 200
    return len(queries)


def test_the_list_runs_the_same_few_queries_for_3_or_60_calls(owner_client, alices_business,
                                                              django_assert_num_queries):
    for n in range(3):
        recorded_call(alices_business, f"CAQ{n}", "+14155550190", ["hello there"])
    small = (count_queries(owner_client, LIST), count_queries(owner_client, LIST, {"q": "hello"}))
    for n in range(3, 60):
        recorded_call(alices_business, f"CAQ{n}", "+14155550190", ["hello there"])
    # session, user, membership, then one query for the page
    with django_assert_num_queries(4):
        owner_client.get(LIST)
    with django_assert_num_queries(4):
        owner_client.get(LIST, {"q": "hello", "outcome": "", "date_from": "2020-01-01"})
    assert small == (4, 4)


def test_the_detail_runs_the_same_queries_for_3_or_60_timeline_rows(owner_client, alices_business,
                                                                    django_assert_num_queries):
    small, large = make_call(alices_business), make_call(alices_business)
    for call, rows in ((small, 3), (large, 60)):
        make_transcript(call, [("caller" if n % 2 else "agent", f"turn {n}", n * 1000) for n in range(rows)])
        for n in range(rows):
            make_event(call, "latency", n * 1000 + 5, order=n, ms=700 + n)
        make_appointment(alices_business, at("2030-01-01T17:00") + dt.timedelta(hours=rows), created_by_call=call)
        make_message(alices_business, call=call)
    make_customer(alices_business, phone="+14155550123")
    # session, user, membership, call, transcript, events, appointments, messages, customer
    with django_assert_num_queries(9):
        owner_client.get(reverse("call_detail", kwargs={"call_id": small.id}))
    with django_assert_num_queries(9):
        owner_client.get(reverse("call_detail", kwargs={"call_id": large.id}))


# --- the detail -------------------------------------------------------------------------------------------

@pytest.fixture
def full_call(alices_business):
    """A finished call with turns, latencies, a supervisor run, a tool call, a barge-in, a transfer attempt, an
    error and a hang-up, plus a booked appointment, a message and a known customer."""
    call = make_call(alices_business, from_number="+14155550123", caller_name="Dana Scully",
                     status=Call.Status.COMPLETED, started_at=at("2026-01-15T18:30"), duration_seconds=95,
                     outcome="booked", summary="Dana booked a cleaning for Friday.", reason="A cleaning.",
                     sentiment="positive", follow_up_needed=True, follow_up_reason="Send the forms.",
                     action_items=["Email the new-patient forms"], model="gpt-realtime",
                     input_audio_tokens=1200, output_audio_tokens=3400, input_text_tokens=800, output_text_tokens=90,
                     supervisor_input_tokens=2500, supervisor_output_tokens=120,
                     supervisor_cost_usd=Decimal("0.010000"), summary_input_tokens=900, summary_output_tokens=80,
                     summary_cost_usd=Decimal("0.002000"), cost_usd=Decimal("0.050000"))
    make_transcript(call, [("agent", "Alice Dental, how can I help?", 200),
                           ("caller", "I'd like a cleaning on Friday.", 2500),
                           ("agent", "Let me check Friday for you.", 5100),
                           ("caller", "Great.", 9800),
                           ("agent", "You're booked for Friday at ten.", 12050)])
    make_event(call, "latency", 5104, order=1, ms=640, item_id="i1")
    make_event(call, "latency", 12053, order=2, ms=910, item_id="i2")
    make_event(call, "latency", 20000, order=3, ms=1500, item_id="i3")  # its agent turn was never transcribed
    make_event(call, "tool_call", 5600, order=4, name="ask_supervisor", arguments={"request": "Book Friday"},
               result="sent to the supervisor")
    make_event(call, "supervisor", 6000, order=10, step="request", request="Book Friday")
    make_event(call, "supervisor", 7000, order=11, step="tool", name="book_appointment",
               arguments={"service": "Cleaning", "start": "2026-01-16T10:00"}, result={"appointment_id": 77})
    make_event(call, "barge_in", 11000, order=5, item_id="i1", heard_ms=1200, sent_ms=3000)
    make_event(call, "transfer", 30000, order=6, ok=False, reason="wants a human", error="no transfer number")
    make_event(call, "error", 31000, order=7, source="openai", code="rate_limit", message="Slow down")
    make_event(call, "hangup", 95000, order=8, by="caller", reason="caller_hung_up")
    make_event(call, "usage", 95001, order=9, tokens=10)
    appointment = make_appointment(alices_business, at("2026-01-16T18:00"), created_by_call=call,
                                   customer=make_customer(alices_business, phone="+14155550123", name="Dana Scully"))
    message = make_message(alices_business, call=call, body="Please send the forms by email.")
    return call, appointment, message


def detail(client, call) -> tuple[str, object]:
    response = client.get(reverse("call_detail", kwargs={"call_id": call.id}))
    assert response.status_code == 200
    return response.content.decode(), response.context["detail"]


def test_the_timeline_merges_turns_and_events_in_offset_order(owner_client, full_call):
    html, d = detail(owner_client, full_call[0])
    assert [(item.offset, item.kind) for item in d.timeline] == [
        ("0:00.200", "agent"), ("0:02.500", "caller"), ("0:05.100", "agent"), ("0:05.600", "tool_call"),
        ("0:07.000", "supervisor"), ("0:09.800", "caller"), ("0:11.000", "barge_in"),
        ("0:12.050", "agent"), ("0:20.000", "latency"), ("0:30.000", "transfer"), ("0:31.000", "error"),
        ("1:35.000", "hangup")]
    positions = [html.index(text) for text in ("Alice Dental, how can I help?", "I&#x27;d like a cleaning on Friday.",
                                               "Asked the assistant: “Book Friday”",
                                               "Booked Cleaning on Friday 16 January at 10 am",
                                               "1.2 s of its 3.0 s reply was heard",
                                               "You&#x27;re booked for Friday at ten.", "no transfer number",
                                               "Slow down", "The caller hung up")]
    assert positions == sorted(positions)
    assert "0:05.600" in html and "1:35.000" in html


def test_supervisor_steps_and_tool_calls_keep_their_arguments_and_results_behind_details(owner_client, full_call):
    html, _ = detail(owner_client, full_call[0])
    disclosures = html.split("<details")[1:]
    booked = next(d for d in disclosures if "book_appointment" in d)
    assert "&quot;start&quot;: &quot;2026-01-16T10:00&quot;" in booked and "&quot;appointment_id&quot;: 77" in booked
    # The supervisor's request is folded into its next step's details, not a line of its own.
    assert "&quot;step&quot;: &quot;request&quot;" in booked
    asked = next(d for d in disclosures if "ask_supervisor" in d)
    assert "&quot;request&quot;: &quot;Book Friday&quot;" in asked and "sent to the supervisor" in asked


def test_each_latency_sits_next_to_the_agent_turn_it_measured(owner_client, full_call):
    _, d = detail(owner_client, full_call[0])
    agent_latencies = [(item.entry.text, item.latency_ms) for item in d.timeline if item.kind == "agent"]
    assert agent_latencies == [("Alice Dental, how can I help?", None), ("Let me check Friday for you.", 640),
                               ("You're booked for Friday at ten.", 910)]


def test_the_calls_latency_percentiles_cover_every_turn(owner_client, full_call):
    html, d = detail(owner_client, full_call[0])
    # 640, 910, 1500: the median is 910; p95 interpolates 95 % of the way from 910 to 1500.
    assert (d.latency.count, d.latency.p50, d.latency.max) == (3, 910, 1500)
    assert d.latency.p95 == pytest.approx(910 + 0.9 * (1500 - 910))
    assert "1441 ms" in html and "1500 ms" in html


def test_the_call_page_says_what_the_latency_includes_with_the_calls_own_vad_silence(owner_client, alices_business):
    call = make_call(alices_business, status="completed")
    make_transcript(call, [("caller", "Hi, are you open today?", 0), ("agent", "Yes, until five.", 2000)])
    make_event(call, "latency", 2003, order=1, ms=1150, after_vad_ms=450, vad_silence_ms=700, item_id="i1")
    html, d = detail(owner_client, call)
    assert "It includes the 700 ms of silence the voice detector waits for" in html
    assert "the phone network" in html
    assert d.latency.vad_silence_ms == 700


def test_the_cost_is_broken_down_into_realtime_supervisor_and_summary(owner_client, full_call):
    html, d = detail(owner_client, full_call[0])
    assert (d.cost.realtime_usd, d.cost.supervisor_usd, d.cost.summary_usd, d.cost.total_usd) == (
        Decimal("0.038"), Decimal("0.01"), Decimal("0.002"), Decimal("0.05"))
    for text in ("$0.0380", "$0.0100", "$0.0020", "$0.0500", "3400 out", "2500 in / 120 out", "900 in / 80 out"):
        assert text in html


def test_the_detail_shows_summary_extraction_and_action_items(owner_client, full_call):
    html, _ = detail(owner_client, full_call[0])
    for text in ("Dana booked a cleaning for Friday.", "A cleaning.", "Positive", "Needed: Send the forms.",
                 "Email the new-patient forms", "Thursday 15 January 2026, 10:30:00"):
        assert text in html


def test_the_detail_links_what_the_call_produced(owner_client, full_call):
    call, appointment, message = full_call
    html, d = detail(owner_client, call)
    assert d.appointments == [appointment] and d.messages == [message]
    assert d.customer.phone == call.from_number
    assert f"/dashboard/customers/{d.customer.id}/" in html
    assert "Please send the forms by email." in html and "Fri 16 Jan 2026, 10:00" in html


def test_a_live_call_page_subscribes_to_its_own_updates(owner_client, alices_business):
    live = make_call(alices_business, status=Call.Status.IN_PROGRESS)
    done = make_call(alices_business, status=Call.Status.COMPLETED)
    html, _ = detail(owner_client, live)
    assert f'id="call-live" data-live-region data-live-socket="/ws/dashboard/calls/{live.id}/"' in html
    assert "calls/live.js" in html
    html, _ = detail(owner_client, done)
    assert 'id="call-live" data-live-region' in html and "data-live-socket" not in html


def test_an_ended_call_page_waits_for_its_summary_and_then_stops_listening(owner_client, alices_business):
    now = timezone.now()
    call = make_call(alices_business, status=Call.Status.COMPLETED, ended_at=now, finalized_at=now)
    html, _ = detail(owner_client, call)
    assert f'data-live-socket="/ws/dashboard/calls/{call.id}/"' in html  # the summary is written after the call
    assert "The summary is being written" in html
    Call.objects.filter(id=call.id).update(summary="Asked about hours.", summarized_at=timezone.now())
    html, _ = detail(owner_client, call)
    assert "data-live-socket" not in html and "Asked about hours." in html


def test_another_business_call_detail_is_404(owner_client, others_call):
    assert owner_client.get(reverse("call_detail", kwargs={"call_id": others_call.id})).status_code == 404


def test_a_call_with_nothing_recorded_says_so(owner_client, alices_business):
    html, d = detail(owner_client, make_call(alices_business, status=Call.Status.FAILED))
    assert d.timeline == [] and d.latency.count == 0 and "Nothing was recorded for this call." in html


# --- CSV export -------------------------------------------------------------------------------------------

def test_the_export_has_every_matching_call_with_local_iso_times(owner_client, alices_business):
    for n in range(60):  # more than a page: the export is not paged
        make_call(alices_business, started_at=at("2026-01-15T18:30") - dt.timedelta(minutes=n), outcome="booked")
    make_call(alices_business, outcome="answered")
    rows = export_rows(owner_client, outcome="booked")
    assert rows[0] == ["id", "started_at", "channel", "status", "outcome", "caller_number", "caller_name",
                       "duration_seconds", "cost_usd", "summary", "end_reason"]
    assert len(rows) == 61 and {row[4] for row in rows[1:]} == {"booked"}
    assert rows[1][1] == "2026-01-15T10:30:00-08:00"


def test_an_exported_row_has_the_calls_fields(owner_client, alices_business):
    call = make_call(alices_business, from_number="+14155550199", caller_name="Fox Mulder", duration_seconds=61,
                     cost_usd=Decimal("0.012345"), summary="Asked about prices.", end_reason="caller_hung_up",
                     status=Call.Status.COMPLETED, outcome="answered")
    assert export_rows(owner_client)[1] == [
        str(call.id), call.started_at.astimezone(alices_business.tzinfo).isoformat(), "twilio", "completed",
        "answered", "'+14155550199", "Fox Mulder", "61", "0.012345", "Asked about prices.", "caller_hung_up"]


def test_the_export_defuses_spreadsheet_formulas(owner_client, alices_business):
    make_call(alices_business, caller_name="=HYPERLINK(\"http://evil\")", summary="@SUM(A1:A9)",
              end_reason="-2+3", from_number="+14155550100")
    row = export_rows(owner_client)[1]
    assert row[6] == "'=HYPERLINK(\"http://evil\")" and row[9] == "'@SUM(A1:A9)" and row[10] == "'-2+3"
    assert row[5] == "'+14155550100"


def test_the_export_searches_like_the_list_and_never_leaks_another_business(owner_client, alices_business,
                                                                            others_call):
    mine = recorded_call(alices_business, "CAX1", "+14155550123", ["whitening please"])
    recorded_call(alices_business, "CAX2", "+14155550124", ["opening hours"])
    rows = export_rows(owner_client, q="whitening")
    assert [row[0] for row in rows[1:]] == [str(mine.id)]
    assert str(others_call.id) not in {row[0] for row in export_rows(owner_client)[1:]}


def test_the_export_link_keeps_the_current_filters(owner_client, alices_business):
    make_call(alices_business)
    html = page(owner_client, outcome="booked", q="teeth", after="1_1")
    assert f'href="{EXPORT}?q=teeth&amp;outcome=booked"' in html


@pytest.mark.django_db(transaction=True)
def test_the_export_streams_through_the_asgi_app_a_chunk_at_a_time_as_it_reads(alice, alices_business):
    from calls.views import EXPORT_CHUNK_ROWS
    from receptionist.asgi import application

    first = at("2026-01-15T18:30")
    Call.objects.bulk_create([
        Call(business=alices_business, from_number="+14155550123", to_number=alices_business.phone_number,
             outcome="booked", started_at=first - dt.timedelta(minutes=n)) for n in range(2 * EXPORT_CHUNK_ROWS + 7)])
    browser = Client()
    browser.force_login(alice)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": EXPORT, "raw_path": EXPORT.encode(), "query_string": b"outcome=booked", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"cookie", f"sessionid={browser.cookies['sessionid'].value}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    bodies: list[bytes] = []
    late: list[Call] = []

    requested: list[bool] = []

    async def receive():
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the browser stays connected until the response is done

    async def send(message):
        if message["type"] != "http.response.body" or not message.get("body"):
            return
        bodies.append(message["body"])
        if len(bodies) == 2:  # the first rows are out: a call recorded now is still read by a later chunk
            late.append(await sync_to_async(make_call)(alices_business, outcome="booked",
                                                       started_at=first - dt.timedelta(days=30)))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async_to_sync(application)(scope, receive, send)
    rows = list(csv.reader(io.StringIO(b"".join(bodies).decode())))
    assert len(bodies) >= 4, "the rows did not arrive in chunks"
    assert len(rows) == 1 + 2 * EXPORT_CHUNK_ROWS + 7 + 1
    assert rows[-1][0] == str(late[0].id), "the export was read into memory before any of it was sent"
    assert not [w for w in caught if "StreamingHttpResponse must consume" in str(w.message)]


def test_a_member_of_a_new_business_exports_only_the_header(client, db):
    user = make_user()
    make_business(owner=user)
    client.force_login(user)
    assert export_rows(client) == [["id", "started_at", "channel", "status", "outcome", "caller_number",
                                    "caller_name", "duration_seconds", "cost_usd", "summary", "end_reason"]]


# --- operators' admin ---------------------------------------------------------------------------------------

class _FormFields(HTMLParser):
    """The values a browser would submit for the form with `id` (inputs, selects, textareas)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or "name" not in a and tag != "option":
            return
        if tag == "input" and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.data[a["name"]] = a.get("value", "on" if a.get("type") == "checkbox" else "")
        elif tag == "select":
            self._select = a["name"]
            self.data.setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.data[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.data[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.data[self._textarea] += data


def test_an_operator_renaming_the_caller_in_the_admin_makes_the_new_name_searchable(owner_client, alices_business):
    call = make_call(alices_business, status="completed", caller_name="Walter")
    call_search_refresh(call_id=call.id)
    operator = make_user("operator@example.com")
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client = Client()
    client.force_login(operator)
    url = reverse("admin:calls_call_change", args=[call.id])
    form = _FormFields("call_form")
    form.feed(client.get(url).content.decode())
    form.data["caller_name"] = "Astrid Farnsworth"
    assert client.post(url, form.data).status_code == 302

    rows = owner_client.get(reverse("call_list"), {"q": "Farnsworth"}).content.decode()
    assert f"/dashboard/calls/{call.id}/" in rows


def test_the_call_page_says_when_the_line_to_the_model_dropped_and_whether_it_came_back(owner_client, alices_business):
    call = make_call(alices_business, status=Call.Status.COMPLETED)
    make_event(call, "reconnect", 4000, order=1, ok=True, cause="OpenAI connection dropped (code 1006)",
               attempts=1, waited_ms=420)
    make_event(call, "reconnect", 9000, order=2, ok=False, cause="OpenAI ended the session: session_expired",
               attempts=5, waited_ms=4010, error="InvalidStatus: server rejected WebSocket connection: HTTP 500")
    make_event(call, "reconnect", 12000, order=3, ok=True, renewal=True, cause="renewal before the session's time cap",
               attempts=1, waited_for_quiet_ms=800)
    html, _ = detail(owner_client, call)
    assert "The line to the AI model dropped (OpenAI connection dropped (code 1006)); reconnected after 0.4 s" in html
    assert "Moved to a fresh AI model session before the current one reached its time cap" in html
    assert "could not reconnect after 4.0 s: InvalidStatus" in html
