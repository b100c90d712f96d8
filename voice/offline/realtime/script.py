"""The stand-in's conversation script: the JSON format, its parser and the supervisor/summary entries.

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
      "supervisor": [...],                 # chat completions, see voice/offline/realtime/chat.py
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
* Every spoken text, caller transcript and tool argument may use ``{business.name}``, ``{business.hours}``,
  ``{business.service}``, ``{business.a_service}`` and ``{business.service_name}``, read from the
  instructions of the client's ``session.update``, and ``{response.verbatim}``, what the ``response.create``
  instructions ask to be said word for word (see ``voice.offline.realtime.wire``): one script speaks for
  whichever business is calling.
* When turns run out the transcription is ``"(caller speech N)"`` (N counts caller utterances from 1)
  and the agent says ``default_agent``; a response requested with nothing new to answer says it too.
* ``out_of_band``: text of responses created with ``"conversation": "none"`` (they consume nothing).
* ``response_delay_ms``: pause between ``response.created`` and the first output (simulated model
  latency; default 0).
* ``connect_delay_ms``: pause before accepting a Realtime WebSocket upgrade (a slow connect; default 0).
* ``live`` (GPT-Live sessions only, see ``voice.offline.realtime.live``): ``{"session_seconds": 7200,
  "usage_interval_ms": 10000, "early_transcript_ms": 300}``: the session's lifetime (``expires_at``), the interval
  of ``session.usage.updated``, and how much caller speech passes before the first word(s) of its transcript
  are sent.
* On GPT-Live the same ``turns`` drive the call: each caller turn (decided by the energy detector) consumes the
  next turn; ``agent`` / ``say`` is spoken by the voice model; a ``tool`` is delegated to the Responses backend
  (``ask_supervisor`` plays the ``supervisor`` entries, any other tool is called with the turn's ``arguments``
  and ``after_tool`` is the backend's final text). ``greeting`` answers the first
  ``session.instructions.append`` before any caller turn, ``out_of_band`` a later one (unless it asks for a
  sentence word for word).
* ``fail`` (upstream failures, per connection; on GPT-Live as noted):
    - ``"refuse_connection": true`` or ``{"status": 503, "count": 2}``: reject the upgrade with HTTP
      500 (or ``status``), for every connection or only the first ``count`` ones.
    - ``"drop_after_ms": 1500``: abort the TCP connection (no close frame) that long after the first
      ``session.update`` (GPT-Live: after ``session.start``).
    - ``"drop_after_responses": 2``: abort the TCP connection right after the 2nd ``response.done``.
    - ``"error_on_session_update": true`` or ``{"code": ..., "message": ..., "type": ..., "count": N}``:
      answer ``session.update`` (all, or the first N) with that ``error`` instead of applying it.
    - ``"expire_after_ms": 2000``: behave like the 60-minute cap, that long after connecting: ``error``
      ``session_expired`` then close 1001. On GPT-Live: that long after ``session.started`` (which then
      announces it as ``expires_at``), ``session.closed`` with reason ``expired``, then close 1000.
    - ``"refuse_after_sessions": 1``: once that many sessions were opened, refuse every further connection
      (HTTP 500): OpenAI gone for good mid-call.
    - ``"sessions": 1``: the knobs above except ``refuse_connection`` hold only for the first N sessions the
      stand-in opens (since start or the last reset); later ones behave (a client's reconnect succeeds).
"""

from __future__ import annotations

import contextlib
import copy
import http
import json
import os
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from voice.offline.realtime.protocol import DEFAULT_AFTER_TOOL, DEFAULT_AGENT, DEFAULT_GREETING, DEFAULT_OUT_OF_BAND


_TURN_KEYS = {"caller", "agent", "say", "tool", "after_tool"}
_SCRIPT_KEYS = {"greeting", "turns", "default_agent", "default_after_tool", "out_of_band", "response_delay_ms", "fail",
                "supervisor", "supervisor_time_zone", "summary", "connect_delay_ms", "live"}
_LIVE_KEYS = {"session_seconds", "usage_interval_ms", "early_transcript_ms"}
_FAIL_KEYS = {"refuse_connection", "drop_after_ms", "drop_after_responses", "error_on_session_update", "expire_after_ms",
              "sessions", "refuse_after_sessions"}


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
    live_session_seconds: int = 7200
    live_usage_interval_ms: int = 10_000
    live_early_transcript_ms: int = 300

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
        live = obj.get("live") or {}
        if not isinstance(live, dict):
            raise ValueError("script 'live' must be an object")
        _check_keys(live, _LIVE_KEYS, "script 'live'")
        return cls(
            live_session_seconds=_number(live, "session_seconds", "script 'live'", integer=True, minimum=1) or 7200,
            live_usage_interval_ms=_number(live, "usage_interval_ms", "script 'live'", integer=True, minimum=1)
            or 10_000,
            live_early_transcript_ms=300 if live.get("early_transcript_ms") is None
            else _number(live, "early_transcript_ms", "script 'live'", integer=True),
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
_SUPERVISOR_STEP_KEYS = {"say", "tool", "arguments", "when"} | _CHAT_KNOB_KEYS
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# One value in a supervisor template: a date, the caller's number, a fact of the business
# (voice.offline.realtime.wire) or a tool result.
_TEMPLATE_ATOM = (r"today(?:[+-]\d{1,5})?|caller|business\.(?:name|hours|service|a_service|service_name)"
                  r"|result\.[A-Za-z0-9_-]+(?:\.[^{}.\s|]+)*")
_WHEN = re.compile(r"!?(?:" + _TEMPLATE_ATOM + r")(?:\|(?:" + _TEMPLATE_ATOM + r"))*")


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
    when: str | None = None  # a template expression (no braces), "!" negates: the step is skipped unless it holds


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
    when = _opt_str(obj, "when", None, where)
    if when is not None and not _WHEN.fullmatch(when):
        raise ValueError(f"{where} 'when' must be a template expression without braces, such as "
                         "\"result.book_appointment.error\" or \"!result.check_availability.slots.0\"")
    return SupervisorStep(say=say, tool=tool, arguments=copy.deepcopy(arguments), knobs=_parse_chat_knobs(obj, where),
                          when=when)


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
