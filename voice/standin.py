"""Local stand-in for the OpenAI Realtime API (GA protocol) and a few OpenAI HTTP endpoints.

It lets the product run offline, in demos, tests and benchmarks. Besides the Realtime WebSocket it
answers the Chat Completions API (``POST /v1/chat/completions``, non-streaming) from a script, for the
supervisor text model (see "Chat Completions" below). The WebSocket speaks only the GA
Realtime protocol (``/v1/realtime?model=...``, ``session.type`` required, ``audio.input`` /
``audio.output`` formats, ``response.output_audio.*`` events). A client that sends the beta header
``OpenAI-Beta: realtime=v1`` is treated the way the real server has treated it since May 2026:
it gets an ``error`` event with code ``beta_api_shape_disabled`` and the socket closes with code 4000.

The module is pure asyncio plus the ``websockets`` library and never imports Django, so it can run
without it::

    python -m voice.standin --port 8765 --script voice/fixtures/standin_harbor_dental.json
    python manage.py realtime_standin --port 8765 [--script FILE] [--echo] [--audio tone|espeak] [--speed 3]

Point the product at it with ``OPENAI_REALTIME_URL=ws://HOST:PORT/v1/realtime`` and
``OPENAI_BASE_URL=http://HOST:PORT/v1`` (any non-empty API key).

In-process use (tests)::

    async with RealtimeStandin(script={...}, port=0) as standin:
        standin.url        # ws://127.0.0.1:PORT/v1/realtime   (clients add ?model=...)
        standin.http_url   # http://127.0.0.1:PORT
        standin.base_url   # http://127.0.0.1:PORT/v1          (for the openai SDK)
        standin.sessions   # snapshot of the session log, {session_id: record}
        standin.chat_requests   # snapshot of the chat completions log, [record, ...]

    standin = RealtimeStandin(port=0).start_in_thread()   # synchronous tests
    ...
    standin.stop()

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

Script format
=============
A script is a JSON object (file or dict)::

    {
      "greeting": "Thanks for calling Harbor Dental, how can I help?",
      "turns": [
        {"caller": "What are your opening hours?", "agent": "We're open nine to five."},
        {"caller": "Put me through to someone.",
         "say": "Let me connect you.",
         "tool": {"name": "transfer_to_human", "arguments": {"reason": "caller asked"}},
         "after_tool": "Transferring you now."},
        {"caller": "Is my order ready?",
         "say": "One moment.",
         "tool": {"name": "lookup_order", "arguments": {"order": "A1"}},
         "after_tool": {"say": "It says {output.status}. Anything else?"}}
      ],
      "default_agent": "I'm sorry, could you say that again?",
      "default_after_tool": "Okay.",
      "out_of_band": "OK.",
      "response_delay_ms": 0,
      "fail": {},
      "supervisor": [...],                 # chat completions, see "Chat Completions" below
      "supervisor_time_zone": "UTC"
    }

* ``greeting``: spoken by the first response that is requested before any caller turn was
  committed (default: a generic greeting). If the caller speaks first the greeting is skipped.
* ``turns``: each committed caller utterance (VAD commit, manual commit, or a user text item created
  with ``conversation.item.create``) consumes the next turn. ``caller`` is the transcription reported for
  that audio (a text item keeps its own text). The next response speaks ``agent`` (or ``say``); if the
  turn has a ``tool`` the same response then contains a ``function_call`` item (``arguments`` may be an
  object or a JSON string), after the spoken line if there is one. When the client sends the
  ``function_call_output`` and a ``response.create``, that response performs ``after_tool``: a string to
  speak or a turn-like object (``say``/``agent``/``tool``/``after_tool``) for chained tool calls. In its
  text ``{output}`` is replaced by the tool output and ``{output.KEY}`` by a field of a JSON-object
  output. Without ``after_tool`` the response speaks ``default_after_tool``.
* When turns run out the transcription is ``"(caller speech N)"`` (N counts caller utterances from 1)
  and the agent says ``default_agent``; a response requested with nothing new to answer says it too.
* ``out_of_band``: text of responses created with ``"conversation": "none"`` (they consume nothing).
* ``response_delay_ms``: pause between ``response.created`` and the first output (simulated model
  latency; default 0).
* ``connect_delay_ms``: pause before accepting a Realtime WebSocket upgrade (a slow connect; default 0).
* ``fail`` (upstream failures, per connection):
    - ``"refuse_connection": true`` or ``{"status": 503, "count": 2}``: reject the upgrade with HTTP
      500 (or ``status``), for every connection or only the first ``count`` ones.
    - ``"drop_after_ms": 1500``: abort the TCP connection (no close frame) that long after the first
      ``session.update``.
    - ``"drop_after_responses": 2``: abort the TCP connection right after the 2nd ``response.done``.
    - ``"error_on_session_update": true`` or ``{"code": ..., "message": ..., "type": ..., "count": N}``:
      answer ``session.update`` (all, or the first N) with that ``error`` instead of applying it.
    - ``"expire_after_ms": 2000``: behave like the 60-minute cap, that long after connecting: ``error``
      ``session_expired`` then close 1001.

Echo mode
=========
``echo=True`` (``--echo``) is for latency benchmarks: every ``input_audio_buffer.append`` is answered at
once with one ``response.output_audio.delta`` whose ``delta`` is the same base64 payload (the same
response/item ids for the whole session). There is no VAD and there are no responses; the payload is
cut out of the message text without parsing the JSON or decoding the audio. ``session.update`` is still
answered; other events are only logged.

Chat Completions (the supervisor)
=================================
``POST /v1/chat/completions`` answers like the real API (non-streaming ``chat.completion`` object: id
``chatcmpl-...``, ``choices[0].message`` with ``content`` and/or one ``tool_calls`` entry (id ``call_...``,
``arguments`` a JSON string), ``finish_reason`` ``"tool_calls"`` or ``"stop"``, ``usage`` estimated at 4
characters per token, ``system_fingerprint``). The model is echoed; any model name is accepted. It rejects,
with the real API's 400 error bodies, the usual mistakes: missing ``model`` / ``messages``, bad roles,
``function.arguments`` that is not a string, a ``tool`` message whose ``tool_call_id`` does not answer the
assistant ``tool_calls`` message right before it ("Invalid parameter: messages with role 'tool' must be a
response to a preceeding message with 'tool_calls'."), an assistant ``tool_calls`` message whose calls are
not all answered, ``tool_choice`` / ``parallel_tool_calls`` without ``tools``; and ``stream: true``,
which the stand-in does not support.

The answer comes from the script's ``supervisor`` list::

    "supervisor": [
      {"match": "book", "steps": [
         {"tool": "check_availability", "arguments": {"date": "{today+1}", "service": "Cleaning"}},
         {"tool": "book_appointment", "arguments": {"name": "Ann Lee", "service": "Cleaning",
                                                    "start": "{result.check_availability.slots.0}"}},
         {"say": "You're booked for {result.book_appointment.start}."}]},
      {"match": ["message", "call me back"], "delay_ms": 800, "steps": [...]},
      {"match": "refund", "status": 500, "count": 1, "steps": [{"say": "Refunds take five days."}]},
      {"default": true, "steps": [{"say": "I can help with bookings and questions."}]}
    ]

* The entry is the first whose ``match`` (a string or a list of alternatives, case-insensitive substring)
  occurs in the request's LAST user message, else the ``"default": true`` entry, else a generic answer
  (``DEFAULT_SUPERVISOR_SAY``, with a warning).
* The step is the number of assistant messages with ``tool_calls`` after that last user message, so the
  stand-in keeps no state between requests and several conversations can run at once. Past the last
  step the answer is the generic text (with a warning).
* A step has ``say`` (the message ``content``) and/or ``tool`` + ``arguments`` (one tool call; an object,
  or a JSON string). A tool missing from the request's ``tools`` (or against ``tool_choice``) is still
  called, with a warning in the log.
* Templates, in ``say`` and in every string of ``arguments``:
    - ``{result.TOOL}`` / ``{result.TOOL.path.to.value}``: the content of the most recent ``tool`` message
      answering a call of TOOL in this request, or a value in it (JSON; dotted path, integer indexes into
      lists, negative ones from the end). Missing values render as "" and add a warning.
    - ``{today}``, ``{today+N}``, ``{today-N}``: a date, YYYY-MM-DD. "Today" is the first valid YYYY-MM-DD
      in the system/developer messages (the supervisor's prompt says "Today is 2026-03-09 ..." in the
      business's zone); without one, the current date in ``supervisor_time_zone`` (default "UTC").
    - ``{caller}``: the first E.164-looking number (``+`` and 7-15 digits) in the system, developer or
      user messages, in message order.
  An ``arguments`` string that is exactly one template keeps the value's JSON type (``"{result.x.count}"``
  gives ``2``); elsewhere non-string values are written as JSON.
* Failure knobs, on an entry (every step of it) or a step (that step only; a step's own knobs win):
    - ``"delay_ms": N``: wait before answering (other requests go on meanwhile).
    - ``"status": 500`` (or 400, 429, 502, 503 ...): answer with that HTTP error in the real API's shape;
      429 and 503 carry ``retry-after`` (``"retry_after": seconds``, default 1).
    - ``"hang": true``: never answer; the request ends when the client gives up (it is logged as
      ``client_disconnected``) or, after ``CHAT_HANG_CAP_S`` (60 s), by closing the connection.
    - ``"count": N``: the status/hang applies to the first N requests reaching that entry/step only, so a
      retry can succeed.

Structured output (the call summary)
====================================
A chat completions request with ``response_format: {"type": "json_schema", "json_schema": {"schema": ...}}``
is answered, whatever the ``supervisor`` entries say, with ``choices[0].message.content`` a JSON document:
a default built from the schema (each property: an enum's ``"other"`` or ``"neutral"`` if it has one, else
its first value; a text quoting the request's user messages for strings; ``false``, ``0``, ``[]``), with the
script's ``summary.document`` merged over it::

    "summary": {"document": {"summary": "Ann booked a cleaning.", "outcome": "booked"},
                "status": 500, "count": 2, "delay_ms": 200}

``summary`` takes the same failure knobs as a supervisor entry (``delay_ms``, ``status``, ``hang``,
``count``, ``retry_after``). Its log record has ``entry.summary`` true.

HTTP on the same port
=====================
* ``GET /v1/models``, ``GET /v1/models/{id}``: OpenAI list/model shapes (Bearer auth required).
* ``POST /v1/chat/completions``: see above. Every ``/v1/`` route requires ``Authorization: Bearer <any
  non-empty key>``; otherwise 401 ``{"error": {"message", "type": "invalid_request_error", "param": null,
  "code": "invalid_api_key"}}``.
* ``GET /standin/sessions``: ``{"object": "standin.sessions", "sessions": {session_id: record}}``,
  where a record is::

    {"id", "model", "path", "mode": "scripted"|"echo",
     "headers": {"authorization": bool, "openai_beta": str|null, "user_agent": str|null},
     "rejected": null|"beta_api_shape_disabled",
     "session": {...effective session config...}, "session_updates": int (applied),
     "events_received": [types in order, at most 10000], "events_received_total": int,
     "event_counts": {type: n}, "events_sent": {type: n},
     "errors": [{"code", "message", "param", "event_id"}],
     "input_audio_ms": int,
     "caller_turns": [{"item_id", "transcript", "via": "vad"|"commit"|"text",
                       "audio_start_ms", "audio_end_ms"}],
     "responses": [{"id", "status", "reason", "text", "audio_ms", "tool", "usage", "instructions"}],
     "audio_ms_by_item": {item_id: ms generated},
     "truncations": [{"item_id", "content_index", "audio_end_ms", "generated_ms", "accepted", "error"}],
     "tool_calls": [{"call_id", "name", "arguments"}],
     "tool_outputs": [{"call_id", "output", "known"}],
     "warnings": [str],
     "closed_by": null|"client"|"server", "close_code": int|null, "close_reason": str|null,
     "started_at": unix time, "ended_at": unix time|null}

* ``GET /standin/chat``: ``{"object": "standin.chat", "requests": [record, ...]}`` (oldest first, at most
  10000), one record per chat completions request that passed the auth check::

    {"id": "chatcmpl-..."|null, "outcome": "pending"|"hanging"|"answered"|"invalid_request"|
                                           "scripted_error"|"client_disconnected"|"hang_cap"|"stopped",
     "status": int|null, "model", "entry": {"index", "match": [str], "default": bool}|null, "step": int,
     "last_user_message", "messages": int, "tools": [names], "tool_choice", "caller", "today",
     "tool_results": [{"tool_call_id", "name", "content"}]  (tool messages after the last user message),
     "tool_calls": [{"id", "name", "arguments"}], "content", "finish_reason", "usage",
     "error": null|{"message", "type", "param", "code"}, "warnings": [str], "delay_ms",
     "user_agent", "started_at", "ended_at", "duration_ms"}

* ``POST /standin/reset``: clears the session and chat logs. ``GET /standin/health``: ``{"status": "ok"}``.
* ``RealtimeStandin.add_http_route(method, path, handler)`` adds more endpoints (or replaces a built-in
  one such as ``POST /v1/chat/completions``); request bodies with a ``Content-Length`` are read (no chunked
  transfer encoding). Each HTTP request gets ``Connection: close``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import http
import itertools
import json
import logging
import math
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
import wave
import warnings
import zoneinfo
from array import array
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

with warnings.catch_warnings():
    # audioop is deprecated (removed in 3.13, where the audioop-lts package provides it).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = [
    "RealtimeStandin",
    "Script",
    "HTTPRequest",
    "load_script",
    "serve_until_signalled",
    "DEFAULT_SESSION",
    "BETA_DISABLED_MESSAGE",
    "ChatKnobs",
    "SupervisorEntry",
    "SupervisorStep",
    "CHAT_HANG_CAP_S",
    "DEFAULT_SUPERVISOR_SAY",
    "TOOL_MESSAGE_WITHOUT_CALL",
]

log = logging.getLogger("voice.standin")

BETA_DISABLED_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
DEFAULT_MODEL = "gpt-realtime"
DEFAULT_GREETING = "Hello, thanks for calling. How can I help you today?"
DEFAULT_AGENT = "I'm sorry, could you say that again?"
DEFAULT_AFTER_TOOL = "Okay."
DEFAULT_OUT_OF_BAND = "OK."
DEFAULT_INSTRUCTIONS = "You are a helpful, friendly voice assistant. Keep your answers short."
MAX_LOGGED_EVENTS = 10_000
MAX_MESSAGE_BYTES = 16 * 2**20  # the real API takes appends up to 15 MiB
MAX_HTTP_BODY = 16 * 2**20
MIN_COMMIT_MS = 100
OPEN_TIMEOUT_S = 10.0  # opening handshake / plain HTTP request limit (websockets' default open_timeout)

# Audio formats: type -> (bytes per millisecond, sample rate)
_FORMATS = {"audio/pcm": (48, 24000), "audio/pcmu": (8, 8000), "audio/pcma": (8, 8000)}
_TONE_MS_PER_CHAR = 65
_TONE_MIN_MS = 400
_TONE_FREQS = (440, 490, 520, 590)  # each an integer number of periods in 100 ms, so chunks join cleanly
_TONE_AMPLITUDE = 8000

DEFAULT_TURN_DETECTION = {
    "server_vad": {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True},
}

DEFAULT_SESSION: dict[str, Any] = {
    "type": "realtime",
    "object": "realtime.session",
    "output_modalities": ["audio"],
    "instructions": DEFAULT_INSTRUCTIONS,
    "tools": [],
    "tool_choice": "auto",
    "max_output_tokens": "inf",
    "tracing": None,
    "truncation": "auto",
    "prompt": None,
    "include": None,
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": None,
            "noise_reduction": None,
            "turn_detection": DEFAULT_TURN_DETECTION["server_vad"],
        },
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
    },
}

# Fields the GA session accepts (session.update); anything else is "unknown_parameter".
_SESSION_KEYS = {
    "type", "model", "output_modalities", "instructions", "audio", "tools", "tool_choice",
    "max_output_tokens", "tracing", "truncation", "prompt", "include", "reasoning",
    "parallel_tool_calls", "id", "object", "expires_at",
}
_AUDIO_INPUT_KEYS = {"format", "transcription", "noise_reduction", "turn_detection"}
_AUDIO_OUTPUT_KEYS = {"format", "voice", "speed"}
_CLIENT_EVENTS = (
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
    "conversation.item.create", "conversation.item.truncate", "conversation.item.delete",
    "conversation.item.retrieve", "response.create", "response.cancel", "output_audio_buffer.clear",
)
_MODELS = (
    "gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini", "gpt-realtime-1.5", "gpt-realtime-2",
    "gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4o-mini-transcribe",
)
_TRACKED_HEADER_BETA = "OpenAI-Beta"


# --------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------

_TURN_KEYS = {"caller", "agent", "say", "tool", "after_tool"}
_SCRIPT_KEYS = {"greeting", "turns", "default_agent", "default_after_tool", "out_of_band", "response_delay_ms", "fail",
                "supervisor", "supervisor_time_zone", "summary", "connect_delay_ms"}
_FAIL_KEYS = {"refuse_connection", "drop_after_ms", "drop_after_responses", "error_on_session_update", "expire_after_ms"}


@dataclass(frozen=True)
class Step:
    """What one response does: speak ``text`` (if any), then call ``tool`` (if any)."""

    text: str | None = None
    tool: dict[str, str] | None = None  # {"name": ..., "arguments": JSON string}
    after_tool: Step | None = None
    caller: str | None = None


@dataclass
class Script:
    """A parsed conversation script (see the module docstring for the format)."""

    greeting: str = DEFAULT_GREETING
    turns: list[Step] = field(default_factory=list)
    default_agent: str = DEFAULT_AGENT
    default_after_tool: str = DEFAULT_AFTER_TOOL
    out_of_band: str = DEFAULT_OUT_OF_BAND
    response_delay_ms: int = 0
    connect_delay_ms: int = 0
    fail: dict[str, Any] = field(default_factory=dict)
    supervisor: list[SupervisorEntry] = field(default_factory=list)
    supervisor_time_zone: str = "UTC"
    summary: SummaryScript | None = None

    @classmethod
    def from_obj(cls, obj: Script | dict | str | os.PathLike | None) -> Script:
        if obj is None:
            return cls()
        if isinstance(obj, Script):
            return obj
        if isinstance(obj, (str, os.PathLike)):
            return load_script(obj)
        if not isinstance(obj, dict):
            raise ValueError(f"script must be a JSON object, got {type(obj).__name__}")
        _check_keys(obj, _SCRIPT_KEYS, "script")
        turns = obj.get("turns") or []
        if not isinstance(turns, list):
            raise ValueError("script 'turns' must be a list")
        fail = obj.get("fail") or {}
        if not isinstance(fail, dict):
            raise ValueError("script 'fail' must be an object")
        _check_keys(fail, _FAIL_KEYS, "script 'fail'")
        supervisor = obj.get("supervisor") or []
        if not isinstance(supervisor, list):
            raise ValueError("script 'supervisor' must be a list")
        time_zone = _opt_str(obj, "supervisor_time_zone", "UTC", "script") or "UTC"
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"script 'supervisor_time_zone': unknown time zone {time_zone!r}") from None
        return cls(
            greeting=_opt_str(obj, "greeting", DEFAULT_GREETING, "script"),
            turns=[_parse_step(t, f"turns[{i}]") for i, t in enumerate(turns)],
            default_agent=_opt_str(obj, "default_agent", DEFAULT_AGENT, "script"),
            default_after_tool=_opt_str(obj, "default_after_tool", DEFAULT_AFTER_TOOL, "script"),
            out_of_band=_opt_str(obj, "out_of_band", DEFAULT_OUT_OF_BAND, "script"),
            response_delay_ms=int(obj.get("response_delay_ms") or 0),
            connect_delay_ms=int(obj.get("connect_delay_ms") or 0),
            fail=dict(fail),
            supervisor=[_parse_supervisor_entry(e, f"supervisor[{i}]") for i, e in enumerate(supervisor)],
            supervisor_time_zone=time_zone,
            summary=_parse_summary(obj["summary"]) if obj.get("summary") is not None else None,
        )


def load_script(path: str | os.PathLike) -> Script:
    """Read a script from a JSON file."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: invalid JSON: {exc}") from None
    return Script.from_obj(data)


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _opt_str(obj: dict, key: str, default: str | None, where: str) -> str | None:
    value = obj.get(key, default)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where} '{key}' must be a string")
    return value


