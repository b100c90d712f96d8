"""Live dashboard updates: what a call session, call_finalize and the summary publish reaches the dashboard
sockets, over the real Redis channel layer (settings use REDIS_URL), and who may open those sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from openai import OpenAI

from accounts.access import SESSION_KEY
from accounts.models import Membership
from calls import live
from calls.models import Call, TranscriptEntry
from calls.postcall.summary import call_summarize
from calls.services.lifecycle import call_finalize
from receptionist.asgi import application
from tests.factories import make_business, make_call, make_user
from voice.agent import PHONE_AUDIO
from voice.offline.realtime import RealtimeStandin
from voice.session import CallSession, CallTransport

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://testserver"
BROKEN_REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]}}}


class QuietTransport(CallTransport):
    """A caller's side that only counts what the session sends it (the dashboard is what is tested here).
    Subclassing the protocol keeps its declared no-op bodies for everything else, so the two cannot drift."""

    audio_format = PHONE_AUDIO
    bytes_per_ms = 8

    def __init__(self) -> None:
        self.audio_chunks = 0

    async def send_audio(self, payload: str) -> None:
        self.audio_chunks += 1


def session_cookie(user, business=None) -> bytes:
    client = Client()
    client.force_login(user)
    if business is not None:
        session = client.session
        session[SESSION_KEY] = business.id
        session.save()
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_socket(path: str, *, cookie: bytes | None = None, origin: bytes | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie))
    return WebsocketCommunicator(application, path, headers=headers)


async def connected(path: str, **kwargs: Any) -> WebsocketCommunicator:
    socket = await open_socket(path, **kwargs)
    ok, _ = await socket.connect()
    assert ok
    return socket


async def close_code(path: str, **kwargs: Any) -> int | None:
    """The code the server closed the socket with; None if the handshake itself was refused."""
    socket = await open_socket(path, **kwargs)
    ok, code = await socket.connect()
    try:
        if not ok:
            return None if code in (None, 1000) else code
        message = await socket.receive_output(timeout=3)
        assert message["type"] == "websocket.close", message
        return message.get("code")
    finally:
        await socket.disconnect()


async def statuses_until(socket: WebsocketCommunicator, status: str, timeout: float = 5.0) -> list[dict]:
    """`call.changed` messages received until one with `status` (fails if it does not come in time)."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1]["status"] != status:
            seen.append(await socket.receive_json_from(timeout=timeout))
    return seen


@pytest.fixture
def live_call(alices_business) -> Call:
    return make_call(alices_business, status=Call.Status.IN_PROGRESS)


@pytest.fixture
def alices_cookie(alice, alices_business) -> bytes:
    return session_cookie(alice)


# --- the session and the services publish; the sockets deliver ----------------------------------------------

async def test_a_call_session_flush_and_its_end_reach_the_calls_page_and_list(settings, live_call, alices_cookie):
    async with RealtimeStandin(script={"greeting": "Thanks for calling Alice Dental."}, port=0, speed=0) as standin:
        settings.OPENAI_REALTIME_URL, settings.OPENAI_API_KEY = standin.url, "sk-test-standin"
        page = await connected(f"/ws/dashboard/calls/{live_call.id}/", cookie=alices_cookie)
        calls_list = await connected("/ws/dashboard/calls/", cookie=alices_cookie)
        session = CallSession(call_id=live_call.id, business_id=live_call.business_id, transport=QuietTransport())
        await session.start()

        # The greeting's transcript is flushed by the session's housekeeping, then announced.
        first = await page.receive_json_from(timeout=5)
        assert first == {"type": "call.changed", "call_id": live_call.id, "status": "in_progress"}
        greeting = await database_sync_to_async(
            lambda: list(TranscriptEntry.objects.filter(call_id=live_call.id).values_list("text", flat=True)))()
        assert greeting == ["Thanks for calling Alice Dental."]

        await session.finish(status=Call.Status.COMPLETED, reason="caller_hung_up")
        assert (await statuses_until(page, "completed"))[-1]["call_id"] == live_call.id
        assert (await statuses_until(calls_list, "completed"))[0]["call_id"] == live_call.id
        await page.disconnect()
        await calls_list.disconnect()


