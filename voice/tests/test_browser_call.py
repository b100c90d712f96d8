"""The browser test call socket, `/ws/browser/call/`, through the whole ASGI application (routing, session
and auth middleware) in-process, with the OpenAI Realtime stand-in."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.lifecycle import TooManyBrowserCalls, call_create_browser
from tests.factories import make_business, make_call, make_user
from voice.offline.realtime import Script
from voice.tests.conftest import HARBOR_SCRIPT, start_asgi_server, stop_process

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "http://testserver"
FRAME_MS = 40


@pytest.fixture(autouse=True)
def browser_call_settings(settings, standin):
    settings.OPENAI_REALTIME_URL = standin.url
    settings.OPENAI_API_KEY = "sk-test-standin"
    # One in-memory layer per test: each scenario runs on an event loop of its own.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return settings


def session_cookie(client, user) -> str:
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


@pytest.fixture
def owner_cookie(client, harbor):
    return session_cookie(client, harbor.memberships.get().user)


def communicator(cookie: str | None = None, origin: str | None = ORIGIN) -> WebsocketCommunicator:
    from receptionist.asgi import application

    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/browser/call/", headers=headers)


def pcm_frames(ms: int, *, loud: bool) -> list[str]:
    """Base64 PCM16 24 kHz frames of a 220 Hz tone (speech to the stand-in's VAD) or of silence."""
    frames = []
    samples_per_frame = 24 * FRAME_MS
    for start in range(0, ms * 24, samples_per_frame):
        values = [int(8000 * math.sin(2 * math.pi * 220 * (start + i) / 24000)) if loud else 0
                  for i in range(samples_per_frame)]
        frames.append(base64.b64encode(struct.pack(f"<{samples_per_frame}h", *values)).decode())
    return frames


class PageStandIn:
    """What the test-call page does on the socket: echoes marks at once, collects everything else."""

    def __init__(self, ws: WebsocketCommunicator) -> None:
        self.ws = ws
        self.messages: list[dict] = []
        self.audio_chunks = 0
        self.close_code: int | None = None

    async def pump(self, until, timeout: float = 10.0) -> None:
        """Handle server frames until `until(self)` is true (or the socket closes)."""
        deadline = time.monotonic() + timeout
        while not until(self):
            if self.close_code is not None:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; got {[m['type'] for m in self.messages][-20:]}")
            await self._receive(remaining)

    async def wait(self, seconds: float) -> None:
        """Handle server frames for `seconds`, or until the socket closes."""
        deadline = time.monotonic() + seconds
        while self.close_code is None and time.monotonic() < deadline:
            await self._receive(deadline - time.monotonic())

    async def _receive(self, remaining: float) -> None:
        # receive_output cancels the application when it times out: wait with receive_nothing instead.
        if await self.ws.receive_nothing(timeout=max(0.01, min(remaining, 0.2)), interval=0.005):
            if self.ws.future.done():
                self.close_code = self.close_code or 1006  # the application ended without closing
            return
        output = await self.ws.receive_output()
        if output["type"] == "websocket.close":
            self.close_code = output.get("code", 1000)
            # As a server does once the close handshake is over; the application may still be recording the call.
            await self.ws.send_input({"type": "websocket.disconnect", "code": self.close_code})
            await self.ws.wait(timeout=10)
            return
        message = json.loads(output["text"])
        if message["type"] == "audio":
            self.audio_chunks += 1
            return
        if message["type"] == "mark":
            await self.ws.send_to(text_data=json.dumps({"type": "mark", "name": message["name"]}))
        self.messages.append(message)

    def transcripts(self, speaker: str) -> list[str]:
        return [m["text"] for m in self.messages if m["type"] == "transcript" and m["speaker"] == speaker]

    def has(self, kind: str) -> bool:
        return any(m["type"] == kind for m in self.messages)

    async def say(self, speech_ms: int = 600, silence_ms: int = 800) -> None:
        for frame in pcm_frames(speech_ms, loud=True) + pcm_frames(silence_ms, loud=False):
            await self.ws.send_to(text_data=json.dumps({"type": "audio", "audio": frame}))
            await asyncio.sleep(FRAME_MS / 1000)  # in real time, as the page's microphone does


async def refusal_code(ws: WebsocketCommunicator) -> int | None:
    connected, _ = await ws.connect()
    assert connected, "refusals are sent after accepting, so the page gets a close code"
    output = await ws.receive_output(timeout=3)
    if output["type"] == "websocket.send" and json.loads(output["text"])["type"] == "refused":
        output = await ws.receive_output(timeout=3)  # a refusal for want of minutes says why first
    await ws.wait()
    return output.get("code") if output["type"] == "websocket.close" else None


def finalized(call_id: int, timeout: float = 5.0) -> Call:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        call = Call.objects.get(id=call_id)
        if call.finalized_at is not None:
            return call
        time.sleep(0.05)
    raise AssertionError(f"call {call_id} was not finalised")


def one_turn_then_listen(cookie: str) -> PageStandIn:
    """A page that hears the greeting, says one caller turn, then listens until the call has settled."""
    async def scenario() -> PageStandIn:
        page = PageStandIn(communicator(cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.transcripts("agent"))  # the greeting
        await page.say()
        await page.wait(10)
        return page

    return asyncio.run(scenario())


def test_the_test_call_page_needs_a_signed_in_member(client, harbor):
    assert client.get(reverse("test_call"))["Location"].startswith(reverse("account_login"))
    client.force_login(harbor.memberships.get().user)
    page = client.get(reverse("test_call")).content.decode()
    assert 'data-ws-path="/ws/browser/call/"' in page and "voice/player_worklet.js" in page
    assert "Harbor Dental" in page


def test_a_visitor_who_is_not_signed_in_is_refused(harbor, standin):
    assert asyncio.run(refusal_code(communicator(cookie=None))) == 4401
    assert not Call.objects.exists() and standin.sessions == {}


def test_a_page_of_another_site_is_refused_even_with_the_owners_cookie(owner_cookie, standin):
    code = asyncio.run(refusal_code(communicator(owner_cookie, origin="https://evil.example")))
    assert code == 4403
    assert not Call.objects.exists() and standin.sessions == {}


def test_a_socket_without_an_origin_is_refused(owner_cookie, standin):
    assert asyncio.run(refusal_code(communicator(owner_cookie, origin=None))) == 4403
    assert not Call.objects.exists()


def test_a_user_with_no_business_is_refused(client, harbor, standin):
    loner = make_user("loner@example.com")
    assert asyncio.run(refusal_code(communicator(session_cookie(client, loner)))) == 4403
    assert not Call.objects.exists() and standin.sessions == {}


def test_a_members_call_is_recorded_in_their_business_only(owner_cookie, harbor, standin):
    other = make_business(owner=make_user("someone@other.example"), name="Other Clinic", phone_number="+14155550199")
    others_call = make_call(other, status="completed")

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.transcripts("agent"))  # the greeting
        await page.say()
        await page.pump(lambda p: len(p.transcripts("agent")) >= 2)  # the answer
        await page.ws.send_to(text_data=json.dumps({"type": "hangup"}))
        await page.pump(lambda p: p.has("ended"))
        await page.wait(3)  # until the server closes
        return page

    page = asyncio.run(scenario())
    assert page.close_code == 1000 and page.audio_chunks > 0
    assert page.transcripts("caller") == ["What are your opening hours?"]
    assert page.has("latency")
    call_id = next(m["call_id"] for m in page.messages if m["type"] == "call")
    call = finalized(call_id)
    assert (call.business, call.channel, call.status, call.end_reason) == (
        harbor, "browser", "completed", "caller_hung_up")
    assert call.from_number == "owner@harbor.example" and call.answered_at is not None
    entries = list(TranscriptEntry.objects.filter(call=call).values_list("speaker", "text"))
    assert entries == [("agent", HARBOR_SCRIPT["greeting"]), ("caller", "What are your opening hours?"),
                       ("agent", "We're open eight to five, Monday to Friday.")]
    assert CallEvent.objects.filter(call=call, kind="latency").exists()
    assert list(Call.objects.filter(business=other)) == [others_call]
    assert standin.last_session["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}


def test_the_call_is_recorded_in_the_business_chosen_in_the_session(client, harbor, standin):
    owner = harbor.memberships.get().user
    second = make_business(owner=owner, name="Second Practice", phone_number="+14155550177")
    cookie = session_cookie(client, owner)
    session = client.session
    session["current_business_id"] = second.id
    session.save()

    async def scenario():
        page = PageStandIn(communicator(cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("live"))
        await page.ws.send_to(text_data=json.dumps({"type": "hangup"}))
        await page.wait(3)
        return page

    page = asyncio.run(scenario())
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert call.business == second and not Call.objects.filter(business=harbor).exists()


def test_a_business_running_all_its_test_calls_is_refused_another(owner_cookie, harbor, standin, settings):
    settings.BROWSER_CALLS_AT_ONCE = 1
    running = make_call(harbor, channel="browser", status="in_progress")
    assert asyncio.run(refusal_code(communicator(owner_cookie))) == 4429
    assert list(Call.objects.all()) == [running] and standin.sessions == {}


def test_finished_test_calls_and_phone_calls_do_not_count_against_the_cap(harbor, settings):
    settings.BROWSER_CALLS_AT_ONCE = 1
    make_call(harbor, channel="browser", status="completed", finalized_at=timezone.now())
    make_call(harbor, channel="twilio", status="in_progress")
    call = call_create_browser(business=harbor, user_label="owner@harbor.example")
    assert call.channel == "browser"
    with pytest.raises(TooManyBrowserCalls):
        call_create_browser(business=harbor, user_label="owner@harbor.example")


def test_a_test_call_ends_after_its_length_limit(owner_cookie, standin, settings):
    settings.BROWSER_CALL_MAX_SECONDS = 1

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("hangup"), timeout=8)
        await page.wait(3)  # until the server closes
        return page

    page = asyncio.run(scenario())
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("completed", "max_duration")
    assert call.duration_seconds is not None and call.duration_seconds < 5


def test_malformed_frames_are_ignored_then_too_many_close_the_call_which_is_still_recorded(owner_cookie, standin):
    bad_frames = ["{not json", json.dumps(["a list"]), json.dumps({"type": "teleport"}),
                  json.dumps({"type": "audio", "audio": "@@not base64@@"}), json.dumps({"type": "audio", "audio": 42}),
                  json.dumps({"type": "audio", "audio": "AA=="}),  # one byte: not whole PCM16 samples
                  json.dumps({"type": "mark"})]

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("live"))
        for frame in bad_frames:
            await page.ws.send_to(text_data=frame)
        await page.ws.send_to(bytes_data=b"\x00\x01")
        await page.say(speech_ms=400, silence_ms=200)  # good audio still goes through
        await page.wait(0.5)
        alive = page.close_code is None
        for _ in range(100):
            await page.ws.send_to(text_data="{still not json")
        await page.wait(5)
        return page, alive

    page, alive = asyncio.run(scenario())
    assert alive, "frames that should only be ignored closed the call"
    assert page.close_code == 4400
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.channel, call.status, call.end_reason) == ("browser", "failed", "stream_protocol_error")
    assert "too many bad frames (50)" in call.error
    counted = CallEvent.objects.get(call=call, kind="error", payload__source="browser")
    assert counted.payload["bad_frames"] == 50
    assert TranscriptEntry.objects.filter(call=call, speaker="agent").exists()  # the greeting was recorded