def _parse_step(obj: Any, where: str) -> Step:
    if isinstance(obj, str):
        return Step(text=obj)
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object or a string")
    _check_keys(obj, _TURN_KEYS, where)
    text = _opt_str(obj, "say", None, where) or _opt_str(obj, "agent", None, where)
    tool = obj.get("tool")
    if tool is not None:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise ValueError(f"{where} 'tool' must be an object with a 'name'")
        _check_keys(tool, {"name", "arguments"}, f"{where} 'tool'")
        args = tool.get("arguments", {})
        tool = {"name": tool["name"], "arguments": args if isinstance(args, str) else json.dumps(args)}
    after = obj.get("after_tool")
    if after is not None and tool is None:
        raise ValueError(f"{where}: 'after_tool' needs a 'tool'")
    return Step(
        text=text,
        tool=tool,
        after_tool=_parse_step(after, f"{where}.after_tool") if after is not None else None,
        caller=_opt_str(obj, "caller", None, where),
    )


_OUTPUT_FIELD = re.compile(r"\{output(?:\.([A-Za-z0-9_\-]+))?\}")


def _fill_output(text: str, output: str) -> str:
    parsed: Any = None
    with contextlib.suppress(ValueError):
        parsed = json.loads(output)

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if key is None:
            return output
        if isinstance(parsed, dict) and key in parsed:
            value = parsed[key]
            return value if isinstance(value, str) else json.dumps(value)
        return m.group(0)

    return _OUTPUT_FIELD.sub(sub, text)


def _fill_step(step: Step, output: str) -> Step:
    return Step(text=_fill_output(step.text, output) if step.text else step.text, tool=step.tool,
                after_tool=step.after_tool, caller=step.caller)


# ---- supervisor (chat completions) script -----------------------------------------------------

_CHAT_KNOB_KEYS = {"delay_ms", "status", "hang", "count", "retry_after"}
_SUPERVISOR_ENTRY_KEYS = {"match", "default", "steps"} | _CHAT_KNOB_KEYS
_SUPERVISOR_STEP_KEYS = {"say", "tool", "arguments"} | _CHAT_KNOB_KEYS
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ChatKnobs:
    """Failure knobs of a supervisor entry or step (None: not set at this level)."""

    delay_ms: int | None = None      # sleep before answering
    status: int | None = None        # answer with this HTTP error instead
    hang: bool = False               # never answer (until the client goes away or the hang cap)
    count: int | None = None         # status/hang only for the first N requests that reach this entry/step
    retry_after: float | None = None  # retry-after header (seconds) of a 429/503

    @property
    def fails(self) -> bool:
        return self.status is not None or self.hang


@dataclass(frozen=True)
class SupervisorStep:
    """One scripted chat completion: ``say`` (content) and/or one call of ``tool`` with ``arguments``."""

    say: str | None = None
    tool: str | None = None
    arguments: Any = None  # JSON-able object (templates in its strings) or a JSON string (a template itself)
    knobs: ChatKnobs = field(default_factory=ChatKnobs)


@dataclass(frozen=True)
class SupervisorEntry:
    """A scripted supervisor conversation, chosen by the request's last user message."""

    match: tuple[str, ...] = ()  # lower-cased alternatives; empty for the default entry
    default: bool = False
    steps: tuple[SupervisorStep, ...] = ()
    knobs: ChatKnobs = field(default_factory=ChatKnobs)

    def describe(self) -> str:
        return "default" if self.default else " | ".join(self.match)


def _number(obj: dict, key: str, where: str, *, integer: bool = False, minimum: float = 0) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum \
            or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where} '{key}' must be {kind} >= {minimum:g}")
    return int(value) if integer else float(value)


def _parse_chat_knobs(obj: dict, where: str) -> ChatKnobs:
    status = _number(obj, "status", where, integer=True, minimum=400)
    if status is not None and (status > 599 or status not in http.HTTPStatus.__members__.values()):
        raise ValueError(f"{where} 'status' must be an HTTP error status (400-599)")
    hang = obj.get("hang", False)
    if not isinstance(hang, bool):
        raise ValueError(f"{where} 'hang' must be true or false")
    knobs = ChatKnobs(delay_ms=_number(obj, "delay_ms", where, integer=True), status=status, hang=hang,
                      count=_number(obj, "count", where, integer=True, minimum=1),
                      retry_after=_number(obj, "retry_after", where))
    if (knobs.count is not None or knobs.retry_after is not None) and not knobs.fails:
        raise ValueError(f"{where}: 'count' and 'retry_after' need 'status' or 'hang'")
    return knobs


def _parse_supervisor_step(obj: Any, where: str) -> SupervisorStep:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    _check_keys(obj, _SUPERVISOR_STEP_KEYS, where)
    say = _opt_str(obj, "say", None, where)
    tool = _opt_str(obj, "tool", None, where)
    if say is None and tool is None:
        raise ValueError(f"{where} needs 'say' and/or 'tool'")
    if tool is not None and not _TOOL_NAME.match(tool):
        raise ValueError(f"{where} 'tool' must be a function name (letters, digits, _ and -, at most 64)")
    if "arguments" in obj and tool is None:
        raise ValueError(f"{where}: 'arguments' needs a 'tool'")
    arguments = obj.get("arguments", {}) if tool is not None else None
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)  # templates inside a JSON string still work on its string leaves
    if tool is not None and not isinstance(arguments, (dict, str)):
        raise ValueError(f"{where} 'arguments' must be an object or a JSON string")
    return SupervisorStep(say=say, tool=tool, arguments=copy.deepcopy(arguments), knobs=_parse_chat_knobs(obj, where))