async def test_call_finalize_reaches_a_connected_calls_page(live_call, alices_cookie):
    page = await connected(f"/ws/dashboard/calls/{live_call.id}/", cookie=alices_cookie)
    assert await database_sync_to_async(call_finalize)(call_id=live_call.id, status=Call.Status.FAILED,
                                                      end_reason="test")
    assert await page.receive_json_from(timeout=5) == {"type": "call.changed", "call_id": live_call.id,
                                                       "status": "failed"}
    await page.disconnect()


async def test_a_stored_summary_reaches_a_connected_calls_page(live_call, alices_cookie):
    await database_sync_to_async(TranscriptEntry.objects.create)(call=live_call, order=1, speaker="caller",
                                                                 text="I'd like a cleaning.")
    await database_sync_to_async(call_finalize)(call_id=live_call.id, status=Call.Status.COMPLETED,
                                                end_reason="caller_hung_up")
    page = await connected(f"/ws/dashboard/calls/{live_call.id}/", cookie=alices_cookie)
    assert (await page.receive_json_from(timeout=5))["status"] == "completed"  # it had ended: re-read it now
    script = {"summary": {"document": {"summary": "Asked about a cleaning."}}}
    async with RealtimeStandin(script=script, port=0) as standin:
        client = OpenAI(api_key="sk-test-standin", base_url=standin.base_url, max_retries=0)
        assert await database_sync_to_async(call_summarize)(call_id=live_call.id, client=client)
    assert await page.receive_json_from(timeout=5) == {"type": "call.changed", "call_id": live_call.id,
                                                       "status": "completed"}
    await page.disconnect()


async def test_the_calls_list_hears_only_its_own_business(live_call, alices_cookie, charlie):
    charlies_call = await database_sync_to_async(
        lambda: make_call(charlie.memberships.get().business, status=Call.Status.IN_PROGRESS))()
    calls_list = await connected("/ws/dashboard/calls/", cookie=alices_cookie)
    await database_sync_to_async(call_finalize)(call_id=charlies_call.id, status=Call.Status.COMPLETED,
                                                end_reason="test")
    await database_sync_to_async(call_finalize)(call_id=live_call.id, status=Call.Status.COMPLETED,
                                                end_reason="test")
    assert (await calls_list.receive_json_from(timeout=5))["call_id"] == live_call.id
    assert await calls_list.receive_nothing(timeout=0.3)
    await calls_list.disconnect()


async def test_the_list_follows_the_business_chosen_in_the_session(alice, alices_business):
    other = await database_sync_to_async(lambda: make_business(owner=alice, name="Alice's Second Practice"))()
    call = await database_sync_to_async(lambda: make_call(other, status=Call.Status.IN_PROGRESS))()
    cookie = await database_sync_to_async(session_cookie)(alice, other)
    calls_list = await connected("/ws/dashboard/calls/", cookie=cookie)
    await database_sync_to_async(call_finalize)(call_id=call.id, status=Call.Status.COMPLETED, end_reason="test")
    assert (await calls_list.receive_json_from(timeout=5))["call_id"] == call.id
    await calls_list.disconnect()


# --- who may open the sockets ----------------------------------------------------------------------------------

async def test_refuses_a_visitor_who_is_not_signed_in(live_call):
    assert await close_code("/ws/dashboard/calls/") == 4403
    assert await close_code(f"/ws/dashboard/calls/{live_call.id}/") == 4403


async def test_refuses_another_business_s_call_like_a_call_that_does_not_exist(live_call, charlie):
    cookie = await database_sync_to_async(session_cookie)(charlie)
    assert await close_code(f"/ws/dashboard/calls/{live_call.id}/", cookie=cookie) == 4404
    assert await close_code(f"/ws/dashboard/calls/{live_call.id + 1000}/", cookie=cookie) == 4404