def test_openai_unreachable_sends_the_fallback_and_fails_the_call(owner_cookie, standin):
    standin.script = Script.from_obj({"fail": {"refuse_connection": True}})

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.wait(10)
        return page

    page = asyncio.run(scenario())
    fallback = next(m for m in page.messages if m["type"] == "fallback")
    assert "having trouble" in fallback["message"] and fallback["language"]
    assert page.close_code == 1000 and not page.has("live")
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.channel, call.status, call.end_reason) == ("browser", "failed", "upstream_failed")
    assert "Could not connect to OpenAI" in call.error
    # A browser can be neither recorded nor transferred: the page says what a phone caller would get.
    assert "leave a voicemail" in fallback["note"]
    assert CallEvent.objects.get(call=call, kind="fallback").payload["action"] == "notice"


def test_the_agent_hanging_up_tells_the_page_and_ends_the_call(owner_cookie, standin):
    standin.script = Script.from_obj({"greeting": "Hello.", "turns": [
        {"caller": "Bye.", "say": "Goodbye!", "tool": {"name": "end_call", "arguments": {"reason": "done"}}}]})

    page = one_turn_then_listen(owner_cookie)
    assert next(m for m in page.messages if m["type"] == "hangup")["by"] == "agent"
    assert page.close_code == 1000
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("completed", "agent_ended")


