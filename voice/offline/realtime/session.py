"""One Realtime session (one WebSocket connection): its state, the event dispatch, echo mode, closing.

The handlers live in mixins by concern: ``session_config`` (``session.update``), ``input_audio`` (appends,
VAD, commits), ``items`` (conversation items) and ``responses`` (response generation and streaming).

What a session does
===================
* Connect: ``Authorization: Bearer <non-empty>`` is required (HTTP 401 otherwise). The server sends
  ``session.created`` with the default GA session (``audio/pcm`` 24 kHz in and out, voice ``marin``,
  ``server_vad`` with threshold 0.5, prefix_padding_ms 300, silence_duration_ms 500,
  create_response and interrupt_response true).
* ``session.update``: ``session.type`` is required; the update is partial (only given fields change;
  ``audio.input`` / ``audio.output`` are merged key by key; ``turn_detection`` / ``format`` /
  ``transcription`` objects are replaced as a whole, with their defaults filled in). Beta-shaped
  fields (``modalities``, ``voice``, ``input_audio_format``, ``turn_detection`` at the top level,
  ``temperature`` ...) and other unknown fields are rejected with ``unknown_parameter``; nothing of a
  rejected update is applied.
* ``input_audio_buffer.append``: audio in the session's input format (``audio/pcmu`` 8 bytes/ms,
  ``audio/pcma`` 8 bytes/ms, ``audio/pcm`` 24 kHz 48 bytes/ms) advances the input clock. With
  server VAD (``semantic_vad`` is treated the same way) each appended chunk is classified by its RMS:
  speech when ``rms >= 1000 * threshold`` (500 at the default 0.5; μ-law 0xFF / digital silence is
  0, an ordinary voice or a tone burst is thousands). The first loud chunk emits ``speech_started``
  (``audio_start_ms`` = chunk start - prefix_padding_ms, never below 0), and if a response is active and
  ``interrupt_response`` is set that response is cancelled (reason ``turn_detected``).
  ``silence_duration_ms`` of quiet audio afterwards emits ``speech_stopped`` (``audio_end_ms`` includes
  the silence, as the real server's does), ``input_audio_buffer.committed``, ``conversation.item.added``
  and ``conversation.item.done`` for the user item, then, after ``transcription_delay_ms``, the
  transcription (only if ``audio.input.transcription`` is configured). If ``create_response`` is set a
  response starts right after the commit. With ``turn_detection: null`` the client commits
  (``input_audio_buffer.commit``, at least 100 ms) and clears (``input_audio_buffer.clear``) itself.
* Responses stream ``response.output_audio.delta`` chunks (``chunk_ms`` of audio each, in the output
  format) interleaved with transcript deltas, generated ``speed`` times faster than real time
  (default 3; 0 means unpaced). The audio is a tone (65 ms per character of text, at least 400 ms) or,
  with ``audio="espeak"`` and ``espeak-ng`` installed, the spoken text. ``response.done`` carries a usage
  block estimated the way the real API bills: user audio 1 token / 100 ms, assistant audio 1 token /
  50 ms, text about 1.3 tokens per word, cached tokens as 64-token blocks of the previous prompt
  once it exceeds 1024 tokens.
* ``conversation.item.truncate``, ``response.cancel``, ``conversation.item.create`` (user/system/assistant
  text messages and ``function_call_output``), ``conversation.item.delete`` / ``.retrieve`` behave like
  the real server, including its error messages for the common mistakes (``Audio content of Xms is
  already shorter than Yms``, ``conversation_already_has_active_response``,
  ``response_cancel_not_active``, ``input_audio_buffer_commit_empty``). Invalid JSON or an unknown event
  type gives an ``error`` event; the socket stays open.

Echo mode
=========
(With ``echo_scripted`` every append is echoed first and then handled like any other event, so VAD, turns,
responses and tools run as in scripted mode; a truncate of the echo item is accepted and otherwise ignored.)

``echo=True`` (``--echo``) is for latency benchmarks: every ``input_audio_buffer.append`` is answered at
once with one ``response.output_audio.delta`` whose ``delta`` is the same base64 payload (the same
response/item ids for the whole session). There is no VAD and there are no responses; the payload is
cut out of the message text without parsing the JSON or decoding the audio. ``session.update`` is still
answered; other events are only logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice.offline.audio import fmt_type
from voice.offline.realtime.input_audio import _InputAudio
from voice.offline.realtime.items import _Conversation
from voice.offline.realtime.protocol import (
    BETA_DISABLED_MESSAGE, _CLIENT_EVENTS, DEFAULT_MODEL, DEFAULT_SESSION, SESSION_EXPIRED_MESSAGE,
    _Error,
)
from voice.offline.realtime.responses import _Responses
from voice.offline.realtime.session_config import _SessionConfig
from voice.offline.realtime.socket_session import _SocketSession
from voice.offline.realtime.wire import _WireText

if TYPE_CHECKING:
    from voice.offline.realtime.responses import _ResponseRun
    from voice.offline.realtime.script import Step
    from voice.offline.realtime.server import RealtimeStandin


class _Session(_SocketSession, _WireText, _SessionConfig, _InputAudio, _Conversation, _Responses):
    """One Realtime WebSocket connection: its config, conversation, input clock and script cursor."""

    def __init__(self, standin: RealtimeStandin, ws: ServerConnection, info: dict[str, Any]) -> None:
        self.attach(standin, ws)
        self.id = self.ids.new("sess")
        self.conversation_id = self.ids.new("conv")
        self.model = info.get("model") or DEFAULT_MODEL
        self.config = copy.deepcopy(DEFAULT_SESSION)
        self.config["id"] = self.id
        self.config["model"] = self.model
        self.config["expires_at"] = int(time.time()) + 3600
        self.server_closing = False
        self.tasks: set[asyncio.Task] = set()
        # conversation
        self.items: dict[str, dict] = {}
        self.order: list[str] = []
        self.meta: dict[str, dict] = {}  # item_id -> {"text_tokens", "audio_tokens", "audio_ms", ...}
        self.calls: dict[str, dict] = {}  # call_id -> {"name", "after_tool", "answered"}
        self.audio_produced = False
        # input audio / VAD
        self.input_ms = 0.0
        self.buffer_ms = 0.0
        self.speaking = False
        self.speech_item: str | None = None
        self.speech_start_ms = 0
        self.silence_run = 0.0
        # script cursor
        self.turn_index = 0
        self.utterances = 0
        self.greeted = False
        self.pending: Step | None = None
        # responses
        self.active: _ResponseRun | None = None
        self.responses_done = 0
        self.prev_prompt_tokens = 0
        self.session_update_errors = 0
        self.drop_scheduled = False
        # echo
        self.echo_item_id = self.ids.new("item")
        self.echo_prefix = (
            '{"type":"response.output_audio.delta","response_id":"' + self.ids.new("resp")
            + '","item_id":"' + self.echo_item_id + '","output_index":0,"content_index":0,"event_id":"'
        )
        self.record: dict[str, Any] = {
            "id": self.id,
            "protocol": "realtime",
            "model": self.model,
            "path": info.get("path"),
            "mode": "echo+scripted" if standin.echo_scripted else "echo" if standin.echo else "scripted",
            "headers": info.get("headers", {}),
            "rejected": None,
            "session": self.public_config(),
            "session_updates": 0,
            "events_received": [],
            "events_received_total": 0,
            "event_counts": {},
            "events_sent": {},
            "errors": [],
            "input_audio_ms": 0,
            "caller_turns": [],
            "responses": [],
            "audio_ms_by_item": {},
            "truncations": [],
            "tool_calls": [],
            "tool_outputs": [],
            "warnings": [],
            "closed_by": None,
            "close_code": None,
            "close_reason": None,
            "started_at": time.time(),
            "ended_at": None,
        }

    # ---- plumbing -------------------------------------------------------------------------

    def public_config(self) -> dict:
        return copy.deepcopy(self.config)

    async def send_error(self, err: _Error, client_event_id: str | None = None) -> None:
        self.record["errors"].append(
            {"code": err.code, "message": err.message, "param": err.param, "event_id": client_event_id}
        )
        await self.send({
            "type": "error",
            "error": {"type": err.type, "code": err.code, "message": err.message, "param": err.param,
                      "event_id": client_event_id},
        })

    @property
    def input_format(self) -> str:
        return fmt_type(self.config["audio"]["input"]["format"])

    @property
    def output_format(self) -> str:
        return fmt_type(self.config["audio"]["output"]["format"])

    @property
    def turn_detection(self) -> dict | None:
        return self.config["audio"]["input"]["turn_detection"]

    # ---- main loop ------------------------------------------------------------------------

    async def run(self, info: dict) -> None:
        if info.get("beta"):
            self.record["rejected"] = "beta_api_shape_disabled"
            await self.send_error(_Error("beta_api_shape_disabled", BETA_DISABLED_MESSAGE))
            self.server_closing = True
            await self.ws.close(4000, "beta_api_shape_disabled")
            return
        await self.send({"type": "session.created", "session": self.public_config()})
        fail = self.fail
        if fail.get("expire_after_ms") is not None:
            self.spawn(self._expire_later(float(fail["expire_after_ms"]) / 1000))
        if self.standin.echo:
            await self._echo_loop()
        else:
            async for message in self.ws:
                await self.handle(message)

    async def _echo_loop(self) -> None:
        ws, ids, prefix = self.ws, self.ids, self.echo_prefix
        for_append = '"input_audio_buffer.append"'
        note = self.note_received
        sent = self.record["events_sent"]
        scripted = self.standin.echo_scripted  # the append goes on to VAD and the script too
        n_sent = 0
        try:
            async for message in ws:
                if isinstance(message, str) and for_append in message:
                    payload = _cut_audio(message)
                    if payload is not None:
                        if not scripted:
                            note("input_audio_buffer.append")  # (scripted: handle() notes it)
                        n_sent += 1
                        await ws.send(prefix + ids.new("event") + '","delta":"' + payload + '"}')
                        if not scripted:
                            continue
                await self.handle(message)
                continue
                await self.handle(message)
        finally:
            if n_sent:
                sent["response.output_audio.delta"] = sent.get("response.output_audio.delta", 0) + n_sent

    async def handle(self, message: str | bytes) -> None:
        parsed = await self.read_event(message)
        if parsed is None:
            return
        event, etype, client_event_id = parsed
        handler = _HANDLERS.get(etype)
        if handler is None:
            supported = ", ".join(f"'{t}'" for t in _CLIENT_EVENTS)
            await self.send_error(
                _Error("invalid_value", f"Invalid value: '{etype}'. Supported values are: {supported}.", "type"),
                client_event_id)
            return
        if self.standin.echo and not self.standin.echo_scripted and etype != "session.update":
            return  # echo mode: logged, otherwise ignored
        try:
            await handler(self, event)
        except _Error as err:
            await self.send_error(err, client_event_id)

    async def _expire_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(_Error("session_expired", SESSION_EXPIRED_MESSAGE))
            self.server_closing = True
            await self.ws.close(1001, SESSION_EXPIRED_MESSAGE)

    # ---- session.update -------------------------------------------------------------------


def _cut_audio(message: str) -> str | None:
    """The base64 of ``"audio": "..."`` in a JSON text, without parsing it (echo fast path)."""
    i = message.find('"audio"')
    if i < 0:
        return None
    k = message.find('"', i + 7)
    if k < 0 or message[i + 7:k].strip() != ":":
        return None
    j = message.find('"', k + 1)
    if j < 0:
        return None
    return message[k + 1:j]


_HANDLERS: dict[str, Callable[[_Session, dict], Awaitable[None]]] = {
    "session.update": _Session.on_session_update,
    "input_audio_buffer.append": _Session.on_append,
    "input_audio_buffer.commit": _Session.on_commit,
    "input_audio_buffer.clear": _Session.on_clear,
    "conversation.item.create": _Session.on_item_create,
    "conversation.item.truncate": _Session.on_item_truncate,
    "conversation.item.delete": _Session.on_item_delete,
    "conversation.item.retrieve": _Session.on_item_retrieve,
    "response.create": _Session.on_response_create,
    "response.cancel": _Session.on_response_cancel,
    "output_audio_buffer.clear": _Session.on_output_audio_buffer_clear,
}