async def test_another_business_s_call_is_refused_even_to_a_member_viewing_another_business(alice, live_call):
    second = await database_sync_to_async(lambda: make_business(owner=alice, name="Alice's Second Practice"))()
    cookie = await database_sync_to_async(session_cookie)(alice, second)
    assert await close_code(f"/ws/dashboard/calls/{live_call.id}/", cookie=cookie) == 4404


async def test_refuses_a_user_without_a_membership(live_call):
    loner = await database_sync_to_async(make_user)("loner@example.com")
    cookie = await database_sync_to_async(session_cookie)(loner)
    assert await close_code("/ws/dashboard/calls/", cookie=cookie) == 4403
    assert await close_code(f"/ws/dashboard/calls/{live_call.id}/", cookie=cookie) == 4403


async def test_refuses_a_foreign_origin_and_a_missing_one(live_call, alices_cookie):
    for origin in (b"https://evil.example", None):
        socket = await open_socket(f"/ws/dashboard/calls/{live_call.id}/", cookie=alices_cookie, origin=origin)
        ok, _ = await socket.connect()
        assert not ok
        await socket.disconnect()


async def test_a_teammate_may_follow_the_business_s_calls(bob, live_call):
    cookie = await database_sync_to_async(session_cookie)(bob)
    page = await connected(f"/ws/dashboard/calls/{live_call.id}/", cookie=cookie)
    assert await page.receive_nothing(timeout=0.2)
    await page.disconnect()


async def test_a_teammate_removed_from_the_business_hears_nothing_more_of_its_calls(bob, live_call):
    cookie = await database_sync_to_async(session_cookie)(bob)
    page = await connected(f"/ws/dashboard/calls/{live_call.id}/", cookie=cookie)
    await database_sync_to_async(lambda: Membership.objects.filter(user=bob).delete())()
    await database_sync_to_async(call_finalize)(call_id=live_call.id, status=Call.Status.COMPLETED,
                                                end_reason="caller_hung_up")
    message = await page.receive_output(timeout=5)
    assert message == {"type": "websocket.close", "code": 4403}
    await page.disconnect()


# --- a channel layer that is down never breaks a call ------------------------------------------------------------

def test_call_finalize_succeeds_when_redis_is_down(settings, live_call, monkeypatch, caplog):
    settings.CHANNEL_LAYERS = BROKEN_REDIS_LAYER
    monkeypatch.setattr(live, "_failing", False)
    with caplog.at_level(logging.WARNING, logger="calls.live"):
        assert call_finalize(call_id=live_call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
        other = make_call(live_call.business, status=Call.Status.IN_PROGRESS)
        assert call_finalize(call_id=other.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    live_call.refresh_from_db()
    assert live_call.finalized_at is not None and live_call.status == "completed"
    warnings = [r for r in caplog.records if r.name == "calls.live"]
    assert len(warnings) == 1 and "not being delivered" in warnings[0].getMessage()  # once per outage


async def test_a_call_session_ends_and_records_its_call_when_redis_is_down(settings, live_call, monkeypatch):
    settings.CHANNEL_LAYERS = BROKEN_REDIS_LAYER
    monkeypatch.setattr(live, "_failing", False)
    session = CallSession(call_id=live_call.id, business_id=live_call.business_id, transport=QuietTransport())
    session.add_transcript(session.reserve_transcript(), "caller", "Hello?", 0, 900)
    await session.finish(status=Call.Status.COMPLETED, reason="caller_hung_up")
    call = await database_sync_to_async(Call.objects.get)(id=live_call.id)
    assert (call.status, call.end_reason) == ("completed", "caller_hung_up")
    assert await database_sync_to_async(TranscriptEntry.objects.filter(call=call, text="Hello?").exists)()