def test_a_transfer_is_explained_to_the_page_and_ends_the_call_as_transferred(owner_cookie, harbor, standin):
    standin.script = Script.from_obj({"greeting": "Hello.", "turns": [
        {"caller": "A person please.", "say": "Connecting you.",
         "tool": {"name": "transfer_to_human", "arguments": {"reason": "asked"}}}]})

    page = one_turn_then_listen(owner_cookie)
    transfer = next(m for m in page.messages if m["type"] == "transfer")
    assert transfer["number"] == harbor.transfer_number and harbor.transfer_number in transfer["message"]
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("completed", "transferred")
    assert CallEvent.objects.get(call=call, kind="transfer").payload["ok"] is True


def test_a_page_that_disconnects_without_hanging_up_leaves_an_interrupted_call(owner_cookie, standin):
    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("live"))
        await page.ws.disconnect(timeout=10)
        return page

    page = asyncio.run(scenario())
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("interrupted", "browser_disconnected")


@pytest.mark.e2e
def test_the_supervisor_answers_a_browser_call_through_the_channel_layer(harbor, standin, twilio_standin, client):
    """daphne with no Redis: the supervisor runs in the web process and answers over the in-memory layer."""
    standin.script = Script.from_obj({
        "greeting": "Hello.",
        "turns": [{"caller": "Do you do whitening?", "say": "One moment.",
                   "tool": {"name": "ask_supervisor", "arguments": {"request": "Do they do whitening?"}},
                   "after_tool": "{output.answer}"}],
        "supervisor": [{"default": True, "steps": [{"say": "Yes, whitening is ninety dollars."}]}]})
    cookie = session_cookie(client, harbor.memberships.get().user)
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin, extra_env={"REDIS_URL": ""})
    try:
        async def scenario():
            import websockets

            url = server.base_url.replace("http", "ws") + "/ws/browser/call/"
            headers = {"Origin": server.base_url, "Cookie": f"{django_settings.SESSION_COOKIE_NAME}={cookie}"}
            async with websockets.connect(url, additional_headers=headers) as ws:
                said, texts = False, []
                async with asyncio.timeout(20):
                    async for raw in ws:
                        message = json.loads(raw)
                        if message["type"] == "mark":
                            await ws.send(json.dumps({"type": "mark", "name": message["name"]}))
                        elif message["type"] == "transcript" and message["speaker"] == "agent":
                            texts.append(message["text"])
                            if texts[-1] == "Yes, whitening is ninety dollars.":
                                await ws.send(json.dumps({"type": "hangup"}))
                        if texts and not said:
                            said = True
                            for frame in pcm_frames(600, loud=True) + pcm_frames(800, loud=False):
                                await ws.send(json.dumps({"type": "audio", "audio": frame}))
                return texts

        texts = asyncio.run(scenario())
    finally:
        stop_process(server.process)
    assert texts[-1] == "Yes, whitening is ninety dollars.", (texts, server.log())
    call = finalized(Call.objects.get().id)
    assert (call.channel, call.status) == ("browser", "completed")
    assert CallEvent.objects.filter(call=call, kind="supervisor", payload__step="answer").exists()


