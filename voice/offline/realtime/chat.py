"""Chat Completions on the stand-in: the scripted supervisor and structured output (the call summary).

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
    - ``{business.name}``, ``{business.hours}``, ``{business.service}``, ``{business.a_service}``,
      ``{business.service_name}``: the business as the system prompt describes it (``voice.offline.realtime.wire``).
    - ``{a|b|...}``: the first alternative that has a value (a warning only when none has), e.g.
      ``{result.check_availability.slots.0|result.check_availability.next_available.slots.0}``.
  An ``arguments`` string that is exactly one template keeps the value's JSON type (``"{result.x.count}"``
  gives ``2``); elsewhere non-string values are written as JSON.
* ``"when": "result.book_appointment.error"`` on a step: the step is skipped unless that expression (no
  braces; ``|`` alternatives allowed) has a value that is not empty, false or zero; ``"!…"`` negates. So a script
  follows what the tools really answered (book; if that failed, take a message and say so). The request's step
  is counted among the steps whose condition holds, replayed on each request, so a condition may only ask about
  results of tools called before its step.
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

Strings of the document may quote what the request says happened on the call: ``{call.outcome}``,
``{call.what_happened}``, ``{call.caller_name}`` … (see ``voice.offline.realtime.call_summary``).

``summary`` takes the same failure knobs as a supervisor entry (``delay_ms``, ``status``, ``hang``,
"""

from __future__ import annotations

import contextlib
import copy
import http
import json
import logging
import re
import secrets
import time
import zoneinfo
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from voice.offline.realtime.chat_checks import (
    _CHAT_ERRORS, CHAT_HANG_CAP_S, DEFAULT_SUPERVISOR_SAY, _E164, _ISO_DATE, MAX_LOGGED_CHAT_REQUESTS, _TEMPLATE,
    _chat_tokens, _check_chat_request, _content_text, _random_id,
)
from voice.offline.realtime.call_summary import call_facts, default_document, fill_call_templates
from voice.offline.realtime.protocol import _Error
from voice.offline.realtime.script import SummaryScript
from voice.offline.realtime.wire import business_facts, fill_wire_templates

if TYPE_CHECKING:
    from voice.offline.realtime.script import ChatKnobs, SupervisorEntry, SupervisorStep
    from voice.offline.realtime.server import RealtimeStandin
    from voice.offline.realtime.transport import HTTPRequest

log = logging.getLogger("voice.offline.realtime")


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
        self.facts = business_facts(system)
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

    def _lookup(self, expr: str, *, quiet: bool = False) -> tuple[bool, Any]:
        """(found, value) of one template expression (without the braces): the first of its ``|`` alternatives
        that has a value. Warns (unless ``quiet``) only when none has."""
        alternatives = expr.split("|")
        for i, alternative in enumerate(alternatives):
            found, value = self._lookup_one(alternative, quiet=True)
            if found:
                return found, value
        if not quiet:
            self._lookup_one(alternatives[-1] if len(alternatives) == 1 else expr, quiet=False)
        return False, None

    def holds(self, condition: str | None) -> bool:
        """A step's ``when``: true if the expression has a value that is not empty, false or zero; ``!``
        before it negates. A missing value is simply false (no warning): conditions ask about it on purpose."""
        if condition is None:
            return True
        negate = condition.startswith("!")
        found, value = self._lookup(condition.lstrip("!"), quiet=True)
        return bool(found and value not in ("", None, False, 0, [], {})) != negate

    def _lookup_one(self, expr: str, *, quiet: bool) -> tuple[bool, Any]:
        warnings = self.warnings if not quiet else []
        if "|" in expr:
            warnings.append(f"{{{expr}}}: none of the alternatives has a value")
            return False, None
        if expr.startswith("business."):
            return self._business(expr, warnings)
        if expr.startswith("today"):
            return True, (self.today + timedelta(days=int(expr[5:] or 0))).isoformat()
        if expr == "caller":
            if self.caller is None:
                warnings.append("{caller}: no +E.164 number in the system or user messages")
                return False, None
            return True, self.caller
        _, tool, *path = expr.split(".")
        if tool not in self.results:
            warnings.append(f"{{{expr}}}: no tool message answers a {tool} call in this request")
            return False, None
        raw = self.results[tool]
        if not path:
            return True, raw
        try:
            value: Any = json.loads(raw)
        except ValueError:
            warnings.append(f"{{{expr}}}: the {tool} result is not JSON")
            return False, None
        for i, key in enumerate(path):
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and re.fullmatch(r"-?\d+", key) and -len(value) <= int(key) < len(value):
                value = value[int(key)]
            else:
                warnings.append(f"{{{expr}}}: the {tool} result has no value at {'.'.join(path[:i + 1])!r}")
                return False, None
        return True, value

    def _business(self, expr: str, warnings: list[str]) -> tuple[bool, Any]:
        """A fact of the business, read from the system prompt (the supervisor's quotes the agent's instructions)."""
        missing: list[str] = []
        value = fill_wire_templates("{" + expr + "}", facts=self.facts, warnings=missing)
        if missing:
            warnings.extend(missing)
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

    def pick_step(self, turn: _ChatTurn) -> tuple[int | None, SupervisorEntry | None, int, SupervisorStep | None, int]:
        """The entry answering ``turn`` and its step: ``(entry index, entry, step index, step or None past the end,
        number of steps whose condition holds)``."""
        entry_at, entry = self.select(turn.last_user)
        # Steps whose `when` does not hold are skipped; the request's step is the turn.step-th of the others
        # (replayed on every request: a condition only asks about results of tools called before its step).
        taken = [(i, s) for i, s in enumerate(entry.steps) if turn.holds(s.when)] if entry is not None else []
        step_at, step = taken[turn.step] if turn.step < len(taken) else (turn.step, None)
        return entry_at, entry, step_at, step, len(taken)

    @staticmethod
    def scripted_reply(turn: _ChatTurn, entry_at: int | None, entry: SupervisorEntry | None,
                       step: SupervisorStep | None, n_taken: int) -> tuple[str | None, str | None, str | None]:
        """What the picked step answers: ``(content, tool name, tool arguments as a JSON string)``, its templates
        rendered (the generic text, with a warning, when no entry or step answers)."""
        if entry is None:
            turn.warnings.append("no supervisor entry matches the last user message and there is no default entry")
            return DEFAULT_SUPERVISOR_SAY, None, None
        if step is None:
            turn.warnings.append(f"supervisor entry {entry_at} ({entry.describe()}) has no step {turn.step} "
                                 f"(it has {n_taken} whose condition holds); answered with a generic text")
            return DEFAULT_SUPERVISOR_SAY, None, None
        content = turn.render(step.say) if step.say is not None else None
        if step.tool is None:
            return content, None, None
        arguments = turn.render_value(step.arguments)
        return content, step.tool, arguments if isinstance(arguments, str) else json.dumps(arguments)

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
        entry_at, entry, step_at, step, n_taken = self.pick_step(turn)
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
        failure = self.scripted_failure(entry_at, entry, step_at, step)
        if failure is not None:
            return await self._scripted_failure(req, record, failure, model=turn.model)

        # the scripted answer
        content, tool, arguments = self.scripted_reply(turn, entry_at, entry, step, n_taken)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
        completion_tokens = _chat_tokens(content or "")
        if tool is not None:
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
        document = default_document(schema, user_text)
        scripted = fill_call_templates(copy.deepcopy(script.document), call_facts(user_text))
        if isinstance(document, dict):
            document.update(scripted)
        else:
            document = scripted
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