def _parse_supervisor_entry(obj: Any, where: str) -> SupervisorEntry:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object")
    _check_keys(obj, _SUPERVISOR_ENTRY_KEYS, where)
    default = obj.get("default", False)
    if not isinstance(default, bool):
        raise ValueError(f"{where} 'default' must be true or false")
    match = obj.get("match")
    if (match is None) == (not default):
        raise ValueError(f"{where} needs either 'match' or \"default\": true")
    alternatives: tuple[str, ...] = ()
    if match is not None:
        items = [match] if isinstance(match, str) else match
        if not isinstance(items, list) or not items or not all(isinstance(m, str) and m.strip() for m in items):
            raise ValueError(f"{where} 'match' must be a non-empty string or a list of them")
        alternatives = tuple(m.lower() for m in items)
    steps = obj.get("steps", [])
    if not isinstance(steps, list):
        raise ValueError(f"{where} 'steps' must be a list")
    knobs = _parse_chat_knobs(obj, where)
    if not steps and not knobs.fails:
        raise ValueError(f"{where} needs 'steps'")
    return SupervisorEntry(match=alternatives, default=default, knobs=knobs,
                           steps=tuple(_parse_supervisor_step(s, f"{where}.steps[{i}]") for i, s in enumerate(steps)))


_SUMMARY_KEYS = {"document"} | _CHAT_KNOB_KEYS


@dataclass(frozen=True)
class SummaryScript:
    """The answer to structured-output requests (``response_format`` json_schema): a JSON document."""

    document: dict[str, Any] = field(default_factory=dict)  # merged over the default built from the schema
    knobs: ChatKnobs = field(default_factory=ChatKnobs)


def _parse_summary(obj: Any) -> SummaryScript:
    if not isinstance(obj, dict):
        raise ValueError("script 'summary' must be an object")
    _check_keys(obj, _SUMMARY_KEYS, "script 'summary'")
    document = obj.get("document", {})
    if not isinstance(document, dict):
        raise ValueError("script 'summary' 'document' must be an object")
    return SummaryScript(document=copy.deepcopy(document), knobs=_parse_chat_knobs(obj, "script 'summary'"))


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------

def _fmt_type(fmt: dict | None) -> str:
    return (fmt or {}).get("type", "audio/pcm")


def _to_lin16(data: bytes, fmt_type: str) -> bytes:
    if fmt_type == "audio/pcmu":
        return audioop.ulaw2lin(data, 2)
    if fmt_type == "audio/pcma":
        return audioop.alaw2lin(data, 2)
    return data if len(data) % 2 == 0 else data[:-1]


def _from_lin16(lin: bytes, fmt_type: str) -> bytes:
    if fmt_type == "audio/pcmu":
        return audioop.lin2ulaw(lin, 2)
    if fmt_type == "audio/pcma":
        return audioop.lin2alaw(lin, 2)
    return lin


_tone_cache: dict[tuple[str, int], bytes] = {}


def _tone_chunk(fmt_type: str, index: int) -> bytes:
    """100 ms of tone in ``fmt_type``; the frequency cycles with ``index``."""
    freq = _TONE_FREQS[index % len(_TONE_FREQS)]
    key = (fmt_type, freq)
    chunk = _tone_cache.get(key)
    if chunk is None:
        rate = _FORMATS[fmt_type][1]
        n = rate // 10
        samples = array("h", (int(_TONE_AMPLITUDE * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)))
        chunk = _tone_cache[key] = _from_lin16(samples.tobytes(), fmt_type)
    return chunk