# --- minutes: the daily test-call quota, the free trial, audio faster than real time ------------------------

def earlier_test_call(business, seconds: int) -> Call:
    """A test call made earlier today that lasted `seconds` (started now: always within the local day)."""
    now = timezone.now()
    return make_call(business, channel="browser", status="completed", started_at=now, answered_at=now,
                     stream_started_at=now, ended_at=now, finalized_at=now, duration_seconds=seconds)


def test_a_test_call_over_the_daily_quota_is_refused_with_the_reason(owner_cookie, harbor, standin, settings):
    settings.BROWSER_CALL_DAILY_MINUTES = 1
    earlier = earlier_test_call(harbor, 60)

    async def scenario():
        ws = communicator(owner_cookie)
        assert (await ws.connect())[0]
        refused = await ws.receive_json_from(timeout=3)
        closed = await ws.receive_output(timeout=3)
        await ws.wait()
        return refused, closed

    refused, closed = asyncio.run(scenario())
    assert (closed["type"], closed["code"], closed["reason"]) == ("websocket.close", 4402, "test_call_quota_used")
    assert refused["type"] == "refused" and refused["reason"] == "test_call_quota_used"
    assert "test-call minutes are used up" in refused["message"] and "America/Los_Angeles" in refused["message"]
    assert list(Call.objects.all()) == [earlier] and standin.sessions == {}  # nothing recorded, nothing to OpenAI


