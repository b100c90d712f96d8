"""GPT-Live on the stand-in: one session at ``ws://HOST:PORT/v1/live/sessions`` (the same port as ``/v1/realtime``).

The protocol is OpenAI's GPT-Live primary WebSocket as the installed openai SDK types it (``openai.types.live``);
every server event validates against its ``ServerEvent`` union and every nested backend event against the
Responses streaming events. The same JSON script drives it as the Realtime path (``voice.offline.realtime.script``).

What a Live session does
========================
* Connect: ``Authorization: Bearer <non-empty>`` (HTTP 401 otherwise); no query parameters: ``?model=`` (or any
  other) gets an ``error`` ``unknown_parameter`` (param the first query key) and close 1008. The ``fail`` knobs
  ``refuse_connection``, ``refuse_after_sessions``, ``sessions`` and ``connect_delay_ms`` apply to the upgrade as
  on Realtime, and ``POST /standin/drop`` drops Live sessions too.
* ``session.start`` must come first (any other event before it: ``error`` ``session_not_started``, the socket
  stays open). Its ``session`` is checked strictly (``voice.offline.realtime.live_config``); a refused start is an
  ``error`` (``client_event_id`` the start's ``event_id``), no ``session.started``, and close 1008. Otherwise
  ``session.started`` carries the session resource: ``id`` ``live_…``, ``status: "active"``, ``model``,
  ``expires_at`` (now + script ``live.session_seconds``, default 7200; or the ``fail.expire_after_ms`` moment),
  and the resolved config (``audio.format`` default ``audio/pcm`` 24 kHz, voice ``marin``, ``delegation``
  default ``{"type": "client"}``, ``input`` as sent: a reconnecting client's seed, recorded in the log).
* ``session.input_audio.append`` (``audio`` base64 in the session format; PCM needs an even byte count) advances
  the input clock. There is no commit and no clear (``input_audio_buffer.*`` is an ``error``). Caller turns come
  from the energy detector of the Realtime path (RMS >= 500, a turn ends after 500 ms of quiet). The turn
  consumes the next script turn (``caller`` text, templates, ``(caller speech N)`` when out of turns, as on
  Realtime); ``live.early_transcript_ms`` (300) of speech into the turn, ``session.input_transcript.delta``
  carries its first word(s), and when the turn ends, the rest (``start_ms`` / ``end_ms`` on the input clock, ms of
  audio since ``session.started``). ``session.input_audio.mute`` / ``.unmute`` stop / restart the detector.
* The voice model answers each caller turn: ``agent`` text as ``session.output_audio.delta`` (``delta`` only, in
  the session format; no ``event_id``, no timing) and ``session.output_transcript.delta`` (``start_ms`` /
  ``end_ms`` on the session clock), generated and paced as on Realtime (tone or espeak-ng, ``chunk_ms`` chunks,
  ``speed`` times faster than real time). Utterances are spoken one after the other. There is no done event.
  When the caller starts speaking while the model speaks, the model stops (no more deltas of that utterance);
  the log records it as interrupted with the audio ms generated.
* ``session.instructions.append`` -> ``session.instructions.appended`` (``start_ms`` = ``end_ms`` = now,
  ``client_event_id``); the model then speaks: before any caller turn the script ``greeting`` (templates;
  ``{response.verbatim}`` is what the content asks to be said word for word), later that word-for-word sentence
  if the content asks for one, else ``out_of_band``. ``session.commentary.append`` -> ``.appended`` and the
  content (trimmed) is spoken; ``session.thinking.append`` -> ``.appended``, silent. A non-null ``delegation_id``
  is an ``error`` with Responses delegation; with client delegation it must be a delegation of the session.
* Delegation: see ``voice.offline.realtime.live_backend``.
* ``session.update`` (only ``delegation`` of the same type, sparse, and ``triggers``) -> ``session.updated``;
  other fields: ``immutable_field_update``.
* ``session.usage.updated`` every ``live.usage_interval_ms`` (10000): ``usage.seconds`` is the wall-clock time
  since ``session.started`` (the ``speed`` knob paces generated audio only; it does not scale session time),
  ``context_window.usage_ratio`` a token estimate over a 128k window.
* ``session.close`` -> ``session.closed`` (reason ``close_requested``, ``usage.seconds``, the session resource),
  then close 1000. ``fail.expire_after_ms``: ``session.closed`` reason ``expired``, then close 1000.
  ``fail.drop_after_ms`` aborts the connection that long after ``session.start``.

Echo mode
=========
``echo=True`` (``--echo``), for latency benchmarks as on Realtime: after ``session.started`` every
``session.input_audio.append`` is answered at once with one ``session.output_audio.delta`` carrying the same base64
(``delta`` only, as the SDK's ``OutputAudioDeltaEvent``); the payload is cut out of the message text without parsing
the JSON or decoding the audio. The model says nothing of its own: no greeting, no transcripts, no caller turns.
Everything else is answered as usual (``session.instructions.append`` -> ``session.instructions.appended``,
``session.close`` -> ``session.closed`` with its usage, the usage updates). With ``echo_scripted`` every append is
echoed first and then handled like any other event, so the detector, the turns and the speech run as without echo.

The session log (``GET /standin/sessions``)
===========================================
A Live record has ``"protocol": "live"`` (Realtime ones ``"realtime"``)::

    {"id": "live_…", "protocol": "live", "mode": "scripted"|"echo"|"echo+scripted", "model", "path", "headers", "rejected": null|error code,
     "session": {...the session resource, updates applied...}, "input": [seed messages], "session_updates": int,
     "events_received": [types], "events_received_total", "event_counts": {type: n}, "events_sent": {type: n},
     "errors": [{"code", "message", "param", "event_id"}], "input_audio_ms": int,
     "caller_turns": [{"transcript", "start_ms", "end_ms", "barged_in": bool}],
     "spoken": [{"kind": "greeting"|"turn"|"after_tool"|"commentary"|"instruction", "text", "transcript",
                 "audio_ms", "interrupted": bool}],
     "appended": [{"type": "instructions"|"commentary"|"thinking"|"response_item", "content"}],
     "delegations": [{"id", "target", "tool", "response_ids", "function_calls": [{"call_id", "name", "arguments"}],
                      "outputs": [{"call_id", "output", "known"}], "continued": int, "final_text"}],
     "tool_calls": [{"call_id", "name", "arguments", "delegation_id"}], "tool_outputs": [{"call_id", "output",
     "known"}], "response_creates": int, "usage_seconds": float, "closed_reason": null|"close_requested"|"expired",
     "expires_at": int, "warnings": [str], "closed_by", "close_code", "close_reason", "started_at", "ended_at"}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import math
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voice.offline.audio import audioop
from voice.offline.realtime.input_audio import _TurnCursor, decode_audio, is_loud
from voice.offline.realtime.live_backend import _LiveBackend
from voice.offline.realtime.live_config import apply_update, resolve_start
from voice.offline.realtime.protocol import DEFAULT_TURN_DETECTION, _Error, _text_tokens
from voice.offline.realtime.responses import _Cancelled, _Interruptible, paced_speech, speech_audio
from voice.offline.realtime.session import _cut_audio
from voice.offline.realtime.socket_session import _SocketSession
from voice.offline.realtime.wire import _WireText, verbatim_request

if TYPE_CHECKING:
    from voice.offline.realtime.server import RealtimeStandin

LIVE_PATH = "/v1/live/sessions"
_APPEND = '"session.input_audio.append"'
_ECHO_HEAD = '{"type":"session.output_audio.delta","delta":"'
CONTEXT_WINDOW_TOKENS = 128_000
_VAD = DEFAULT_TURN_DETECTION["server_vad"]


def _bytes_per_ms(fmt: dict) -> int:
    return 2 * fmt["rate"] // 1000 if fmt["type"] == "audio/pcm" else fmt["rate"] // 1000


class _LiveSpeech(_Interruptible):
    """One utterance of the voice model, streamed by the session's speech task."""

    def __init__(self, kind: str, text: str) -> None:
        self.kind, self.text = kind, text
        self.audio_ms = 0
        self.transcript = ""
        self.finished = False  # all of its audio went out