def tone_audio(text: str, fmt_type: str) -> bytes:
    """A tone whose length follows the text (65 ms per character, at least 400 ms)."""
    ms = max(_TONE_MIN_MS, _TONE_MS_PER_CHAR * len(text))
    bpm = _FORMATS[fmt_type][0]
    parts = [_tone_chunk(fmt_type, i) for i in range(ms // 100 + 1)]
    return b"".join(parts)[: ms * bpm]


_espeak_cache: dict[tuple[str, str], bytes] = {}


async def espeak_audio(text: str, fmt_type: str) -> bytes | None:
    """Speak ``text`` with espeak-ng in ``fmt_type``; None if espeak-ng is missing or fails."""
    key = (text, fmt_type)
    if key in _espeak_cache:
        return _espeak_cache[key]
    exe = shutil.which("espeak-ng")
    if exe is None or not text.strip():
        return None
    fd, path = tempfile.mkstemp(suffix=".wav", prefix="standin-")
    os.close(fd)
    proc = None
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, "-v", "en-us", "-s", "165", "-w", path, "--", text,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            return None
        with wave.open(path, "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
        if width != 2:
            frames = audioop.lin2lin(frames, width, 2)
        if channels == 2:
            frames = audioop.tomono(frames, 2, 0.5, 0.5)
        bpm, target = _FORMATS[fmt_type]
        if rate != target:
            frames, _ = audioop.ratecv(frames, 2, 1, rate, target, None)
        audio = _from_lin16(frames, fmt_type)
        audio += _silence(fmt_type, 1)[: (-len(audio)) % bpm]  # whole milliseconds
        if len(_espeak_cache) > 256:
            _espeak_cache.clear()
        _espeak_cache[key] = audio
        return audio
    except (OSError, wave.Error, audioop.error) as exc:
        log.warning("espeak-ng failed (%s); using a tone", exc)
        return None
    finally:
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(OSError):
            os.unlink(path)


def _silence(fmt_type: str, ms: int) -> bytes:
    bpm = _FORMATS[fmt_type][0]
    if fmt_type == "audio/pcmu":
        return b"\xff" * (bpm * ms)
    if fmt_type == "audio/pcma":
        return b"\xd5" * (bpm * ms)
    return b"\x00" * (bpm * ms)


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------

def _text_tokens(text: str | None) -> int:
    return math.ceil(len((text or "").split()) * 1.3)


def _user_audio_tokens(ms: float) -> int:
    return math.ceil(ms / 100)


def _assistant_audio_tokens(ms: float) -> int:
    return math.ceil(ms / 50)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

@dataclass
class HTTPRequest:
    """A plain HTTP request that reached the stand-in (for ``add_http_route`` handlers)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes = b""
    connection: Any = field(default=None, repr=False, compare=False)  # the _StandinConnection

    def json(self) -> Any:
        return json.loads(self.body or b"null")


HTTPHandler = Callable[[HTTPRequest], "tuple[int, Any] | Awaitable[tuple[int, Any]]"]


def _json_response(status: int, payload: Any, extra_headers: dict[str, str] | None = None) -> Response:
    if isinstance(payload, (bytes, bytearray)):
        body, ctype = bytes(payload), "application/octet-stream"
    elif isinstance(payload, str):
        body, ctype = payload.encode(), "text/plain; charset=utf-8"
    else:
        body, ctype = json.dumps(payload, indent=None).encode(), "application/json"
    headers = Headers([("Content-Type", ctype), ("Content-Length", str(len(body))), ("Connection", "close")])
    for k, v in (extra_headers or {}).items():
        headers[k] = v
    st = http.HTTPStatus(status)
    return Response(st.value, st.phrase, headers, body)


def _openai_error(status: int, message: str, code: str | None = None, type_: str = "invalid_request_error") -> Response:
    return _json_response(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})


_CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r\n", re.IGNORECASE | re.MULTILINE)
_EXPECT_CONTINUE = re.compile(rb"^expect:[ \t]*100-continue", re.IGNORECASE | re.MULTILINE)


class _StandinConnection(ServerConnection):
    """A websockets server connection that also reads the body of plain HTTP requests.

    websockets parses only the request head and refuses requests with a body. Until the head is
    complete we buffer the bytes ourselves; a body announced by Content-Length is cut off and kept
    in ``http_body`` and the head without its Content-Length goes to websockets as usual. After the
    head, data flows straight to websockets (one attribute check per read).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http_body = b""
        self.standin_info: dict[str, Any] = {}
        self._head_buf = bytearray()
        self._head_done = False
        self._continue_sent = False
        self.open_deadline: asyncio.Timeout | None = None

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        # serve() runs with open_timeout=None and the same limit is applied here instead, where HTTP routes
        # that wait on purpose (chat completions delay_ms / hang) can push it back.
        async with asyncio.timeout(OPEN_TIMEOUT_S) as self.open_deadline:
            await super().handshake(*args, **kwargs)

    def data_received(self, data: bytes) -> None:
        if self._head_done:
            super().data_received(data)
            return
        self._head_buf += data
        end = self._head_buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head_buf) > 65536:
                self._release(bytes(self._head_buf))
            return
        head = bytes(self._head_buf[: end + 4])
        m = _CONTENT_LENGTH.search(head)
        length = int(m.group(1)) if m else 0
        if length <= 0 or length > MAX_HTTP_BODY:
            self._release(bytes(self._head_buf))  # websockets answers oversized bodies itself
            return
        rest = self._head_buf[end + 4:]
        if len(rest) < length:
            if not self._continue_sent and _EXPECT_CONTINUE.search(head):
                self._continue_sent = True
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return
        self.http_body = bytes(rest[:length])
        self._release(_CONTENT_LENGTH.sub(b"", head) + bytes(rest[length:]))

    def _release(self, data: bytes) -> None:
        self._head_done = True
        self._head_buf = bytearray()
        super().data_received(data)

    def eof_received(self) -> None:
        if not self._head_done and self._head_buf:
            self._release(bytes(self._head_buf))
        super().eof_received()


# --------------------------------------------------------------------------------------------
# One Realtime session (one WebSocket connection)
# --------------------------------------------------------------------------------------------

class _Ids:
    """Unique, cheap ids: prefix + server tag + counter."""

    def __init__(self) -> None:
        self.tag = "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
        self.counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self.tag}{next(self.counter):08x}"


class _Error(Exception):
    """A client mistake answered with an ``error`` event."""

    def __init__(self, code: str | None, message: str, param: str | None = None, type_: str = "invalid_request_error"):
        super().__init__(message)
        self.code, self.message, self.param, self.type = code, message, param, type_


class _Session:
    def __init__(self, standin: RealtimeStandin, ws: ServerConnection, info: dict[str, Any]) -> None:
        self.standin = standin
        self.ws = ws
        self.ids = standin._ids
        self.script = standin.script
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
        self.echo_prefix = (
            '{"type":"response.output_audio.delta","response_id":"' + self.ids.new("resp")
            + '","item_id":"' + self.ids.new("item") + '","output_index":0,"content_index":0,"event_id":"'
        )
        self.record: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "path": info.get("path"),
            "mode": "echo" if standin.echo else "scripted",
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

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def send(self, event: dict) -> None:
        event["event_id"] = self.ids.new("event")
        sent = self.record["events_sent"]
        sent[event["type"]] = sent.get(event["type"], 0) + 1
        await self.ws.send(json.dumps(event, separators=(",", ":")))

    async def send_error(self, err: _Error, client_event_id: str | None = None) -> None:
        self.record["errors"].append(
            {"code": err.code, "message": err.message, "param": err.param, "event_id": client_event_id}
        )
        await self.send({
            "type": "error",
            "error": {"type": err.type, "code": err.code, "message": err.message, "param": err.param,
                      "event_id": client_event_id},
        })

    def note_received(self, etype: str) -> None:
        rec = self.record
        rec["events_received_total"] += 1
        counts = rec["event_counts"]
        counts[etype] = counts.get(etype, 0) + 1
        if len(rec["events_received"]) < MAX_LOGGED_EVENTS:
            rec["events_received"].append(etype)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (simulated upstream failure)."""
        self.server_closing = True
        self.ws.transport.abort()

    @property
    def input_format(self) -> str:
        return _fmt_type(self.config["audio"]["input"]["format"])

    @property
    def output_format(self) -> str:
        return _fmt_type(self.config["audio"]["output"]["format"])

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
        fail = self.script.fail
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
        n_sent = 0
        try:
            async for message in ws:
                if isinstance(message, str) and for_append in message:
                    payload = _cut_audio(message)
                    if payload is not None:
                        note("input_audio_buffer.append")
                        n_sent += 1
                        await ws.send(prefix + ids.new("event") + '","delta":"' + payload + '"}')
                        continue
                await self.handle(message)
        finally:
            if n_sent:
                sent["response.output_audio.delta"] = sent.get("response.output_audio.delta", 0) + n_sent

    async def handle(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self.note_received("(invalid json)")
            await self.send_error(_Error("invalid_json", "The server could not parse the event: invalid JSON."))
            return
        if not isinstance(event, dict):
            self.note_received("(invalid event)")
            await self.send_error(_Error("invalid_type", "Invalid event: expected a JSON object.", None))
            return
        etype = event.get("type")
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        self.note_received(etype if isinstance(etype, str) else "(missing type)")
        if not isinstance(etype, str) or not etype:
            await self.send_error(_Error("missing_required_parameter", "Missing required parameter: 'type'.", "type"),
                                  client_event_id)
            return
        handler = _HANDLERS.get(etype)
        if handler is None:
            supported = ", ".join(f"'{t}'" for t in _CLIENT_EVENTS)
            await self.send_error(
                _Error("invalid_value", f"Invalid value: '{etype}'. Supported values are: {supported}.", "type"),
                client_event_id)
            return
        if self.standin.echo and etype != "session.update":
            return  # echo mode: logged, otherwise ignored
        try:
            await handler(self, event)
        except _Error as err:
            await self.send_error(err, client_event_id)

    async def close_log(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        ws = self.ws
        rec = self.record
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if rec["closed_by"] is None:
            if self.server_closing:
                rec["closed_by"] = "server"
            elif rcvd is not None and (ws.protocol.close_rcvd_then_sent or sent is None):
                rec["closed_by"] = "client"
            elif sent is not None:
                rec["closed_by"] = "server"
            else:
                rec["closed_by"] = "client"  # the peer dropped the TCP connection
        if rec["close_code"] is None:
            frame = rcvd if rec["closed_by"] == "client" else (sent or rcvd)
            frame = frame or rcvd or sent
            rec["close_code"] = frame.code if frame is not None else 1006
            rec["close_reason"] = frame.reason if frame is not None else ""
        rec["ended_at"] = time.time()
        rec["session"] = self.public_config()
        rec["input_audio_ms"] = int(self.input_ms)

    async def _expire_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(ConnectionClosed):
            await self.send_error(_Error("session_expired", SESSION_EXPIRED_MESSAGE))
            self.server_closing = True
            await self.ws.close(1001, SESSION_EXPIRED_MESSAGE)

    async def _drop_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.abort()

    # ---- session.update -------------------------------------------------------------------

    async def on_session_update(self, event: dict) -> None:
        fail = self.script.fail
        if fail.get("drop_after_ms") is not None and not self.drop_scheduled:
            self.drop_scheduled = True
            self.spawn(self._drop_later(float(fail["drop_after_ms"]) / 1000))
        failure = fail.get("error_on_session_update")
        if failure:
            spec = failure if isinstance(failure, dict) else {}
            count = spec.get("count")
            if count is None or self.session_update_errors < int(count):
                self.session_update_errors += 1
                raise _Error(
                    spec.get("code", "server_error"),
                    spec.get("message", "The server had an error while processing your request. Sorry about that!"),
                    spec.get("param"),
                    spec.get("type", "server_error"),
                )
        upd = event.get("session")
        if not isinstance(upd, dict):
            raise _Error("missing_required_parameter", "Missing required parameter: 'session'.", "session")
        if "type" not in upd:
            raise _Error("missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type")
        if upd["type"] != "realtime":
            raise _Error("invalid_value",
                         f"Invalid value: {json.dumps(upd['type'])}. Supported values are: 'realtime'.", "session.type")
        new = self._merged_config(upd)
        self.config = new
        self.record["session"] = self.public_config()
        self.record["session_updates"] += 1
        if self.turn_detection is None and self.speaking:
            self.speaking = False
        await self.send({"type": "session.updated", "session": self.public_config()})

    def _merged_config(self, upd: dict) -> dict:
        for key in upd:
            if key not in _SESSION_KEYS:
                raise _Error("unknown_parameter", f"Unknown parameter: 'session.{key}'.", f"session.{key}")
        new = copy.deepcopy(self.config)
        if "model" in upd and upd["model"] != self.model:
            raise _Error("invalid_value", "Cannot update a session's model.", "session.model")
        for key, value in upd.items():
            if key in ("audio", "id", "object", "expires_at", "model"):
                continue
            new[key] = copy.deepcopy(value)
        mods = new.get("output_modalities")
        if mods not in (["audio"], ["text"]):
            raise _Error("invalid_value",
                         "Invalid 'session.output_modalities': expected ['audio'] or ['text'].",
                         "session.output_modalities")
        if not isinstance(new.get("tools") or [], list):
            raise _Error("invalid_type", "Invalid type for 'session.tools': expected an array.", "session.tools")
        audio = upd.get("audio")
        if audio is not None:
            if not isinstance(audio, dict):
                raise _Error("invalid_type", "Invalid type for 'session.audio': expected an object.", "session.audio")
            for side, allowed in (("input", _AUDIO_INPUT_KEYS), ("output", _AUDIO_OUTPUT_KEYS)):
                part = audio.get(side)
                if part is None:
                    continue
                if not isinstance(part, dict):
                    raise _Error("invalid_type", f"Invalid type for 'session.audio.{side}': expected an object.",
                                 f"session.audio.{side}")
                for key, value in part.items():
                    param = f"session.audio.{side}.{key}"
                    if key not in allowed:
                        raise _Error("unknown_parameter", f"Unknown parameter: '{param}'.", param)
                    new["audio"][side][key] = self._normalise(param, key, copy.deepcopy(value))
            for key in audio:
                if key not in ("input", "output"):
                    raise _Error("unknown_parameter", f"Unknown parameter: 'session.audio.{key}'.",
                                 f"session.audio.{key}")
        if self.audio_produced and new["audio"]["output"]["voice"] != self.config["audio"]["output"]["voice"]:
            raise _Error("cannot_update_voice",
                         "Cannot update a conversation's voice if assistant audio is present.",
                         "session.audio.output.voice")
        return new

    def _normalise(self, param: str, key: str, value: Any) -> Any:
        if key == "format":
            if not isinstance(value, dict) or value.get("type") not in _FORMATS:
                raise _Error("invalid_value",
                             f"Invalid value for '{param}': supported types are 'audio/pcm', 'audio/pcmu', 'audio/pcma'.",
                             param)
            if value["type"] == "audio/pcm":
                if value.get("rate", 24000) != 24000:
                    raise _Error("invalid_value", f"Invalid value for '{param}.rate': only 24000 is supported.",
                                 f"{param}.rate")
                return {"type": "audio/pcm", "rate": 24000}
            return {"type": value["type"]}
        if key == "turn_detection":
            if value is None:
                return None
            kind = value.get("type") if isinstance(value, dict) else None
            if kind not in DEFAULT_TURN_DETECTION:
                raise _Error("invalid_value",
                             f"Invalid value for '{param}.type': supported values are 'server_vad', 'semantic_vad'.",
                             f"{param}.type")
            return {**DEFAULT_TURN_DETECTION[kind], **value}
        if key == "transcription" and value is not None and not isinstance(value, dict):
            raise _Error("invalid_type", f"Invalid type for '{param}': expected an object or null.", param)
        return value

    # ---- input audio ----------------------------------------------------------------------

    async def on_append(self, event: dict) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise _Error("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _Error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", "audio") from None
        fmt = self.input_format
        ms = len(data) / _FORMATS[fmt][0]
        start_ms = self.input_ms
        self.input_ms += ms
        self.buffer_ms += ms
        self.record["input_audio_ms"] = int(self.input_ms)
        td = self.turn_detection
        if td is None or not data:
            return
        threshold = td.get("threshold")
        loud = audioop.rms(_to_lin16(data, fmt), 2) >= 1000 * (0.5 if threshold is None else float(threshold))
        if not self.speaking:
            if not loud:
                self.buffer_ms = 0.0  # the server keeps no audio between turns
                return
            self.speaking = True
            self.silence_run = 0.0
            self.speech_item = self.ids.new("item")
            self.speech_start_ms = max(0, int(start_ms - int(td.get("prefix_padding_ms") or 0)))
            await self.send({"type": "input_audio_buffer.speech_started", "audio_start_ms": self.speech_start_ms,
                             "item_id": self.speech_item})
            if self.active is not None and td.get("interrupt_response", True):
                await self.cancel_active("turn_detected")
            return
        if loud:
            self.silence_run = 0.0
            return
        self.silence_run += ms
        silence_needed = td.get("silence_duration_ms")
        if silence_needed is None:
            silence_needed = 500
        if self.silence_run >= silence_needed:
            end_ms = int(self.input_ms)
            item_id = self.speech_item or self.ids.new("item")
            self.speaking = False
            await self.send({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item_id})
            await self.commit(item_id, "vad", self.speech_start_ms, end_ms)
            if td.get("create_response", True):
                if self.active is None:
                    await self.start_response({})
                else:
                    self.record["warnings"].append(
                        f"turn {item_id} committed while response {self.active.id} was active; no new response")

    async def on_commit(self, event: dict) -> None:
        if self.buffer_ms < MIN_COMMIT_MS:
            raise _Error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
                f"but buffer only has {self.buffer_ms:.2f}ms of audio.",
            )
        item_id = self.speech_item if self.speaking and self.speech_item else self.ids.new("item")
        start = self.speech_start_ms if self.speaking else int(self.input_ms - self.buffer_ms)
        self.speaking = False
        await self.commit(item_id, "commit", start, int(self.input_ms))

    async def on_clear(self, event: dict) -> None:
        self.buffer_ms = 0.0
        self.speaking = False
        self.speech_item = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def commit(self, item_id: str, via: str, start_ms: int, end_ms: int) -> None:
        """Commit the buffered caller audio as a user item and consume the next script turn."""
        duration = max(0, end_ms - start_ms)
        self.buffer_ms = 0.0
        self.speech_item = None
        previous = self.order[-1] if self.order else None
        step, transcript = self.next_turn()
        item = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        self.add_item(item, previous, text_tokens=0, audio_tokens=_user_audio_tokens(duration))
        self.record["caller_turns"].append(
            {"item_id": item_id, "transcript": transcript, "via": via, "audio_start_ms": start_ms, "audio_end_ms": end_ms})
        self.pending = step
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": previous})
        await self.send({"type": "conversation.item.added", "previous_item_id": previous, "item": copy.deepcopy(item)})
        await self.send({"type": "conversation.item.done", "previous_item_id": previous, "item": copy.deepcopy(item)})
        if self.config["audio"]["input"].get("transcription"):
            self.spawn(self._transcribe_later(item_id, transcript, duration))

    def next_turn(self, text: str | None = None) -> tuple[Step, str]:
        self.greeted = True
        self.utterances += 1
        if self.turn_index < len(self.script.turns):
            step = self.script.turns[self.turn_index]
            self.turn_index += 1
            transcript = text if text is not None else (step.caller or f"(caller speech {self.utterances})")
        else:
            step = Step(text=self.script.default_agent)
            transcript = text if text is not None else f"(caller speech {self.utterances})"
        if step.text is None and step.tool is None:
            step = Step(text=self.script.default_agent, caller=step.caller)
        return step, transcript

    async def _transcribe_later(self, item_id: str, transcript: str, duration_ms: int) -> None:
        await asyncio.sleep(self.standin.transcription_delay_ms / 1000)
        item = self.items.get(item_id)
        if item is not None:
            item["content"][0]["transcript"] = transcript
            self.meta[item_id]["text_tokens"] = _text_tokens(transcript)
        audio_tokens = _user_audio_tokens(duration_ms)
        out_tokens = _text_tokens(transcript)
        with contextlib.suppress(ConnectionClosed):
            await self.send({
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
                "usage": {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                          "total_tokens": audio_tokens + out_tokens,
                          "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0}},
            })

    # ---- conversation items ---------------------------------------------------------------

    def add_item(self, item: dict, previous: str | None, *, text_tokens: int = 0, audio_tokens: int = 0,
                 **meta: Any) -> None:
        if previous == "root":
            self.order.insert(0, item["id"])
        elif previous is not None and previous in self.items:
            self.order.insert(self.order.index(previous) + 1, item["id"])
        else:
            self.order.append(item["id"])
        self.items[item["id"]] = item
        self.meta[item["id"]] = {"text_tokens": text_tokens, "audio_tokens": audio_tokens, **meta}

    async def on_item_create(self, event: dict) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise _Error("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        previous = event.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in self.items:
            raise _Error("invalid_value", f"Previous item with id '{previous}' does not exist.", "previous_item_id")
        item = copy.deepcopy(item)
        item_id = item.get("id") or self.ids.new("item")
        if item_id in self.items:
            raise _Error("invalid_value", f"Item with id '{item_id}' already exists.", "item.id")
        kind = item.get("type")
        item.update({"id": item_id, "object": "realtime.item", "status": "completed"})
        consumed: tuple[Step, str] | None = None
        text_tokens = 0
        if kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _Error("missing_required_parameter", "Missing required parameter: 'item.call_id'.", "item.call_id")
            if not isinstance(item.get("output"), str):
                raise _Error("missing_required_parameter", "Missing required parameter: 'item.output'.", "item.output")
            call = self.calls.get(call_id)
            self.record["tool_outputs"].append({"call_id": call_id, "output": item["output"], "known": call is not None})
            if call is None:
                raise _Error("invalid_value", f"Tool call ID '{call_id}' not found in conversation.", "item.call_id")
            call["answered"] = True
            after = call["after_tool"]
            self.pending = (_fill_step(after, item["output"]) if after is not None
                            else Step(text=self.script.default_after_tool))
            text_tokens = math.ceil(len(item["output"]) / 4)
        elif kind == "message":
            role = item.get("role")
            content = item.get("content")
            if role not in ("user", "system", "assistant"):
                raise _Error("invalid_value", "Invalid value for 'item.role': expected 'user', 'system' or 'assistant'.",
                             "item.role")
            if not isinstance(content, list) or not content:
                raise _Error("missing_required_parameter", "Missing required parameter: 'item.content'.", "item.content")
            allowed = {"user": {"input_text", "input_audio", "input_image"}, "system": {"input_text"},
                       "assistant": {"output_text"}}[role]
            for part in content:
                if not isinstance(part, dict) or part.get("type") not in allowed:
                    got = part.get("type") if isinstance(part, dict) else part
                    raise _Error("invalid_value",
                                 f"Invalid value for 'item.content[].type' ({got!r}) for a {role} message; "
                                 f"expected one of {sorted(allowed)}.", "item.content")
            texts = [p.get("text") or p.get("transcript") or "" for p in content]
            text = " ".join(t for t in texts if t)
            text_tokens = _text_tokens(text)
            if role == "user":
                consumed = self.next_turn(text)
                self.pending = consumed[0]
        elif kind == "function_call":
            if not item.get("name") or not item.get("call_id"):
                raise _Error("missing_required_parameter", "Missing required parameter: 'item.name'.", "item.name")
            item.setdefault("arguments", "")
            self.calls[item["call_id"]] = {"name": item["name"], "after_tool": None, "answered": False}
        else:
            raise _Error("invalid_value", f"Invalid value for 'item.type': {kind!r}.", "item.type")
        if previous is None:
            prev = self.order[-1] if self.order else None
        else:
            prev = None if previous == "root" else previous
        self.add_item(item, previous, text_tokens=text_tokens)
        if consumed is not None:
            self.record["caller_turns"].append({"item_id": item_id, "transcript": consumed[1], "via": "text",
                                                "audio_start_ms": None, "audio_end_ms": None})
        await self.send({"type": "conversation.item.added", "previous_item_id": prev, "item": copy.deepcopy(item)})
        await self.send({"type": "conversation.item.done", "previous_item_id": prev, "item": copy.deepcopy(item)})

    async def on_item_truncate(self, event: dict) -> None:
        item_id = event.get("item_id")
        audio_end_ms = event.get("audio_end_ms")
        content_index = event.get("content_index", 0)
        entry = {"item_id": item_id, "content_index": content_index, "audio_end_ms": audio_end_ms,
                 "generated_ms": None, "accepted": False, "error": None}
        self.record["truncations"].append(entry)
        try:
            if not isinstance(item_id, str):
                raise _Error("missing_required_parameter", "Missing required parameter: 'item_id'.", "item_id")
            if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
                raise _Error("invalid_value", "Invalid 'audio_end_ms': expected a non-negative integer.", "audio_end_ms")
            item = self.items.get(item_id)
            meta = self.meta.get(item_id, {})
            if item is None:
                raise _Error("item_not_found", f"Item with item_id '{item_id}' not found.", "item_id")
            if item.get("role") != "assistant" or not meta.get("audio"):
                raise _Error("invalid_value", "Only model output audio messages can be truncated.", "item_id")
            if content_index != 0:
                raise _Error("invalid_value", f"Invalid 'content_index': item has no content part {content_index}.",
                             "content_index")
            generated = int(meta.get("audio_ms", 0))
            entry["generated_ms"] = generated
            if audio_end_ms > generated:
                raise _Error("invalid_value",
                             f"Audio content of {generated}ms is already shorter than {audio_end_ms}ms",
                             "audio_end_ms")
        except _Error as err:
            entry["error"] = err.code
            raise
        entry["accepted"] = True
        meta["audio_ms"] = audio_end_ms
        meta["audio_tokens"] = _assistant_audio_tokens(audio_end_ms)
        text = item["content"][0].get("transcript") or ""
        if generated:
            words = text.split()
            kept = " ".join(words[: round(len(words) * audio_end_ms / generated)])
            item["content"][0]["transcript"] = kept
            meta["text_tokens"] = _text_tokens(kept)
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": content_index,
                         "audio_end_ms": audio_end_ms})

    async def on_item_delete(self, event: dict) -> None:
        item_id = event.get("item_id")
        if item_id not in self.items:
            raise _Error("item_not_found", f"Item with item_id '{item_id}' not found.", "item_id")
        del self.items[item_id]
        self.meta.pop(item_id, None)
        self.order.remove(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def on_item_retrieve(self, event: dict) -> None:
        item_id = event.get("item_id")
        if item_id not in self.items:
            raise _Error("item_not_found", f"Item with item_id '{item_id}' not found.", "item_id")
        await self.send({"type": "conversation.item.retrieved", "item": copy.deepcopy(self.items[item_id])})

    # ---- responses ------------------------------------------------------------------------

    async def on_response_create(self, event: dict) -> None:
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise _Error("invalid_type", "Invalid type for 'response': expected an object.", "response")
        if self.active is not None:
            raise _Error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        await self.start_response(params)

    async def on_response_cancel(self, event: dict) -> None:
        rid = event.get("response_id")
        run = self.active
        if run is not None and (rid is None or rid == run.id):
            await self.cancel_active("client_cancelled")
            if run.status == "cancelled":
                return
        # nothing active (or it completed before the cancel could take effect)
        raise _Error("response_cancel_not_active", "Cancellation failed: no active response found.")

    async def on_output_audio_buffer_clear(self, event: dict) -> None:
        raise _Error("invalid_value", "output_audio_buffer.clear is only supported for WebRTC and SIP connections.")

    async def start_response(self, params: dict) -> None:
        """Send response.created (and rate_limits.updated) now; stream the rest from a task."""
        out_of_band = params.get("conversation") == "none"
        if out_of_band:
            step = Step(text=self.script.out_of_band)
        elif self.pending is not None:
            step, self.pending = self.pending, None
        elif not self.greeted:
            self.greeted = True
            step = Step(text=self.script.greeting)
        else:
            step = Step(text=self.script.default_agent)
        run = _ResponseRun(self, step, params, in_conversation=not out_of_band)
        self.active = run
        await self.send({"type": "response.created", "response": run.response_obj("in_progress")})
        await self.send({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 40000 - 4096, "reset_seconds": 6.144},
        ]})
        run.task = self.spawn(run.run())

    async def cancel_active(self, reason: str) -> None:
        """Cancel the active response and wait until its response.done went out."""
        run = self.active
        if run is None or run.task is None:
            return
        run.request_cancel(reason)  # no effect once it is already finishing: it completes
        await asyncio.shield(run.task)

    def prompt_tokens(self) -> tuple[int, int]:
        """(text, audio) tokens of everything the model would read now."""
        text = _text_tokens(self.config.get("instructions"))
        tools = self.config.get("tools") or []
        if tools:
            text += math.ceil(len(json.dumps(tools)) / 4)
        audio = 0
        for item_id in self.order:
            meta = self.meta[item_id]
            text += meta["text_tokens"] + 4  # a few special tokens per message
            audio += meta["audio_tokens"]
        return text, audio

    def response_finished(self, run: _ResponseRun, notify: bool = True) -> None:
        if self.active is run:
            self.active = None
        if not notify:
            return
        self.responses_done += 1
        limit = self.script.fail.get("drop_after_responses")
        if limit is not None and self.responses_done >= int(limit):
            self.abort()


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


class _Cancelled(Exception):
    """Raised inside a response run at a checkpoint once a cancellation was requested."""


class _ResponseRun:
    """One response. ``response.created`` is sent by :meth:`_Session.start_response`; the rest is
    streamed by a task. Cancellation is cooperative: :meth:`request_cancel` sets a flag and wakes
    the pacing sleep; the task notices it at its next checkpoint (after each sleep or delta), closes
    whatever is open and sends ``response.done`` itself, so event order is always consistent."""

    def __init__(self, session: _Session, step: Step, params: dict, *, in_conversation: bool) -> None:
        self.s = session
        self.step = step
        self.params = params
        self.in_conversation = in_conversation
        self.id = session.ids.new("resp")
        self.task: asyncio.Task | None = None
        self.finishing = False
        self.status = "in_progress"
        self.cancel_reason: str | None = None
        self._sleeper: asyncio.Future | None = None
        self.output: list[dict] = []
        self.prev: dict[str, str | None] = {}  # item_id -> previous_item_id in the conversation
        self.modalities = list(params.get("output_modalities") or session.config["output_modalities"])
        self.audio_out = self.modalities == ["audio"]
        self.fmt = session.output_format
        self.voice = session.config["audio"]["output"]["voice"]
        self.audio_ms = 0
        self.text_out = ""  # transcript / text actually emitted so far
        self.message: dict | None = None  # the open message item
        self.call: dict | None = None  # the open function_call item
        self.output_text_tokens = 0
        self.prompt = session.prompt_tokens()

    def response_obj(self, status: str, status_details: dict | None = None, usage: dict | None = None) -> dict:
        s = self.s
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": status_details,
            "output": [_public_item(item) for item in self.output],
            "conversation_id": s.conversation_id if self.in_conversation else None,
            "output_modalities": list(self.modalities),
            "max_output_tokens": self.params.get("max_output_tokens", s.config.get("max_output_tokens", "inf")),
            "audio": {"output": {"format": copy.deepcopy(s.config["audio"]["output"]["format"]), "voice": self.voice}},
            "usage": usage,
            "metadata": self.params.get("metadata"),
        }

    # ---- cancellation ---------------------------------------------------------------------

    def request_cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(None)

    def _check(self) -> None:
        if self.cancel_reason is not None:
            raise _Cancelled()

    async def _sleep(self, seconds: float) -> None:
        self._check()
        if seconds <= 0:
            await asyncio.sleep(0)
        else:
            loop = asyncio.get_running_loop()
            fut = self._sleeper = loop.create_future()
            handle = loop.call_later(seconds, lambda: fut.done() or fut.set_result(None))
            try:
                await fut
            finally:
                handle.cancel()
                self._sleeper = None
        self._check()

    # ---- the run --------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.s
        try:
            try:
                await self._sleep(s.script.response_delay_ms / 1000)
                step = self.step
                tool = step.tool
                if tool is not None and self.params.get("tool_choice", s.config.get("tool_choice")) == "none":
                    tool = None
                if step.text:
                    await self._speak(step.text)
                if tool is not None:
                    self._check()
                    await self._call(tool, step.after_tool)
                self._check()
            except _Cancelled:
                await self.finish("cancelled", self.cancel_reason)
            else:
                await self.finish("completed", None)
        except ConnectionClosed:
            s.response_finished(self, notify=False)
        except Exception:  # noqa: BLE001 - never leave the session with a stuck active response
            log.exception("stand-in response %s failed", self.id)
            s.record["warnings"].append(f"response {self.id} failed inside the stand-in")
            s.response_finished(self, notify=False)

    # ---- items ----------------------------------------------------------------------------

    async def _open_item(self, item: dict) -> int:
        s = self.s
        index = len(self.output)
        self.output.append(item)
        await s.send({"type": "response.output_item.added", "response_id": self.id, "output_index": index,
                      "item": _public_item(item)})
        if self.in_conversation:
            prev = s.order[-1] if s.order else None
            self.prev[item["id"]] = prev
            s.add_item(item, None)
            await s.send({"type": "conversation.item.added", "previous_item_id": prev, "item": _public_item(item)})
        return index

    async def _close_item(self, item: dict, index: int) -> None:
        s = self.s
        await s.send({"type": "response.output_item.done", "response_id": self.id, "output_index": index,
                      "item": _public_item(item)})
        if self.in_conversation:
            await s.send({"type": "conversation.item.done", "previous_item_id": self.prev.get(item["id"]),
                          "item": _public_item(item)})

    async def _speak(self, text: str) -> None:
        s = self.s
        item = {"id": s.ids.new("item"), "object": "realtime.item", "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        index = await self._open_item(item)
        self.message = {"item": item, "index": index, "text": text}
        base = {"response_id": self.id, "item_id": item["id"], "output_index": index, "content_index": 0}
        part = {"type": "audio", "transcript": ""} if self.audio_out else {"type": "text", "text": ""}
        await s.send({"type": "response.content_part.added", **base, "part": part})
        self._check()
        words = text.split()
        speed = s.standin.speed
        if not self.audio_out:
            for i, word in enumerate(words):
                if speed > 0 and i:
                    await self._sleep(s.standin.chunk_ms / 1000 / speed / 3)
                piece = word + (" " if i < len(words) - 1 else "")
                self.text_out += piece
                await s.send({"type": "response.output_text.delta", **base, "delta": piece})
                self._check()
            await self._close_message("completed")
            return
        audio = None
        if s.standin.audio == "espeak":
            audio = await espeak_audio(text, self.fmt)
            self._check()
        if audio is None:
            audio = tone_audio(text, self.fmt)
        meta = s.meta.get(item["id"]) if self.in_conversation else None
        if meta is not None:
            meta["audio"] = True
        s.audio_produced = True
        bpm = _FORMATS[self.fmt][0]
        step_bytes = bpm * s.standin.chunk_ms
        total_ms = len(audio) // bpm
        emitted_words = 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        by_item = s.record["audio_ms_by_item"]
        for offset in range(0, len(audio), step_bytes):
            if offset:
                # paced: sleep until this chunk is due; unpaced: still let the receive loop run
                await self._sleep(t0 + self.audio_ms / 1000 / speed - loop.time() if speed > 0 else 0)
            chunk = audio[offset:offset + step_bytes]
            await s.send({"type": "response.output_audio.delta", **base,
                          "delta": base64.b64encode(chunk).decode("ascii")})
            self.audio_ms += len(chunk) // bpm
            by_item[item["id"]] = self.audio_ms
            if meta is not None:
                meta["audio_ms"] = self.audio_ms
                meta["audio_tokens"] = _assistant_audio_tokens(self.audio_ms)
            target = math.ceil(len(words) * self.audio_ms / total_ms) if total_ms else len(words)
            if target > emitted_words:
                piece = " ".join(words[emitted_words:target]) + (" " if target < len(words) else "")
                emitted_words = target
                self.text_out += piece
                await s.send({"type": "response.output_audio_transcript.delta", **base, "delta": piece})
            self._check()
        await self._close_message("completed")

    async def _close_message(self, status: str) -> None:
        m = self.message
        if m is None:
            return
        s, item, index = self.s, m["item"], m["index"]
        text = m["text"] if status == "completed" else self.text_out.strip()
        base = {"response_id": self.id, "item_id": item["id"], "output_index": index, "content_index": 0}
        if self.audio_out:
            await s.send({"type": "response.output_audio.done", **base})
            await s.send({"type": "response.output_audio_transcript.done", **base, "transcript": text})
            part = {"type": "audio", "transcript": text}
            content = {"type": "output_audio", "transcript": text}
        else:
            await s.send({"type": "response.output_text.done", **base, "text": text})
            part = {"type": "text", "text": text}
            content = {"type": "output_text", "text": text}
        await s.send({"type": "response.content_part.done", **base, "part": part})
        item["status"] = status
        item["content"] = [content]
        self.output_text_tokens += _text_tokens(text)
        if self.in_conversation and item["id"] in s.meta:
            s.meta[item["id"]]["text_tokens"] = _text_tokens(text)
        self.message = None
        await self._close_item(item, index)

    async def _call(self, tool: dict, after_tool: Step | None) -> None:
        s = self.s
        declared = {t.get("name") for t in s.config.get("tools") or [] if isinstance(t, dict)}
        if tool["name"] not in declared:
            s.record["warnings"].append(f"tool '{tool['name']}' called but not declared in session.tools")
        call_id = "call_" + s.ids.new("c")[2:]
        item = {"id": s.ids.new("item"), "object": "realtime.item", "type": "function_call", "status": "in_progress",
                "name": tool["name"], "call_id": call_id, "arguments": ""}
        index = await self._open_item(item)
        self.call = {"item": item, "index": index}
        args = tool["arguments"]
        base = {"response_id": self.id, "item_id": item["id"], "output_index": index, "call_id": call_id}
        third = max(1, math.ceil(len(args) / 3))
        for start in range(0, len(args), third):
            await s.send({"type": "response.function_call_arguments.delta", **base, "delta": args[start:start + third]})
        await s.send({"type": "response.function_call_arguments.done", **base, "name": tool["name"], "arguments": args})
        item["arguments"] = args
        item["status"] = "completed"
        tokens = math.ceil(len(args) / 4) + 5
        self.output_text_tokens += tokens
        if self.in_conversation and item["id"] in s.meta:
            s.meta[item["id"]]["text_tokens"] = tokens
        s.calls[call_id] = {"name": tool["name"], "after_tool": after_tool, "answered": False}
        s.record["tool_calls"].append({"call_id": call_id, "name": tool["name"], "arguments": args})
        self.call = None
        await self._close_item(item, index)

    # ---- end ------------------------------------------------------------------------------

    async def finish(self, status: str, reason: str | None) -> None:
        """Close whatever is open and send response.done."""
        self.finishing = True
        self.status = status
        s = self.s
        try:
            if self.message is not None:
                await self._close_message("incomplete")
            if self.call is not None:
                call, self.call = self.call, None
                call["item"]["status"] = "incomplete"
                await self._close_item(call["item"], call["index"])
            usage = self._usage()
            details = {"type": "cancelled", "reason": reason} if status == "cancelled" else None
            tool = next((o["name"] for o in self.output if o["type"] == "function_call"), None)
            s.record["responses"].append({"id": self.id, "status": status, "reason": reason,
                                          "text": self.text_out.strip() or None, "audio_ms": self.audio_ms,
                                          "tool": tool, "usage": usage,
                                          "instructions": (self.params or {}).get("instructions")})
            if self.in_conversation:
                s.prev_prompt_tokens = sum(self.prompt)
            await s.send({"type": "response.done", "response": self.response_obj(status, details, usage)})
        finally:
            s.response_finished(self)

    def _usage(self) -> dict:
        text_in, audio_in = self.prompt
        total_in = text_in + audio_in
        cached = 0
        prev = self.s.prev_prompt_tokens
        if prev >= 1024:
            cached = min(total_in, prev) // 64 * 64
        cached_audio = round(cached * audio_in / total_in) if total_in else 0
        cached_text = cached - cached_audio
        audio_out = _assistant_audio_tokens(self.audio_ms) if self.audio_out else 0
        text_out = self.output_text_tokens
        output = text_out + audio_out
        return {
            "total_tokens": total_in + output,
            "input_tokens": total_in,
            "output_tokens": output,
            "input_token_details": {
                "text_tokens": text_in, "audio_tokens": audio_in, "image_tokens": 0, "cached_tokens": cached,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }


def _public_item(item: dict) -> dict:
    return copy.deepcopy(item)


# --------------------------------------------------------------------------------------------
# Chat Completions (the supervisor's text model)
# --------------------------------------------------------------------------------------------

CHAT_HANG_CAP_S = 60.0
MAX_LOGGED_CHAT_REQUESTS = 10_000
DEFAULT_SUPERVISOR_SAY = "I'm sorry, I can't help with that right now."
TOOL_MESSAGE_WITHOUT_CALL = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_TEMPLATE = re.compile(r"\{(today(?:[+-]\d{1,5})?|caller|result\.[A-Za-z0-9_-]+(?:\.[^{}.\s]+)*)\}")
_ISO_DATE = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_E164 = re.compile(r"(?<![\w+])\+[1-9]\d{6,14}(?!\d)")
_CHAT_ERRORS = {  # status -> (message, type, code) of the real API's usual body for it
    400: (("This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 "
           "tokens. Please reduce the length of the messages."), "invalid_request_error", "context_length_exceeded"),
    429: (("Rate limit reached for {model} in organization org-standin on tokens per min (TPM): Limit 30000, "
           "Used 30000, Requested 1200. Please try again in {retry}s. Visit "
           "https://platform.openai.com/account/rate-limits to learn more."), "tokens", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def _random_id(prefix: str, n: int) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(n))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _content_text(content: Any) -> str:
    """The text of a chat message's ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text") or p.get("refusal") or "" for p in content if isinstance(p, dict))
    return ""


def _chat_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _missing(param: str) -> _Error:
    return _Error("missing_required_parameter", f"Missing required parameter: '{param}'.", param)


def _wrong_type(param: str, expected: str, value: Any) -> _Error:
    return _Error("invalid_type", f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
                  param)


def _empty_array(param: str) -> _Error:
    return _Error("empty_array", f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an "
                                 "empty array instead.", param)


def _check_content(msg: dict, where: str, *, required: bool) -> None:
    content = msg.get("content")
    if content is None:
        if required:
            raise _missing(f"{where}.content")
        return
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise _missing(f"{where}.content[{j}].type")
    elif not isinstance(content, str):
        raise _wrong_type(f"{where}.content", "one of a string or array of objects", content)


def _check_chat_request(body: Any) -> None:
    """Reject the request mistakes the real API rejects (raises ``_Error`` with its message)."""
    if not isinstance(body, dict):
        raise _Error("invalid_type", f"Invalid type for body: expected an object, but got {_json_type(body)} instead.")
    model = body.get("model")
    if model is None or model == "":
        raise _Error(None, "you must provide a model parameter")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    if body.get("stream"):
        raise _Error("unsupported_value", "The stand-in does not stream chat completions; send stream=false.", "stream")
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise _empty_array("messages")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _wrong_type(where, "an object", msg)
        role = msg.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in _CHAT_ROLES:
            raise _Error("invalid_value", f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                                          "'user', 'function', 'tool', and 'developer'.", f"{where}.role")
        if role == "assistant":
            calls = msg.get("tool_calls")
            _check_content(msg, where, required=not calls and msg.get("function_call") is None)
            if calls is not None:
                if not isinstance(calls, list):
                    raise _wrong_type(f"{where}.tool_calls", "an array", calls)
                if not calls:
                    raise _empty_array(f"{where}.tool_calls")
                for j, call in enumerate(calls):
                    cw = f"{where}.tool_calls[{j}]"
                    if not isinstance(call, dict):
                        raise _wrong_type(cw, "an object", call)
                    for key in ("id", "type", "function"):
                        if call.get(key) is None:
                            raise _missing(f"{cw}.{key}")
                    if call["type"] != "function":
                        raise _Error("invalid_value", f"Invalid value: {call['type']!r}. Supported values are: "
                                                      "'function'.", f"{cw}.type")
                    fn = call["function"]
                    if not isinstance(fn, dict):
                        raise _wrong_type(f"{cw}.function", "an object", fn)
                    for key in ("name", "arguments"):
                        if fn.get(key) is None:
                            raise _missing(f"{cw}.function.{key}")
                        if not isinstance(fn[key], str):
                            raise _wrong_type(f"{cw}.function.{key}", "a string", fn[key])
        elif role == "tool":
            if msg.get("tool_call_id") is None:
                raise _missing(f"{where}.tool_call_id")
            if not isinstance(msg["tool_call_id"], str):
                raise _wrong_type(f"{where}.tool_call_id", "a string", msg["tool_call_id"])
            _check_content(msg, where, required=True)
        else:
            _check_content(msg, where, required=True)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _wrong_type("tools", "an array", tools)
        if not tools:
            raise _empty_array("tools")
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict):
                raise _wrong_type(where, "an object", tool)
            if tool.get("type") is None:
                raise _missing(f"{where}.type")
            if tool["type"] not in ("function", "custom"):
                raise _Error("invalid_value", f"Invalid value: {tool['type']!r}. Supported values are: 'function' and "
                                              "'custom'.", f"{where}.type")
            spec = tool.get(tool["type"])
            if not isinstance(spec, dict):
                raise _missing(f"{where}.{tool['type']}")
            name = spec.get("name")
            if name is None:
                raise _missing(f"{where}.{tool['type']}.name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise _Error("invalid_value", f"Invalid '{where}.{tool['type']}.name': string does not match pattern. "
                                              "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
                             f"{where}.{tool['type']}.name")
    for key in ("tool_choice", "parallel_tool_calls"):
        if body.get(key) is not None and tools is None:
            raise _Error("invalid_value", f"Invalid value for '{key}': '{key}' is only allowed when 'tools' are "
                                          "specified.", key)
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("none", "auto", "required") and not (
            isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str)):
        raise _Error("invalid_value", "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a "
                                      "named function.", "tool_choice")
    _check_tool_pairing(messages)