def test_a_test_call_is_refused_once_the_free_trial_is_used_up(owner_cookie, harbor, standin):
    from billing.models import BillingAccount, UsageRecord

    BillingAccount.objects.create(business=harbor, trial_minutes=1)
    used = make_call(harbor, status="completed", finalized_at=timezone.now(), stream_started_at=timezone.now(),
                     duration_seconds=60)
    UsageRecord.objects.create(business=harbor, call=used, external_id=f"call_{used.id}", seconds=60, minutes=1,
                               occurred_at=timezone.now(), status="sent")
    assert asyncio.run(refusal_code(communicator(owner_cookie))) == 4402
    assert Call.objects.count() == 1 and standin.sessions == {}


def test_a_running_test_call_is_ended_politely_when_todays_minutes_run_out(owner_cookie, harbor, standin, settings):
    settings.BROWSER_CALL_DAILY_MINUTES = 1
    earlier_test_call(harbor, 52)  # 8 s left today

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("limit"), timeout=15)
        await page.wait(5)  # until the server closes
        return page

    page = asyncio.run(scenario())
    limit = next(m for m in page.messages if m["type"] == "limit")
    assert limit["reason"] == "test_call_quota_reached" and "test-call minutes are used up" in limit["message"]
    assert next(m for m in page.messages if m["type"] == "hangup")["by"] == "agent"
    assert page.close_code == 1000
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("completed", "test_call_quota_reached")
    assert call.duration_seconds <= 10
    goodbye = [r["instructions"] for r in standin.last_session["responses"] if r.get("instructions")]
    assert goodbye and "test-call minutes are used up" in goodbye[-1]


def test_a_test_call_spends_free_trial_minutes_but_is_never_billed_to_polar(owner_cookie, harbor, standin):
    from billing.models import BillingAccount, UsageRecord
    from billing.selectors import minutes_used
    from billing.services.account import account_for_business
    from billing.services.gate import can_take_call

    BillingAccount.objects.create(business=harbor, trial_minutes=1)

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.transcripts("agent"))  # the greeting
        await page.ws.send_to(text_data=json.dumps({"type": "hangup"}))
        await page.wait(5)
        return page

    page = asyncio.run(scenario())
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    record = UsageRecord.objects.get(call=call)  # recorded as the call ends, not minutes later by the sweep
    assert (record.minutes, record.status) == (1, "not_billable")  # counted, never reported to Polar
    assert minutes_used(account_for_business(harbor)) == 1
    assert can_take_call(harbor).reason == "trial_exhausted"  # phone calls now find the trial used up


