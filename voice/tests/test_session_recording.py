"""What a call session records reaches the database whole and in order: a write that fails (the database briefly
away) is sent again by the next flush, and every event of a call, whoever wrote it, has an order of its own."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.db import IntegrityError, connection, transaction

from calls.models import CallEvent, TranscriptEntry
from tests.factories import make_call
from voice.offline.realtime import Script
from voice.session import CallSession
from voice.supervisor import record_supervisor_run, run_supervisor
from voice.transports import TwilioTransport

pytestmark = pytest.mark.django_db(transaction=True)

STREAM_SID = "MZ" + "b" * 32


class SentFrames:
    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.frames.append(message)


def other_connection(*, autocommit: bool = False) -> psycopg.Connection:
    """A second client of the test database (as another process would be)."""
    cfg = connection.settings_dict
    return psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"],
                           password=cfg["PASSWORD"] or None, dbname=cfg["NAME"], autocommit=autocommit)


def backend_waiting_for_a_lock(admin: psycopg.Connection, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchone()
        if row:
            return row[0]
        time.sleep(0.02)
    raise AssertionError("no write ever waited for the lock")


@pytest.fixture
def phone_call(alices_business):
    return make_call(alices_business, twilio_call_sid="CA" + "5" * 32, status="in_progress")


async def test_a_flush_the_database_refused_is_written_by_the_next_one_in_order(phone_call):
    session = CallSession(call_id=phone_call.id, business_id=phone_call.business_id,
                          transport=TwilioTransport(SentFrames(), STREAM_SID, phone_call.twilio_call_sid))
    session.add_transcript(session.reserve_transcript(), "agent", "Alice Dental, how can I help?", 0, 2000)
    session.add_transcript(session.reserve_transcript(), "caller", "I'd like a cleaning on Friday.", 2500, 4000)
    session.add_event(CallEvent.Kind.LATENCY, ms=640, item_id="i1")

    # Another client holds the transcript table; the flush's write waits for it and its connection is then cut
    # (a failover, a restart, an administrator): the write fails as a whole.
    holder = await asyncio.to_thread(other_connection)
    admin = await asyncio.to_thread(other_connection, autocommit=True)  # sees pg_stat_activity afresh
    try:
        await asyncio.to_thread(holder.execute, "LOCK TABLE calls_transcriptentry IN ACCESS EXCLUSIVE MODE")
        flush = asyncio.create_task(session._flush())
        pid = await asyncio.to_thread(backend_waiting_for_a_lock, admin)
        # The call goes on meanwhile.
        session.add_transcript(session.reserve_transcript(), "agent", "Friday at ten is free.", 4600, 6000)
        await asyncio.to_thread(admin.execute, "SELECT pg_terminate_backend(%s)", [pid])
        with pytest.raises(Exception):
            await flush
        await asyncio.to_thread(holder.rollback)
    finally:
        await asyncio.to_thread(holder.close)
        await asyncio.to_thread(admin.close)

    @database_sync_to_async
    def stored():
        return (list(TranscriptEntry.objects.filter(call=phone_call).order_by("order").values_list("text", flat=True)),
                list(CallEvent.objects.filter(call=phone_call).values_list("kind", flat=True)))

    assert await stored() == ([], [])
    await session._flush()  # the database is back
    assert await stored() == (["Alice Dental, how can I help?", "I'd like a cleaning on Friday.",
                               "Friday at ten is free."], ["latency"])


async def test_events_of_the_session_and_of_the_supervisor_never_share_an_order(phone_call, standin, settings):
    settings.OPENAI_BASE_URL, settings.OPENAI_API_KEY = standin.base_url, "sk-test-standin"
    standin.script = Script.from_obj({"supervisor": [{"default": True, "steps": [
        {"tool": "get_business_info", "arguments": {}}, {"say": "We're open nine to five."}]}]})
    session = CallSession(call_id=phone_call.id, business_id=phone_call.business_id,
                          transport=TwilioTransport(SentFrames(), STREAM_SID, phone_call.twilio_call_sid))
    session.add_event(CallEvent.Kind.LATENCY, ms=640, item_id="i1")
    session.add_event(CallEvent.Kind.TOOL_CALL, name="ask_supervisor", result="sent to the supervisor")
    await session._flush()
    result = await database_sync_to_async(run_supervisor)(call_id=phone_call.id, request="When are you open?",
                                                          conversation=[])
    await database_sync_to_async(record_supervisor_run)(call_id=phone_call.id, result=result)
    session.add_event(CallEvent.Kind.LATENCY, ms=710, item_id="i2")
    await session._flush()

    orders = await database_sync_to_async(
        lambda: list(CallEvent.objects.filter(call=phone_call).values_list("order", flat=True)))()
    assert len(result.events) >= 4 and len(orders) == 3 + len(result.events)
    assert sorted(orders) == list(range(1, len(orders) + 1))


def test_the_database_refuses_two_events_of_a_call_with_one_order(phone_call):
    CallEvent.objects.create(call=phone_call, order=1, kind="latency", payload={})
    with pytest.raises(IntegrityError), transaction.atomic():
        CallEvent.objects.create(call=phone_call, order=1, kind="supervisor", payload={})


def test_writers_adding_events_at_once_never_share_an_order(phone_call):
    """Eight threads, each with its own database connection, like the session's flushes and several workers."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    from calls.services.recording import call_events_add

    def writer(n: int) -> None:
        try:
            start.wait()
            for i in range(5):
                call_events_add(call_id=phone_call.id, events=[
                    {"offset_ms": n * 100 + i, "kind": "supervisor", "payload": {"writer": n}}] * 3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    orders = sorted(CallEvent.objects.filter(call=phone_call).values_list("order", flat=True))
    assert orders == list(range(1, 8 * 5 * 3 + 1))
    phone_call.refresh_from_db()
    assert phone_call.last_event_order == 120
