"""The caller's side of a call on one of our WebSockets, as the call session sees it (`CallTransport`).

`TwilioTransport` speaks Twilio's Media Streams messages and hangs up or transfers through Twilio's REST API;
`BrowserTransport` speaks the test-call page's JSON frames, and turns what a phone company would do into messages
the page shows (`page_message`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from calls.models import CallEvent
from calls.services.forwards import call_forward_cancel, call_forward_start
from calls.services.voicemail import call_voicemail_cancel, call_voicemail_start
from voice import twilio_api
from voice.agent import BROWSER_AUDIO, PHONE_AUDIO
from voice.phrases import phrase
from voice.session import in_db_pool, in_io_threads


class _SocketTransport:
    """The caller's side of a call on one of our WebSockets: text frames out, closed once."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.closed = False

    async def _text(self, text: str) -> None:
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:
            # The caller's side is gone (uvicorn raises ClientDisconnected) while agent audio was still on its way.
            # Not an OpenAI failure: the frame loop gets the disconnect and ends the call as the caller left it.
            self.closed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await send_close(self._send, code, reason)


async def send_close(send: Any, code: int, reason: str = "") -> None:
    """Close a WebSocket with a code and a short reason; a socket already gone is fine."""
    message: dict[str, Any] = {"type": "websocket.close", "code": code}
    if reason:
        message["reason"] = reason.encode()[:120].decode(errors="ignore")  # a close reason fits in 123 bytes
    try:
        await send(message)
    except Exception:
        pass


class TwilioTransport(_SocketTransport):
    """Sends agent audio to Twilio as `media` + `mark` messages; hang-up and transfer go through REST."""

    audio_format = PHONE_AUDIO
    bytes_per_ms = 8

    def __init__(self, send: Any, stream_sid: str, call_sid: str) -> None:
        super().__init__(send)
        self.call_sid = call_sid
        self._media_prefix = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        self._mark_prefix = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        self._clear = '{"event":"clear","streamSid":"' + stream_sid + '"}'

    async def send_audio(self, payload: str) -> None:
        await self._text(self._media_prefix + payload + '"}}')

    async def send_mark(self, name: str) -> None:
        await self._text(self._mark_prefix + name + '"}}')

    async def clear_audio(self) -> None:
        await self._text(self._clear)

    async def hang_up(self) -> None:
        await in_io_threads(twilio_api.hang_up)(self.call_sid)

    async def transfer(self, number: str) -> None:
        await self._redirect(twilio_api.transfer_twiml(number), forward_to=number)

    async def fallback(self, *, action: str, language: str, transfer_to: str) -> str:
        if action == "transfer" and transfer_to:
            await self._redirect(twilio_api.say_twiml(phrase("unavailable_transfer", language), language=language,
                                                      transfer_to=transfer_to), forward_to=transfer_to)
            return "transfer"
        # Noted first, like a <Dial>: the call's summary then waits for the recording.
        await in_db_pool(call_voicemail_start)(twilio_call_sid=self.call_sid)
        try:
            await in_io_threads(twilio_api.redirect_call)(
                self.call_sid, twilio_api.voicemail_twiml(language=language, to_number="", from_number=""))
        except Exception:
            await in_db_pool(call_voicemail_cancel)(twilio_call_sid=self.call_sid)
            raise
        return "voicemail"

    async def _redirect(self, twiml: str, *, forward_to: str) -> None:
        """Replace the call's TwiML. A <Dial> is noted on the call first, so its usage waits for the outcome."""
        if forward_to:
            await in_db_pool(call_forward_start)(twilio_call_sid=self.call_sid, number=forward_to)
        try:
            await in_io_threads(twilio_api.redirect_call)(self.call_sid, twiml)
        except Exception:
            if forward_to:
                await in_db_pool(call_forward_cancel)(twilio_call_sid=self.call_sid)
            raise

    def notify(self, event: dict[str, Any]) -> None:
        pass  # a phone shows nothing; the dashboard follows the call through the database


class BrowserTransport(_SocketTransport):
    """Sends agent audio to the test-call page as JSON text frames: base64 PCM16 24 kHz, forwarded untouched.

    A browser cannot be hung up or transferred by a phone company, so those become messages the page shows.
    """

    audio_format = BROWSER_AUDIO
    bytes_per_ms = 48  # 24,000 samples/s x 2 bytes

    def __init__(self, send: Any) -> None:
        super().__init__(send)
        self._notices: set[asyncio.Task] = set()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._text(json.dumps(message))

    async def send_audio(self, payload: str) -> None:
        await self._text('{"type":"audio","audio":"' + payload + '"}')

    async def send_mark(self, name: str) -> None:
        await self._text('{"type":"mark","name":' + json.dumps(name) + "}")

    async def clear_audio(self) -> None:
        await self._text('{"type":"clear"}')

    async def hang_up(self) -> None:
        await self.send_json({"type": "hangup", "by": "agent"})

    async def transfer(self, number: str) -> None:
        await self.send_json({"type": "transfer", "number": number, "message": (
            f"On a phone call the receptionist would now transfer you to {number}. "
            "A browser call can't be transferred, so the test call ends here.")})

    async def fallback(self, *, action: str, language: str, transfer_to: str) -> str:
        note = (f"On a phone call the caller would now be transferred to {transfer_to}." if action == "transfer"
                else "On a phone call the caller would now be asked to leave a voicemail.")
        await self.send_json({"type": "fallback", "message": phrase("unavailable", language), "note": note,
                              "action": action, "language": language})
        return "notice"  # a browser can be neither transferred nor recorded: the page says what a phone would do

    def notify(self, event: dict[str, Any]) -> None:
        message = page_message(event)
        if message is None or self.closed:
            return
        # Sent from a task of its own so the session's handler (maybe on the audio path) never waits for it.
        task = asyncio.get_running_loop().create_task(self.send_json(message))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)


def page_message(event: dict[str, Any]) -> dict[str, Any] | None:
    """What the test-call page shows of a recorded transcript entry or event (None: nothing).

    Each line carries `at_ms`, when it happened in the call, and the page places it by that: a caller's words
    are transcribed seconds after they were said, often after the agent answered or ended the call, so the
    order the messages arrive in is not the order of the call."""
    if event.get("type") == "transcript":
        at_ms = event.get("start_ms") if event.get("start_ms") is not None else event.get("end_ms")
        return {"type": "transcript", "speaker": event["speaker"], "text": event["text"], "order": event["order"],
                "interrupted": event["interrupted"], "at_ms": at_ms}
    payload = event.get("payload") or {}
    kind = event.get("kind")
    if kind == CallEvent.Kind.LATENCY:
        return {"type": "latency", "ms": payload.get("ms"), "item_id": payload.get("item_id")}
    if kind == CallEvent.Kind.BARGE_IN:
        return {"type": "barge_in", "heard_ms": payload.get("heard_ms"), "at_ms": event.get("offset_ms")}
    if kind == CallEvent.Kind.TOOL_CALL:
        return {"type": "tool", "name": payload.get("name"), "at_ms": event.get("offset_ms")}
    if kind == CallEvent.Kind.HANGUP and payload.get("by") == "agent" and payload.get("reason") in LIMIT_MESSAGES:
        return {"type": "limit", "reason": payload["reason"], "message": LIMIT_MESSAGES[payload["reason"]]}
    return None


# Why the agent ended a test call early, for the page.
LIMIT_MESSAGES = {
    "test_call_quota_reached": "Today's test-call minutes are used up, so the receptionist ended the call.",
    "billing_cap_reached": "Your free trial minutes are used up, so the receptionist ended the call.",
}