def test_audio_faster_than_real_time_is_dropped_and_then_ends_the_call(owner_cookie, standin, settings):
    settings.BROWSER_AUDIO_BURST_MS = 400
    settings.BROWSER_AUDIO_EXCESS_SECONDS = 1
    silence = pcm_frames(FRAME_MS, loud=False)[0]

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.has("live"))
        started, sent_ms = time.monotonic(), 0
        while page.close_code is None and sent_ms < 20_000:
            for _ in range(4):  # four times real time
                await page.ws.send_to(text_data=json.dumps({"type": "audio", "audio": silence}))
                sent_ms += FRAME_MS
            await page.wait(FRAME_MS / 1000)
        await page.wait(5)
        return page, sent_ms, (time.monotonic() - started) * 1000

    page, sent_ms, wall_ms = asyncio.run(scenario())
    assert page.close_code == 4413
    forwarded_ms = standin.last_session["input_audio_ms"]
    assert forwarded_ms <= wall_ms + 400 + 200  # real time plus the burst (and a frame or so of rounding)
    assert sent_ms >= 2 * forwarded_ms  # most of it never reached OpenAI
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    assert (call.status, call.end_reason) == ("failed", "audio_too_fast")
    assert "audio faster than real time" in call.error
    dropped = CallEvent.objects.get(call=call, kind="error", payload__source="browser")
    assert dropped.payload["dropped_audio_ms"] >= sent_ms - forwarded_ms - 200


def test_the_test_call_page_says_how_many_minutes_are_left_today(client, harbor, settings):
    settings.BROWSER_CALL_DAILY_MINUTES = 20
    earlier_test_call(harbor, 5 * 60 + 10)
    client.force_login(harbor.memberships.get().user)
    page = client.get(reverse("test_call")).content.decode()
    assert "14 of today&#x27;s 20 test-call minutes left." in page
    assert "Test calls spend your free trial minutes: 24 left." in page  # 30, less that call's 6 (rounded up)
    left = client.get(reverse("test_call_minutes")).json()
    assert (left["minutes_left_today"], left["daily_minutes"], left["trial_minutes_left"]) == (14, 20, 24)


def test_the_minutes_left_are_the_members_own_business(client, harbor, settings):
    settings.BROWSER_CALL_DAILY_MINUTES = 20
    earlier_test_call(harbor, 5 * 60)
    other_owner = make_user("owner@other.example")
    make_business(owner=other_owner, name="Other Clinic", phone_number="+14155550199")
    client.force_login(other_owner)
    assert client.get(reverse("test_call_minutes")).json()["minutes_left_today"] == 20
    client.logout()
    assert client.get(reverse("test_call_minutes"))["Location"].startswith(reverse("account_login"))


def test_turn_latency_counts_the_silence_the_openai_session_actually_waits_for(owner_cookie, standin, settings):
    """The product asks for VAD_SILENCE_MS of silence; what counts is what the session applied. Here OpenAI
    refused the session.update, so its own default (500 ms, as session.created said) is in force."""
    settings.VAD_SILENCE_MS = 900
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "fail": {"error_on_session_update": {"count": 1}}})

    async def scenario():
        page = PageStandIn(communicator(owner_cookie))
        assert (await page.ws.connect())[0]
        await page.pump(lambda p: p.transcripts("agent"))  # the greeting
        await page.say(speech_ms=600, silence_ms=800)
        await page.pump(lambda p: len(p.transcripts("agent")) >= 2)  # the answer
        await page.ws.send_to(text_data=json.dumps({"type": "hangup"}))
        await page.pump(lambda p: p.has("ended"))
        await page.wait(3)
        return page

    page = asyncio.run(scenario())
    call = finalized(next(m["call_id"] for m in page.messages if m["type"] == "call"))
    latency = CallEvent.objects.get(call=call, kind="latency")
    assert latency.payload["ms"] - latency.payload["after_vad_ms"] == pytest.approx(500, abs=2)
    assert latency.payload["vad_silence_ms"] == 500