class _LiveSession(_SocketSession, _WireText, _TurnCursor, _LiveBackend):
    """One GPT-Live primary WebSocket connection."""

    _WITHOUT_EVENT_ID = frozenset({"session.output_audio.delta"})

    def __init__(self, standin: RealtimeStandin, ws: ServerConnection, info: dict[str, Any]) -> None:
        self.attach(standin, ws)
        self.id = self.ids.new("live")
        self.query: dict = info.get("query") or {}
        self.config: dict = {}
        self.model: str | None = None
        self.started = False
        self.closed = False
        self.expires_at: int | None = None
        self.t0 = 0.0
        self.server_closing = False
        self.tasks: set[asyncio.Task] = set()
        # input audio and the energy detector
        self.input_ms = 0.0
        self.muted = False
        self.speaking = False
        self.speech_start_ms = 0
        self.silence_run = 0.0
        self.turn: dict | None = None  # the caller turn being spoken: step, transcript, early words sent
        # script cursor
        self.turn_index = 0
        self.utterances = 0
        self.greeted = False
        # the voice model's speech
        self.speech_queue: asyncio.Queue[_LiveSpeech] = asyncio.Queue()
        self.current: _LiveSpeech | None = None
        self.out_end_ms = 0
        self.conversation: list[dict[str, str]] = []  # {"speaker": "caller"|"agent", "text"}, for the backend
        # the Responses backend
        self.delegations: dict[str, dict] = {}
        self.calls: dict[str, dict] = {}
        self.prev_prompt_tokens = 0
        self.record: dict[str, Any] = {
            "id": self.id, "protocol": "live",
            "mode": "echo+scripted" if standin.echo_scripted else "echo" if standin.echo else "scripted", "model": None, "path": info.get("path"),
            "headers": info.get("headers", {}), "rejected": None, "session": {}, "input": [], "session_updates": 0,
            "events_received": [], "events_received_total": 0, "event_counts": {}, "events_sent": {}, "errors": [],
            "input_audio_ms": 0, "caller_turns": [], "spoken": [], "appended": [], "delegations": [],
            "tool_calls": [], "tool_outputs": [], "response_creates": 0, "usage_seconds": 0.0,
            "closed_reason": None, "expires_at": None, "warnings": [], "closed_by": None, "close_code": None,
            "close_reason": None, "started_at": time.time(), "ended_at": None,
        }

    # ---- plumbing -------------------------------------------------------------------------

    def public_config(self) -> dict:
        """The session resource (empty before ``session.started``)."""
        if not self.started:
            return {}
        return {"id": self.id, "status": "active", "expires_at": self.expires_at, **copy.deepcopy(self.config)}

    def wire_prompt(self) -> str:
        """Business facts may be in the voice instructions or, as GPT-Live advises, in the backend prompt."""
        backend = ((self.config.get("delegation") or {}).get("responses") or {}).get("instructions") or ""
        return (self.config.get("instructions") or "") + "\n" + backend

    async def send_error(self, err: _Error, client_event_id: str | None = None) -> None:
        self.record["errors"].append(
            {"code": err.code, "message": err.message, "param": err.param, "event_id": client_event_id})
        error = {"type": err.type, "code": err.code or "invalid_request", "message": err.message}
        if err.param is not None:
            error["param"] = err.param
        event: dict[str, Any] = {"type": "error", "error": error}
        if client_event_id is not None:
            error["client_event_id"] = client_event_id
            event["client_event_id"] = client_event_id
        await self.send(event)

    def now_ms(self) -> int:
        """The session clock: ms since ``session.started``."""
        return max(0, int((asyncio.get_running_loop().time() - self.t0) * 1000)) if self.started else 0

    def usage_seconds(self) -> float:
        seconds = round(self.now_ms() / 1000, 3)
        self.record["usage_seconds"] = seconds
        return seconds

    async def close_log(self) -> None:
        if self.started and not self.closed:
            self.usage_seconds()  # the socket went without session.closed: the time until then
        await super().close_log()

    @property
    def fmt(self) -> dict:
        return self.config["audio"]["format"]

    async def close_session(self, reason: str, client_event_id: str | None = None) -> None:
        """``session.closed`` then close 1000; pending backend work is cancelled."""
        if self.closed:
            return
        self.closed = True
        self.record["closed_reason"] = reason
        event: dict[str, Any] = {"type": "session.closed", "reason": reason,
                                 "usage": {"seconds": self.usage_seconds()}, "session": self.public_config()}
        if client_event_id is not None:
            event["client_event_id"] = client_event_id
        if self.current is not None:
            self.current.request_cancel(reason)
        for d in self.record["delegations"]:
            if any(not self.calls[c["call_id"]]["answered"] for c in d["function_calls"]):
                self.record["warnings"].append(f"delegation {d['id']} cancelled by the close with calls unanswered")
        with contextlib.suppress(ConnectionClosed):
            await self.send(event)
            self.server_closing = True
            await self.ws.close(1000, reason)

    # ---- main loop ------------------------------------------------------------------------

    async def run(self, info: dict) -> None:
        if self.query:
            key = next(iter(self.query))
            self.record["rejected"] = "unknown_parameter"
            await self.send_error(_Error("unknown_parameter", f"Unknown parameter: '{key}'. GPT-Live sessions take no "
                                         "query parameters; put the model in session.model.", key))
            self.server_closing = True
            await self.ws.close(1008, "unknown_parameter")
            return
        self.spawn(self._speech_task())
        if self.standin.echo:
            await self._echo_loop()
            return
        async for message in self.ws:
            await self.handle(message)

    async def _echo_loop(self) -> None:
        """Echo mode: once started, each append goes straight back as one output delta (see the module's docstring)."""
        ws, note = self.ws, self.note_received
        scripted = self.standin.echo_scripted  # the append goes on to the detector and the script too
        n_sent = 0
        try:
            async for message in ws:
                if self.started and not self.closed and isinstance(message, str) and _APPEND in message:
                    payload = _cut_audio(message)
                    if payload is not None:
                        n_sent += 1
                        await ws.send(_ECHO_HEAD + payload + '"}')
                        if not scripted:
                            note("session.input_audio.append")  # (scripted: handle() notes it)
                            continue
                await self.handle(message)
        finally:
            sent = self.record["events_sent"]
            if n_sent:
                sent["session.output_audio.delta"] = sent.get("session.output_audio.delta", 0) + n_sent

    async def handle(self, message: str | bytes) -> None:
        parsed = await self.read_event(message)
        if parsed is None:
            return
        event, etype, client_event_id = parsed
        try:
            if not self.started:
                if etype != "session.start":
                    raise _Error("session_not_started", f"Send session.start and wait for session.started before "
                                 f"'{etype}'.", "type")
                await self.on_start(event, client_event_id)
                return
            if self.closed:
                raise _Error("session_closed", "The session is closed.")
            if etype == "session.start":
                raise _Error("invalid_value", "The session has already started.", "type")
            handler = _HANDLERS.get(etype)
            if handler is None:
                hint = (" GPT-Live has no commit or clear: stream audio with session.input_audio.append."
                        if etype.startswith("input_audio_buffer.") else "")
                raise _Error("invalid_value", f"Invalid value: '{etype}' is not a GPT-Live client event.{hint}",
                             "type")
            await handler(self, event, client_event_id)
        except _Error as err:
            await self.send_error(err, client_event_id)

    async def on_start(self, event: dict, client_event_id: str | None) -> None:
        try:
            self.config = resolve_start(event.get("session"))
        except _Error as err:
            self.record["rejected"] = err.code
            await self.send_error(err, client_event_id)
            self.server_closing = True
            await self.ws.close(1008, err.code or "invalid session")
            return
        self.started = True
        self.t0 = asyncio.get_running_loop().time()
        self.model = self.config["model"]
        expire_ms = self.fail.get("expire_after_ms")
        if expire_ms is not None:
            self.expires_at = math.ceil(time.time() + float(expire_ms) / 1000)
            self.spawn(self._expire_later(float(expire_ms) / 1000))
        else:
            self.expires_at = int(time.time()) + self.script.live_session_seconds
            self.spawn(self._expire_later(self.script.live_session_seconds))
        if self.fail.get("drop_after_ms") is not None:
            self.spawn(self._drop_later(float(self.fail["drop_after_ms"]) / 1000))
        rec = self.record
        rec.update(model=self.model, session=self.public_config(), input=copy.deepcopy(self.config["input"]),
                   expires_at=self.expires_at)
        # A resumed conversation (a client's new session seeded with what was said): its caller messages have
        # used their script turns, as seeded user items do on the Realtime path, and the greeting is behind it.
        for item in self.config["input"] or []:
            if item.get("role") in {"user", "assistant"}:
                self.greeted = True
            if item.get("role") == "user":
                self.turn_index += 1
                self.utterances += 1
        started: dict[str, Any] = {"type": "session.started", "session": self.public_config()}
        if client_event_id is not None:
            started["client_event_id"] = client_event_id
        await self.send(started)
        self.spawn(self._usage_ticker())

    async def on_update(self, event: dict, client_event_id: str | None) -> None:
        self.config = apply_update(self.config, event.get("session"))
        self.record["session_updates"] += 1
        self.record["session"] = self.public_config()
        updated: dict[str, Any] = {"type": "session.updated", "session": self.public_config()}
        if client_event_id is not None:
            updated["client_event_id"] = client_event_id
        await self.send(updated)

    async def on_close(self, event: dict, client_event_id: str | None) -> None:
        await self.close_session("close_requested", client_event_id)

    async def _expire_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.close_session("expired")

    async def _usage_ticker(self) -> None:
        interval = self.script.live_usage_interval_ms / 1000
        while not self.closed:
            await asyncio.sleep(interval)
            if self.closed:
                return
            tokens = _text_tokens(self.config.get("instructions")) + sum(
                _text_tokens(turn["text"]) for turn in self.conversation)
            with contextlib.suppress(ConnectionClosed):
                await self.send({"type": "session.usage.updated", "usage": {"seconds": self.usage_seconds()},
                                 "context_window": {"usage_ratio": round(min(1.0, tokens / CONTEXT_WINDOW_TOKENS), 6)}})

    # ---- caller audio ---------------------------------------------------------------------

    async def on_append(self, event: dict, client_event_id: str | None) -> None:
        data = decode_audio(event)
        fmt = self.fmt
        if fmt["type"] == "audio/pcm" and len(data) % 2:
            raise _Error("invalid_audio", "PCM audio must have an even number of bytes.", "audio")
        ms = len(data) / _bytes_per_ms(fmt)
        start = self.input_ms
        self.input_ms += ms
        self.record["input_audio_ms"] = int(self.input_ms)
        if self.muted or not data:
            return
        loud = is_loud(data, fmt["type"], _VAD["threshold"])
        if not self.speaking:
            if loud:
                await self._caller_starts(int(start))
            return
        if loud:
            self.silence_run = 0.0
        else:
            self.silence_run += ms
        speech_end = self.input_ms - self.silence_run
        if not self.turn["early"] and speech_end - self.speech_start_ms >= self.script.live_early_transcript_ms:
            await self._caller_words(early=True, end_ms=int(speech_end))
        if self.silence_run >= _VAD["silence_duration_ms"]:
            await self._caller_ends(int(speech_end))

    async def _caller_starts(self, start_ms: int) -> None:
        self.speaking = True
        self.silence_run = 0.0
        self.speech_start_ms = start_ms
        step, transcript = self.next_turn()
        words = transcript.split()
        n_early = 1 if len(words) <= 3 else 2
        self.turn = {"step": step, "transcript": transcript, "words": words, "n_early": n_early, "early": False,
                     "barged_in": self.current is not None}
        if self.current is not None:
            self.current.request_cancel("caller_speech")  # the model hears the caller and stops itself

    async def _caller_words(self, *, early: bool, end_ms: int) -> None:
        turn = self.turn
        words, n = turn["words"], turn["n_early"]
        if early:
            turn["early"] = True
            piece = " ".join(words[:n]) + (" " if len(words) > n else "")
            start_ms = self.speech_start_ms
            turn["early_end_ms"] = end_ms
        else:
            rest = words[n:] if turn["early"] else words
            piece = " ".join(rest)
            start_ms = turn.get("early_end_ms", self.speech_start_ms)
        if piece:
            await self.send({"type": "session.input_transcript.delta", "delta": piece, "start_ms": start_ms,
                             "end_ms": max(start_ms, end_ms)})

    async def _caller_ends(self, end_ms: int) -> None:
        await self._caller_words(early=False, end_ms=end_ms)
        turn, self.turn = self.turn, None
        self.speaking = False
        self.silence_run = 0.0
        self.record["caller_turns"].append({"transcript": turn["transcript"], "start_ms": self.speech_start_ms,
                                            "end_ms": end_ms, "barged_in": turn["barged_in"]})
        self.conversation.append({"speaker": "caller", "text": turn["transcript"]})
        step = turn["step"]
        if step.tool is None:
            self.say("turn", self.fill_wire(step.text or self.script.default_agent))
            return
        if step.text:
            self.say("turn", self.fill_wire(step.text))  # spoken while the backend works
        await self.delegate(step)

    async def on_mute(self, event: dict, client_event_id: str | None) -> None:
        self.muted = event["type"].endswith(".mute")
        if self.muted and self.speaking:
            await self._caller_ends(int(self.input_ms - self.silence_run))
        ack: dict[str, Any] = {"type": "session.input_audio.muted" if self.muted else "session.input_audio.unmuted"}
        if client_event_id is not None:
            ack["client_event_id"] = client_event_id
        await self.send(ack)

    # ---- appended context -----------------------------------------------------------------

    async def on_appended(self, event: dict, client_event_id: str | None) -> None:
        kind = event["type"].split(".")[1]  # instructions | commentary | thinking
        content = event.get("content")
        if not isinstance(content, str):
            raise _Error("missing_required_parameter", "Missing required parameter: 'content'.", "content")
        delegation_id = event.get("delegation_id")
        if delegation_id is not None:
            if self.delegation_type == "responses":
                raise _Error("invalid_value", "delegation_id must be null with Responses delegation: the backend's "
                             "results reach the model by themselves.", "delegation_id")
            if delegation_id not in self.delegations:
                raise _Error("invalid_value", f"Unknown delegation_id '{delegation_id}'.", "delegation_id")
        self.record["appended"].append({"type": kind, "content": content})
        now = self.now_ms()
        ack: dict[str, Any] = {"type": f"session.{kind}.appended", "start_ms": now, "end_ms": now}
        if client_event_id is not None:
            ack["client_event_id"] = client_event_id
        await self.send(ack)
        if kind == "commentary":
            self.say("commentary", content.strip())
        elif kind == "instructions":
            verbatim = verbatim_request(content)
            if not self.greeted:
                self.greeted = True
                self.say("greeting", self.fill_wire(self.script.greeting, verbatim))
            else:
                self.say("instruction", verbatim or self.fill_wire(self.script.out_of_band))

    # ---- the voice model's speech -----------------------------------------------------------

    def say(self, kind: str, text: str) -> None:
        """Queue an utterance; the speech task speaks them one after the other (in echo mode, nothing is said)."""
        if self.standin.echo and not self.standin.echo_scripted:
            return
        if text.strip():
            self.speech_queue.put_nowait(_LiveSpeech(kind, text.strip()))

    async def _speech_task(self) -> None:
        while True:
            speech = await self.speech_queue.get()
            if self.closed:
                return
            self.current = speech
            try:
                await self._speak(speech)
            except (_Cancelled, ConnectionClosed):
                pass
            finally:
                self.current = None
                self.record["spoken"].append({"kind": speech.kind, "text": speech.text,
                                              "transcript": speech.transcript.strip(), "audio_ms": speech.audio_ms,
                                              "interrupted": not speech.finished})
                self.conversation.append({"speaker": "agent", "text": speech.transcript.strip()})

    async def _speak(self, speech: _LiveSpeech) -> None:
        fmt = self.fmt
        if fmt["type"] == "audio/pcm" and fmt["rate"] != 24000:
            audio = await speech_audio(self.standin, speech.text, "audio/pcm")
            audio, _ = audioop.ratecv(audio, 2, 1, 24000, fmt["rate"], None)
        else:
            audio = await speech_audio(self.standin, speech.text, fmt["type"])
        speech._check()
        start_ms = max(self.now_ms(), self.out_end_ms)
        said_ms = 0
        async for chunk, audio_ms, piece in paced_speech(self.standin, audio, _bytes_per_ms(fmt),
                                                         speech.text.split(), speech._sleep):
            await self.send({"type": "session.output_audio.delta", "delta": base64.b64encode(chunk).decode("ascii")})
            speech.audio_ms = audio_ms
            self.out_end_ms = start_ms + audio_ms
            if piece is not None:
                speech.transcript += piece
                await self.send({"type": "session.output_transcript.delta", "delta": piece,
                                 "start_ms": start_ms + said_ms, "end_ms": start_ms + audio_ms})
                said_ms = audio_ms
            speech.finished = audio_ms >= len(audio) // _bytes_per_ms(fmt)
            speech._check()


_HANDLERS: dict[str, Callable[[_LiveSession, dict, str | None], Awaitable[None]]] = {
    "session.update": _LiveSession.on_update,
    "session.input_audio.append": _LiveSession.on_append,
    "session.input_audio.mute": _LiveSession.on_mute,
    "session.input_audio.unmute": _LiveSession.on_mute,
    "session.instructions.append": _LiveSession.on_appended,
    "session.commentary.append": _LiveSession.on_appended,
    "session.thinking.append": _LiveSession.on_appended,
    "response.item.create": _LiveSession.on_response_item_create,
    "response.create": _LiveSession.on_response_create,
    "session.close": _LiveSession.on_close,
}