def _check_tool_pairing(messages: list[dict]) -> None:
    """Each ``tool`` message answers a call of the assistant message right before its run of tool messages,
    and every call of such a message is answered before the conversation goes on."""
    block: set[str] = set()
    unanswered: list[str] = []
    block_at = -1
    for i, msg in enumerate(messages):
        if msg["role"] == "tool":
            call_id = msg["tool_call_id"]
            if call_id not in block:
                raise _Error(None, TOOL_MESSAGE_WITHOUT_CALL, f"messages.[{i}].role")
            if call_id in unanswered:
                unanswered.remove(call_id)
            continue
        if unanswered:
            break
        block, block_at = set(), -1
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            block = {call["id"] for call in msg["tool_calls"]}
            unanswered = [call["id"] for call in msg["tool_calls"]]
            block_at = i
    if unanswered:
        raise _Error(None, "An assistant message with 'tool_calls' must be followed by tool messages responding to "
                           "each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                           + ", ".join(unanswered), f"messages.[{block_at}].role")


class _AbortRequest(Exception):
    """Close the HTTP connection without an answer (the client went away, a hang ended, or shutdown)."""


class _ChatTurn:
    """What a chat completions request says, as far as the script needs it (it keeps no state between requests)."""

    def __init__(self, body: dict, time_zone: str) -> None:
        messages: list[dict] = body["messages"]
        self.model: str = body["model"]
        self.messages = messages
        self.tools = [t[t["type"]]["name"] for t in body.get("tools") or []]
        self.tool_choice = body.get("tool_choice")
        self.warnings: list[str] = []
        user_at = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        self.last_user = _content_text(messages[user_at].get("content")) if user_at >= 0 else None
        self.step = sum(1 for m in messages[user_at + 1:] if m["role"] == "assistant" and m.get("tool_calls"))
        names: dict[str, str] = {}
        self.results: dict[str, str] = {}  # tool name -> content of its most recent tool message
        self.tool_results: list[dict] = []  # tool messages after the last user message
        for i, msg in enumerate(messages):
            if msg["role"] == "assistant":
                for call in msg.get("tool_calls") or []:
                    names[call["id"]] = call["function"]["name"]
            elif msg["role"] == "tool":
                name = names.get(msg["tool_call_id"], "")
                content = _content_text(msg.get("content"))
                self.results[name] = content
                if i > user_at:
                    self.tool_results.append({"tool_call_id": msg["tool_call_id"], "name": name, "content": content})
        system = "\n".join(_content_text(m.get("content")) for m in messages if m["role"] in ("system", "developer"))
        self.today, self.today_from = self._today(system, time_zone)
        self.caller = None
        for msg in messages:
            if msg["role"] in ("system", "developer", "user"):
                found = _E164.search(_content_text(msg.get("content")))
                if found:
                    self.caller = found.group(0)
                    break

    @staticmethod
    def _today(system: str, time_zone: str) -> tuple[date, str]:
        for m in _ISO_DATE.finditer(system):
            with contextlib.suppress(ValueError):
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3))), "system prompt"
        return datetime.now(zoneinfo.ZoneInfo(time_zone)).date(), time_zone

    # ---- templates ----------------------------------------------------------------------

    def _lookup(self, expr: str) -> tuple[bool, Any]:
        """(found, value) of one template expression (without the braces)."""
        if expr.startswith("today"):
            return True, (self.today + timedelta(days=int(expr[5:] or 0))).isoformat()
        if expr == "caller":
            if self.caller is None:
                self.warnings.append("{caller}: no +E.164 number in the system or user messages")
                return False, None
            return True, self.caller
        _, tool, *path = expr.split(".")
        if tool not in self.results:
            self.warnings.append(f"{{{expr}}}: no tool message answers a {tool} call in this request")
            return False, None
        raw = self.results[tool]
        if not path:
            return True, raw
        try:
            value: Any = json.loads(raw)
        except ValueError:
            self.warnings.append(f"{{{expr}}}: the {tool} result is not JSON")
            return False, None
        for i, key in enumerate(path):
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and re.fullmatch(r"-?\d+", key) and -len(value) <= int(key) < len(value):
                value = value[int(key)]
            else:
                self.warnings.append(f"{{{expr}}}: the {tool} result has no value at {'.'.join(path[:i + 1])!r}")
                return False, None
        return True, value

    def render(self, text: str) -> str:
        """Replace every template in ``text`` (non-string values as JSON, missing ones as '')."""
        def sub(m: re.Match) -> str:
            found, value = self._lookup(m.group(1))
            if not found:
                return ""
            return value if isinstance(value, str) else json.dumps(value)
        return _TEMPLATE.sub(sub, text)

    def render_value(self, obj: Any) -> Any:
        """Render the string leaves of ``obj``; a string that is exactly one template keeps the value's JSON type."""
        if isinstance(obj, str):
            m = _TEMPLATE.fullmatch(obj)
            if m is not None:
                found, value = self._lookup(m.group(1))
                return value if found else ""
            return self.render(obj)
        if isinstance(obj, dict):
            return {key: self.render_value(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.render_value(value) for value in obj]
        return obj

    # ---- usage --------------------------------------------------------------------------

    def prompt_tokens(self, messages: list[dict]) -> int:
        tokens = 3
        for msg in messages:
            tokens += 4 + _chat_tokens(_content_text(msg.get("content")))
            for call in msg.get("tool_calls") or []:
                tokens += 3 + _chat_tokens(call["function"]["name"] + call["function"]["arguments"])
        return tokens

    def usage(self, completion_tokens: int, tools_json: str) -> dict:
        tools_tokens = _chat_tokens(tools_json) if tools_json else 0
        prompt = self.prompt_tokens(self.messages) + tools_tokens
        cached = 0
        if self.step > 0 and prompt >= 1024:
            # a tool loop resends the previous request as its prefix: cached in 128-token blocks
            last_assistant = max(i for i, m in enumerate(self.messages) if m["role"] == "assistant")
            prefix = self.prompt_tokens(self.messages[:last_assistant]) + tools_tokens
            cached = prefix // 128 * 128 if prefix >= 1024 else 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        }


class _ChatCompletions:
    """``POST /v1/chat/completions`` answered from the script's ``supervisor`` entries."""

    def __init__(self, standin: RealtimeStandin) -> None:
        self.standin = standin
        self.log: list[dict] = []
        self.failures: dict[tuple[int, int | None], int] = {}  # (entry, step or None) -> scripted failures so far
        self.fingerprint = "fp_" + secrets.token_hex(5)

    def select(self, last_user: str | None) -> tuple[int | None, SupervisorEntry | None]:
        text = (last_user or "").lower()
        for i, entry in enumerate(self.standin.script.supervisor):
            if not entry.default and any(alt in text for alt in entry.match):
                return i, entry
        for i, entry in enumerate(self.standin.script.supervisor):
            if entry.default:
                return i, entry
        return None, None

    def scripted_failure(self, entry_at: int | None, entry: SupervisorEntry | None, step_at: int,
                         step: SupervisorStep | None) -> ChatKnobs | None:
        levels = []
        if step is not None:
            levels.append((step.knobs, (entry_at, step_at)))
        if entry is not None:
            levels.append((entry.knobs, (entry_at, None)))
        for knobs, key in levels:
            if not knobs.fails:
                continue
            used = self.failures.get(key, 0)
            if knobs.count is not None and used >= knobs.count:
                continue
            self.failures[key] = used + 1
            return knobs
        return None

    async def handle(self, req: HTTPRequest) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        started = time.time()
        record: dict[str, Any] = {
            "id": None, "outcome": "pending", "status": None, "model": None, "entry": None, "step": None,
            "last_user_message": None, "messages": None, "tools": [], "tool_choice": None, "caller": None,
            "today": None, "tool_results": [], "tool_calls": [], "content": None, "finish_reason": None,
            "usage": None, "error": None, "warnings": [], "delay_ms": 0,
            "user_agent": req.headers.get("User-Agent"), "started_at": started, "ended_at": None, "duration_ms": None,
        }
        self.log.append(record)
        if len(self.log) > MAX_LOGGED_CHAT_REQUESTS:
            del self.log[: len(self.log) - MAX_LOGGED_CHAT_REQUESTS]
        try:
            return await self._answer(req, record)
        finally:
            record["ended_at"] = time.time()
            record["duration_ms"] = round((record["ended_at"] - started) * 1000)

    async def _scripted_failure(self, req: Any, record: dict, failure: Any, *, model: str) -> Any:
        """A scripted hang or OpenAI-shaped error (shared by the chat and summary answers)."""
        if failure.hang:
            record["outcome"] = "hanging"
            record["outcome"] = await self.standin._pause(req, CHAT_HANG_CAP_S) or "hang_cap"
            raise _AbortRequest(record["outcome"])
        status = int(failure.status)
        message, type_, code = _CHAT_ERRORS.get(
            status, (f"{http.HTTPStatus(status).phrase}.",
                     "server_error" if status >= 500 else "invalid_request_error", None))
        retry = failure.retry_after if failure.retry_after is not None else 1.0
        headers = {"retry-after": f"{retry:g}"} if status in (429, 503) else {}
        if status == 429:
            headers.update({"x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "0",
                            "x-ratelimit-reset-tokens": f"{retry:g}s"})
        return self._error(record, status, "scripted_error", {
            "message": message.format(model=model, retry=f"{retry:g}"), "type": type_, "param": None,
            "code": code}, headers)

    def _error(self, record: dict, status: int, outcome: str, error: dict,
               headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        record.update(outcome=outcome, status=status, error=error)
        return status, {"error": error}, headers or {}

    async def _answer(self, req: HTTPRequest, record: dict) -> tuple[int, Any, dict[str, str]]:
        try:
            body = req.json()
        except ValueError:
            return self._error(record, 400, "invalid_request", {
                "message": "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                           "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                           "sent was not valid JSON.)", "type": "invalid_request_error", "param": None, "code": None})
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            record["model"] = body["model"]
        try:
            _check_chat_request(body)
        except _Error as exc:
            return self._error(record, 400, "invalid_request",
                               {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code})
        response_format = body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            return await self._answer_structured(req, body, record)
        turn = _ChatTurn(body, self.standin.script.supervisor_time_zone)
        record["warnings"] = turn.warnings
        entry_at, entry = self.select(turn.last_user)
        step = entry.steps[turn.step] if entry is not None and turn.step < len(entry.steps) else None
        record.update(
            entry=None if entry is None else {"index": entry_at, "match": list(entry.match), "default": entry.default},
            step=turn.step, last_user_message=turn.last_user, messages=len(turn.messages), tools=turn.tools,
            tool_choice=turn.tool_choice, caller=turn.caller, today=turn.today.isoformat(),
            tool_results=turn.tool_results)

        # latency and scripted failures
        delay = step.knobs.delay_ms if step is not None and step.knobs.delay_ms is not None else None
        if delay is None and entry is not None:
            delay = entry.knobs.delay_ms
        record["delay_ms"] = delay or 0
        if delay:
            interrupted = await self.standin._pause(req, delay / 1000)
            if interrupted:
                record["outcome"] = interrupted
                raise _AbortRequest(interrupted)
        failure = self.scripted_failure(entry_at, entry, turn.step, step)
        if failure is not None:
            return await self._scripted_failure(req, record, failure, model=turn.model)

        # the scripted answer
        if entry is None:
            turn.warnings.append("no supervisor entry matches the last user message and there is no default entry")
            content, tool = DEFAULT_SUPERVISOR_SAY, None
        elif step is None:
            turn.warnings.append(f"supervisor entry {entry_at} ({entry.describe()}) has no step {turn.step} "
                                 f"(it has {len(entry.steps)}); answered with a generic text")
            content, tool = DEFAULT_SUPERVISOR_SAY, None
        else:
            content = turn.render(step.say) if step.say is not None else None
            tool = step.tool
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        completion_tokens = _chat_tokens(content or "")
        if tool is not None:
            arguments = turn.render_value(step.arguments)
            arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
            call = {"id": _random_id("call_", 24), "type": "function", "function": {"name": tool, "arguments": arguments}}
            message["tool_calls"] = [call]
            completion_tokens += 3 + _chat_tokens(tool + arguments)
            record["tool_calls"] = [{"id": call["id"], "name": tool, "arguments": arguments}]
            if tool not in turn.tools:
                turn.warnings.append(f"scripted tool {tool!r} is not among the request's tools {turn.tools}")
            choice = turn.tool_choice
            if choice == "none":
                turn.warnings.append(f"scripted tool {tool!r} called although tool_choice is 'none'")
            elif isinstance(choice, dict) and choice["function"]["name"] != tool:
                turn.warnings.append(f"scripted tool {tool!r} called although tool_choice forces "
                                     f"{choice['function']['name']!r}")
        elif turn.tool_choice == "required" or isinstance(turn.tool_choice, dict):
            turn.warnings.append("scripted text answer although tool_choice requires a tool call")
        finish = "tool_calls" if tool is not None else "stop"
        usage = turn.usage(max(1, completion_tokens), json.dumps(body.get("tools")) if body.get("tools") else "")
        completion = {
            "id": _random_id("chatcmpl-", 29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": turn.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }
        record.update(id=completion["id"], outcome="answered", status=200, content=content, finish_reason=finish,
                      usage=usage)
        for warning in turn.warnings:
            log.warning("stand-in chat completion %s: %s", completion["id"], warning)
        return 200, completion, {}


    async def _answer_structured(self, req: HTTPRequest, body: dict, record: dict) -> tuple[int, Any, dict[str, str]]:
        """A structured-output request (the call summary): the script's ``summary`` document, or a default."""
        script = self.standin.script.summary or SummaryScript()
        messages = body["messages"]
        user_text = "\n".join(_content_text(m.get("content")) for m in messages if m["role"] == "user")
        record.update(entry={"index": None, "match": [], "default": False, "summary": True}, step=0,
                      last_user_message=user_text[-2000:], messages=len(messages), model=body["model"])
        if script.knobs.delay_ms:
            record["delay_ms"] = script.knobs.delay_ms
            interrupted = await self.standin._pause(req, script.knobs.delay_ms / 1000)
            if interrupted:
                record["outcome"] = interrupted
                raise _AbortRequest(interrupted)
        failure = None
        if script.knobs.fails:
            used = self.failures.get((-1, None), 0)
            if script.knobs.count is None or used < script.knobs.count:
                self.failures[(-1, None)] = used + 1
                failure = script.knobs
        if failure is not None:
            return await self._scripted_failure(req, record, failure, model=body["model"])
        schema = ((body["response_format"].get("json_schema") or {}).get("schema")) or {}
        document = _default_document(schema, user_text)
        if isinstance(document, dict):
            document.update(copy.deepcopy(script.document))
        else:
            document = copy.deepcopy(script.document)
        content = json.dumps(document)
        prompt = sum(4 + _chat_tokens(_content_text(m.get("content"))) for m in messages) + _chat_tokens(json.dumps(schema))
        completion_tokens = max(1, _chat_tokens(content))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                 "total_tokens": prompt + completion_tokens,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}
        completion = {
            "id": _random_id("chatcmpl-", 29), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None,
                                                 "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default", "system_fingerprint": self.fingerprint,
        }
        record.update(id=completion["id"], outcome="answered", status=200, content=content, finish_reason="stop",
                      usage=usage)
        return 200, completion, {}


def _default_document(schema: Any, text: str) -> Any:
    """A value that fits a JSON schema: enums take "other"/"neutral" or their first value, strings quote the request."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return next((v for v in ("other", "neutral") if v in schema["enum"]), schema["enum"][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {key: _default_document(sub, text) for key, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    if kind == "string":
        words = " ".join(text.split()[:30])
        return f"Stand-in summary: {words}" if words else "Stand-in summary."
    return None


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

class RealtimeStandin:
    """The stand-in server: Realtime WebSocket at ``/v1/realtime`` plus HTTP on the same port.

    Args:
        script: a :class:`Script`, a dict in the script format, or a path to a JSON script.
        echo: echo mode for latency benchmarks (see the module docstring).
        audio: ``"tone"`` or ``"espeak"`` (falls back to the tone if espeak-ng is missing).
        speed: how many times faster than real time responses are generated (0: unpaced).
        host, port: where to listen (``port=0`` picks a free port; read it back from ``.port``).
        chunk_ms: audio per ``response.output_audio.delta``.
        transcription_delay_ms: delay of ``...input_audio_transcription.completed`` after a commit.
    """

    def __init__(self, script: Script | dict | str | os.PathLike | None = None, *, echo: bool = False,
                 audio: str = "tone", speed: float = 3.0, host: str = "127.0.0.1", port: int = 8765,
                 chunk_ms: int = 100, transcription_delay_ms: int = 50) -> None:
        if audio not in ("tone", "espeak"):
            raise ValueError("audio must be 'tone' or 'espeak'")
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.script = Script.from_obj(script)
        self.echo = echo
        self.audio = audio
        self.speed = float(speed)
        self.host = host
        self.port = port
        self.chunk_ms = int(chunk_ms)
        self.transcription_delay_ms = transcription_delay_ms
        self._ids = _Ids()
        self._sessions: dict[str, dict] = {}
        self._live: dict[str, _Session] = {}
        self._closed: dict[str, asyncio.Event] = {}
        self._refused = 0
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._routes: dict[tuple[str, str], HTTPHandler] = {}
        self._stopping: asyncio.Event | None = None
        self._chat = _ChatCompletions(self)
        self.add_http_route("GET", "/v1/models", self._http_models)
        self.add_http_route("POST", "/v1/chat/completions", self._chat.handle)
        self.add_http_route("GET", "/standin/sessions", self._http_sessions)
        self.add_http_route("GET", "/standin/chat", self._http_chat_log)
        self.add_http_route("POST", "/standin/reset", self._http_reset)
        self.add_http_route("GET", "/standin/health", lambda req: (200, {"status": "ok"}))

    # ---- URLs -----------------------------------------------------------------------------

    @property
    def _url_host(self) -> str:
        if self.host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def url(self) -> str:
        """WebSocket URL of the Realtime endpoint (OPENAI_REALTIME_URL); clients add ``?model=``."""
        return f"ws://{self._url_host}:{self.port}/v1/realtime"

    @property
    def http_url(self) -> str:
        return f"http://{self._url_host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OPENAI_BASE_URL for the openai SDK."""
        return self.http_url + "/v1"

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> RealtimeStandin:
        """Start listening (in the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await serve(
            self._handler, self.host, self.port,
            process_request=self._process_request,
            create_connection=_StandinConnection,
            open_timeout=None,  # _StandinConnection.handshake applies OPEN_TIMEOUT_S itself
            compression=None,  # cheaper per message; the benchmark path matters more than bandwidth
            max_size=MAX_MESSAGE_BYTES,
            server_header="openai-realtime-standin",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Realtime stand-in listening on %s", self.url)
        return self

    async def aclose(self) -> None:
        """Stop listening and close open sessions (code 1001); waiting chat requests are dropped."""
        if self._stopping is not None:
            self._stopping.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RealtimeStandin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start_in_thread(self, timeout: float = 10.0) -> RealtimeStandin:
        """Run the server in a daemon thread with its own loop; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("already running in a thread")
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="realtime-standin", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("the stand-in did not start in time")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None

    # ---- log ------------------------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        if self._loop is None or self._thread is None:
            return True
        return self._thread is threading.current_thread()

    def _call_on_loop(self, fn: Callable[[], Any]) -> Any:
        if self._on_loop_thread() or not self._loop.is_running():
            return fn()

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(10)

    @property
    def sessions(self) -> dict[str, dict]:
        """A snapshot (deep copy) of the session log: ``{session_id: record}`` in connection order."""
        return self._call_on_loop(lambda: copy.deepcopy(self._sessions))

    @property
    def last_session(self) -> dict | None:
        sessions = self.sessions
        return next(reversed(sessions.values())) if sessions else None

    def reset(self) -> None:
        """Forget the session log and the chat log (live sessions keep running but are no longer listed)."""
        def clear() -> None:
            self._sessions.clear()
            self._chat.log.clear()
        self._call_on_loop(clear)

    @property
    def chat_requests(self) -> list[dict]:
        """A snapshot of the chat completions log, oldest first (see ``GET /standin/chat``)."""
        return self._call_on_loop(lambda: copy.deepcopy(self._chat.log))

    @property
    def last_chat_request(self) -> dict | None:
        requests = self.chat_requests
        return requests[-1] if requests else None

    async def wait_for_close(self, session_id: str | None = None, timeout: float = 5.0) -> dict:
        """Wait until a session (default: the most recent) has ended; returns its record."""
        deadline = asyncio.get_running_loop().time() + timeout
        while session_id is None:
            if self._closed:
                session_id = next(reversed(self._closed))
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("no session started")
            await asyncio.sleep(0.01)
        event = self._closed[session_id]
        await asyncio.wait_for(event.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        return copy.deepcopy(self._sessions.get(session_id) or {})

    # ---- HTTP -----------------------------------------------------------------------------

    def add_http_route(self, method: str, path: str, handler: HTTPHandler) -> None:
        """Serve ``method path`` with ``handler(HTTPRequest) -> (status, payload)`` (payload: JSON-able,
        str or bytes; the handler may be async). Later registrations replace earlier ones."""
        self._routes[(method.upper(), path.rstrip("/") or "/")] = handler

    async def _process_request(self, connection: _StandinConnection, request: Request) -> Response | None:
        path, _, query_string = request.path.partition("?")
        path = path.rstrip("/") or "/"
        query = parse_qs(query_string)
        headers = request.headers
        method = request.method.upper()
        if path == "/v1/realtime":
            if not _bearer(headers):
                return _openai_error(
                    401,
                    "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )
            refuse = self.script.fail.get("refuse_connection")
            if refuse:
                spec = refuse if isinstance(refuse, dict) else {}
                count = spec.get("count")
                if count is None or self._refused < int(count):
                    self._refused += 1
                    return _openai_error(int(spec.get("status", 500)),
                                         "The server had an error while processing your request. Sorry about that!",
                                         None, "server_error")
            if self.script.connect_delay_ms:
                await asyncio.sleep(self.script.connect_delay_ms / 1000)
            connection.standin_info = {
                "model": (query.get("model") or [DEFAULT_MODEL])[0],
                "path": request.path,
                "beta": headers.get(_TRACKED_HEADER_BETA),
                "headers": {"authorization": True, "openai_beta": headers.get(_TRACKED_HEADER_BETA),
                            "user_agent": headers.get("User-Agent")},
            }
            return None  # websockets performs (or refuses, e.g. 426 for a plain GET) the upgrade
        handler = self._routes.get((method, path))
        if handler is None and method == "GET" and path.startswith("/v1/models/"):
            handler = self._http_model
        if handler is None:
            if any(p == path for _, p in self._routes):
                return _openai_error(405, f"Method {method} not allowed for {path}.", "method_not_allowed")
            return _openai_error(404, f"Invalid URL ({method} {path})", None)
        if path.startswith("/v1/") and not _bearer(headers):
            if headers.get("Authorization") is None:
                message = ("You didn't provide an API key. You need to provide your API key in an Authorization "
                           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            else:
                message = "Incorrect API key provided. The stand-in accepts any non-empty Bearer token."
            return _openai_error(401, message, "invalid_api_key")
        req = HTTPRequest(method, path, query, headers, connection.http_body, connection=connection)
        try:
            result = handler(req)
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
            status, payload = result[0], result[1]
            extra = result[2] if len(result) > 2 else None
        except _AbortRequest:
            connection.transport.abort()
            await asyncio.wait([connection.connection_lost_waiter], timeout=1)
            return _openai_error(500, "The request was dropped.", None, "server_error")  # never sent
        except Exception:  # noqa: BLE001 - a broken route must not kill the server
            log.exception("stand-in HTTP handler failed for %s %s", method, path)
            return _openai_error(500, "The stand-in failed to handle this request.", None, "server_error")
        return _json_response(status, payload, extra)

    def _http_models(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "list", "data": [_model_obj(m) for m in _MODELS]}

    def _http_model(self, req: HTTPRequest) -> tuple[int, Any]:
        model = req.path.split("/v1/models/", 1)[1]
        if model not in _MODELS:
            return 404, {"error": {"message": f"The model '{model}' does not exist or you do not have access to it.",
                                   "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
        return 200, _model_obj(model)

    def _http_sessions(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "standin.sessions", "sessions": self._sessions}

    def _http_chat_log(self, req: HTTPRequest) -> tuple[int, Any]:
        return 200, {"object": "standin.chat", "requests": self._chat.log}

    def _http_reset(self, req: HTTPRequest) -> tuple[int, Any]:
        n, n_chat = len(self._sessions), len(self._chat.log)
        self._sessions.clear()
        self._chat.log.clear()
        return 200, {"object": "standin.reset", "cleared": n, "chat_cleared": n_chat}

    async def _pause(self, req: HTTPRequest, seconds: float) -> str | None:
        """Wait ``seconds`` without holding up other requests. Returns None, or ``"client_disconnected"`` /
        ``"stopped"`` if the client closed the connection or the stand-in is shutting down first."""
        if seconds <= 0:
            return None
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future] = []
        conn = req.connection
        lost = getattr(conn, "connection_lost_waiter", None)
        if lost is not None:
            waiters.append(lost)
        if getattr(conn, "open_deadline", None) is not None:
            conn.open_deadline.reschedule(loop.time() + seconds + OPEN_TIMEOUT_S)
        stop = asyncio.ensure_future(self._stopping.wait()) if self._stopping is not None else None
        if stop is not None:
            waiters.append(stop)
        try:
            if not waiters:
                await asyncio.sleep(seconds)
                return None
            done, _ = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop is not None:
                stop.cancel()
        if stop is not None and stop in done:
            return "stopped"
        if lost is not None and lost in done:
            return "client_disconnected"
        return None

    # ---- WebSocket ------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        info = getattr(ws, "standin_info", {}) or {}
        session = _Session(self, ws, info)
        self._sessions[session.id] = session.record
        self._live[session.id] = session
        self._closed[session.id] = asyncio.Event()
        try:
            await session.run(info)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001
            log.exception("stand-in session %s failed", session.id)
            session.server_closing = True
            await ws.close(1011, "stand-in internal error")
        finally:
            await session.close_log()
            self._live.pop(session.id, None)
            self._closed[session.id].set()
            if len(self._closed) > 10_000:
                for key in list(self._closed)[:5000]:
                    self._closed.pop(key, None)


def _bearer(headers: Headers) -> bool:
    auth = headers.get("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _model_obj(model: str) -> dict:
    return {"id": model, "object": "model", "created": 1756339200, "owned_by": "system"}


# --------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------

async def serve_until_signalled(standin: RealtimeStandin, out: Callable[[str], None] = print) -> None:
    """Run ``standin`` until SIGINT/SIGTERM, printing the environment variables to set."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with standin:
        mode = "echo" if standin.echo else f"scripted, audio={standin.audio}, speed={standin.speed:g}x"
        out(f"OpenAI Realtime stand-in listening on {standin.http_url} ({mode})")
        out("Set:")
        out(f"  OPENAI_REALTIME_URL={standin.url}")
        out(f"  OPENAI_BASE_URL={standin.base_url}")
        out(f"Session log: {standin.http_url}/standin/sessions   Chat log: {standin.http_url}/standin/chat"
            "   (Ctrl-C to stop)")
        await stop.wait()
    out("Stand-in stopped.")


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m voice.standin",
                                               description="Local OpenAI Realtime stand-in.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", help="JSON conversation script (see voice/standin.py)")
    parser.add_argument("--echo", action="store_true", help="echo every append back as one audio delta")
    parser.add_argument("--audio", choices=("tone", "espeak"), default="tone")
    parser.add_argument("--speed", type=float, default=3.0, help="generation speed vs real time (0: unpaced)")
    return parser


def standin_from_options(options: dict[str, Any]) -> RealtimeStandin:
    return RealtimeStandin(
        script=options.get("script") or None, echo=bool(options.get("echo")), audio=options.get("audio") or "tone",
        speed=options.get("speed", 3.0), host=options.get("host") or "127.0.0.1", port=options.get("port", 8765),
    )


def main(argv: list[str] | None = None) -> None:
    args = build_arg_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve_until_signalled(standin_from_options(vars(args)), out=lambda s: print(s, flush=True)))


if __name__ == "__main__":
    main()
