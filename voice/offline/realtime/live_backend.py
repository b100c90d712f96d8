"""GPT-Live delegation on the stand-in: the voice model hands a script turn's ``tool`` to the Responses backend
(mixed into ``voice.offline.realtime.live._LiveSession``).

When a caller turn of the script has a ``tool``, the voice model speaks the turn's ``say`` (if any) while it
delegates:

* ``session.delegation.created`` ``{"delegation": {"id": "item_…", "type": "delegation", "target", "response_id"},
  "offset_ms"}``: ``target`` is the session's delegation type. With ``client`` (or ``decisions``) delegation that is
  all (the client does the work and answers with ``session.commentary.append``); the delegation is recorded.
* With ``responses`` delegation the backend streams, each event in ``{"type": "response.event", "event_id",
  "delegation_id", "event": {...}}``: ``response.created`` (a snapshot: ``output: []``, ``tools: []``,
  ``instructions: null``), a ``reasoning`` ``response.output_item.done`` when ``delegation.responses.reasoning``
  sets an effort other than ``none``, then one ``response.output_item.done`` per function call (``item``:
  ``{"type": "function_call", "id", "call_id": "call_…", "name", "arguments": JSON string, "status":
  "completed"}``) or one with the final ``message`` (``output_text``), and ``response.completed`` (``output: []``,
  ``usage`` estimated: prompt = backend instructions and tools at ~4 characters a token, plus the conversation;
  cached 64-token blocks of the previous prompt past 1024, ``cache_write_tokens`` (the SDK requires it) the
  blocks of this prompt past 1024 not cached yet; output = calls and text, plus 64 reasoning tokens
  with a reasoning item). Nested ``sequence_number`` counts from 0 per response.
* Which functions: a turn's ``ask_supervisor`` (scripts written for the Realtime engine) plays the script's
  ``supervisor`` entries exactly as ``POST /v1/chat/completions`` would (``voice.offline.realtime.chat``: the same
  entry matching and steps, on a chat made of the backend instructions as system prompt and a user message with
  the conversation so far and the tool's ``request`` as the agent request; tool outputs become the tool messages):
  each tool step is a function call with the same name and arguments, and the final content is the backend's
  final text. An entry's or step's ``delay_ms`` delays the backend's output; ``status`` / ``hang`` are not played
  (they are HTTP failures of the chat endpoint). Any other tool is called directly with the turn's arguments, and ``after_tool`` (``{output…}``
  filled in as on Realtime; a chained ``after_tool`` with its own ``tool`` calls that next) is the final text,
  ``default_after_tool`` without one. A function that is not among ``delegation.responses.tools`` is not called:
  a warning is logged and the final text is ``default_agent``.
* The client answers each call with ``response.item.create`` ``{"item": {"type": "function_call_output",
  "call_id", "output"}}`` (an unknown ``call_id`` is an ``error``) and then one ``response.create``: refused with
  ``function_call_outputs_required`` while any call is unanswered (the session goes on). It starts the next nested
  response of the same delegation (new ``response_id``): further calls, or the final message. The voice model then
  speaks the final text (kind ``after_tool`` in the log). ``response.create`` with nothing to continue is an
  ``error`` ``invalid_value``; other ``response.item.create`` items are recorded (``appended``) and otherwise
  unused.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from voice.offline.realtime.chat import _ChatTurn
from voice.offline.realtime.chat_checks import DEFAULT_SUPERVISOR_SAY
from voice.offline.realtime.live_config import function_names
from voice.offline.realtime.protocol import _cached_tokens, _call_tokens, _Error, _prompt_text_tokens, _text_tokens
from voice.offline.realtime.script import _fill_step

if TYPE_CHECKING:
    from voice.offline.realtime.script import Step

log = logging.getLogger("voice.offline.realtime")

SUPERVISOR_TOOL = "ask_supervisor"
REASONING_TOKENS = 64


class _LiveBackend:
    """The Responses backend of a Live session (delegation state, nested events, function calls)."""

    @property
    def delegation_type(self) -> str:
        return (self.config.get("delegation") or {}).get("type") or "client"

    @property
    def backend_config(self) -> dict:
        return (self.config.get("delegation") or {}).get("responses") or {}

    async def delegate(self, step: Step) -> None:
        did = self.ids.new("item")
        target = self.delegation_type
        rec = {"id": did, "target": target, "tool": step.tool["name"], "response_ids": [], "function_calls": [],
               "outputs": [], "continued": 0, "final_text": None}
        self.record["delegations"].append(rec)
        state: dict[str, Any] = {"record": rec, "step": step, "round": 0, "after": step.after_tool,
                                 "messages": None, "awaiting": False, "last_output": ""}
        self.delegations[did] = state
        delegation = {"id": did, "type": "delegation", "target": target}
        if target == "responses":
            delegation["response_id"] = self.ids.new("resp")
            if step.tool["name"] == SUPERVISOR_TOOL:
                state["messages"] = self._supervisor_chat(step)
        await self.send({"type": "session.delegation.created", "delegation": delegation, "offset_ms": self.now_ms()})
        if target == "responses":
            self.spawn(self._backend(state, delegation["response_id"]))

    def _supervisor_chat(self, step: Step) -> list[dict]:
        arguments = self.fill_wire_arguments(step.tool["arguments"])
        try:
            request = json.loads(arguments).get("request") or arguments
        except (ValueError, AttributeError):
            request = arguments
        data = {"conversation_so_far": self.conversation[-20:], "agent_request": request}
        return [{"role": "system", "content": self.backend_config.get("instructions") or ""},
                {"role": "user", "content": "The voice agent asks for your help with agent_request below; "
                                            "conversation_so_far is what was said on the call, oldest first.\n\n"
                                            + json.dumps(data)}]

    # ---- what the backend does next ---------------------------------------------------------

    def _next(self, state: dict) -> tuple[list[tuple[str, str]], str | None, str | None]:
        """``(function calls [(name, arguments)], final text or None, text to speak before the calls or None)``."""
        if state["messages"] is not None:
            return self._next_supervisor_step(state)
        if state["round"] == 0:
            tool = state["step"].tool
            return [(tool["name"], self.fill_wire_arguments(tool["arguments"]))], None, None
        after = state["after"]
        if after is None:
            return [], self.fill_wire(self.script.default_after_tool), None
        if after.tool is not None:
            state["after"] = after.after_tool
            said = self.fill_wire(after.text) if after.text else None
            return [(after.tool["name"], self.fill_wire_arguments(after.tool["arguments"]))], None, said
        return [], self.fill_wire(after.text or self.script.default_after_tool), None

    def _next_supervisor_step(self, state: dict) -> tuple[list[tuple[str, str]], str | None, str | None]:
        chat = self.standin._chat
        body = {"model": self.backend_config.get("model") or "", "messages": state["messages"],
                "tools": [{"type": "function", "function": {"name": n}} for n in function_names(self.config)]}
        turn = _ChatTurn(body, self.script.supervisor_time_zone)
        entry_at, entry, _, step, n_taken = chat.pick_step(turn)
        content, tool, arguments = chat.scripted_reply(turn, entry_at, entry, step, n_taken)
        delay = step.knobs.delay_ms if step is not None and step.knobs.delay_ms is not None else None
        state["delay_ms"] = delay if delay is not None else (entry.knobs.delay_ms if entry is not None else None)
        self.record["warnings"].extend(f"supervisor: {warning}" for warning in turn.warnings)
        if tool is not None:
            return [(tool, arguments)], None, None
        return [], content or DEFAULT_SUPERVISOR_SAY, None

    # ---- one nested response ----------------------------------------------------------------

    async def _backend(self, state: dict, rid: str) -> None:
        try:
            await self._backend_response(state, rid)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - a stand-in bug must not pass silently nor kill the session
            log.exception("stand-in Live backend response %s failed", rid)
            self.record["warnings"].append(f"backend response {rid} failed inside the stand-in")

    async def _backend_response(self, state: dict, rid: str) -> None:
        rec = state["record"]
        did = rec["id"]
        rec["response_ids"].append(rid)
        sequence = itertools.count()
        created_at = int(time.time())

        async def emit(event: dict) -> None:
            event["sequence_number"] = next(sequence)
            await self.send({"type": "response.event", "delegation_id": did, "event": event})

        prompt = self._backend_prompt_tokens(state)
        await emit({"type": "response.created", "response": self._response_obj(rid, created_at, "in_progress")})
        if self.script.response_delay_ms:
            await asyncio.sleep(self.script.response_delay_ms / 1000)
        calls, text, said = self._next(state)
        state["round"] += 1
        if state.get("delay_ms"):
            await asyncio.sleep(state["delay_ms"] / 1000)  # a supervisor entry's delay_ms: a slow backend
        declared = function_names(self.config)
        undeclared = [name for name, _ in calls if name not in declared]
        if undeclared:
            self.record["warnings"].append(f"delegation {did}: function(s) {undeclared} not among "
                                           f"session.delegation.responses.tools {declared}; not called")
            calls, text, said = [], self.script.default_agent, None
        if said:
            self.say("after_tool", said)
        index = 0
        output_tokens = reasoning_tokens = 0
        if (self.backend_config.get("reasoning") or {}).get("effort") not in (None, "none"):
            reasoning_tokens = REASONING_TOKENS
            await emit({"type": "response.output_item.done", "output_index": index,
                        "item": {"type": "reasoning", "id": self.ids.new("rs"), "summary": []}})
            index += 1
        for name, arguments in calls:
            call_id = "call_" + self.ids.new("c")[2:]
            item = {"type": "function_call", "id": self.ids.new("fc"), "call_id": call_id, "name": name,
                    "arguments": arguments, "status": "completed"}
            self.calls[call_id] = {"delegation": did, "name": name, "answered": False}
            rec["function_calls"].append({"call_id": call_id, "name": name, "arguments": arguments})
            self.record["tool_calls"].append({"call_id": call_id, "name": name, "arguments": arguments,
                                              "delegation_id": did})
            if state["messages"] is not None:
                state["messages"].append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]})
            output_tokens += _call_tokens(arguments)
            await emit({"type": "response.output_item.done", "output_index": index, "item": item})
            index += 1
        if not calls:
            rec["final_text"] = text
            output_tokens += _text_tokens(text)
            await emit({"type": "response.output_item.done", "output_index": index, "item": {
                "type": "message", "id": self.ids.new("msg"), "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}})
        cached = _cached_tokens(self.prev_prompt_tokens, prompt)
        written = max(0, _cached_tokens(prompt, prompt) - cached)  # the new prefix the cache keeps for next time
        usage = {"input_tokens": prompt,
                 "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
                 "output_tokens": output_tokens + reasoning_tokens,
                 "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
                 "total_tokens": prompt + output_tokens + reasoning_tokens}
        self.prev_prompt_tokens = prompt
        await emit({"type": "response.completed",
                    "response": self._response_obj(rid, created_at, "completed", usage)})
        if calls:
            state["awaiting"] = True
        else:
            self.say("after_tool", text)

    def _backend_prompt_tokens(self, state: dict) -> int:
        cfg = self.backend_config
        tokens = _prompt_text_tokens(cfg.get("instructions"), cfg.get("tools"))
        if state["messages"] is not None:
            return tokens + sum(4 + _text_tokens(m.get("content")) + sum(
                _call_tokens(c["function"]["arguments"]) for c in m.get("tool_calls") or [])
                for m in state["messages"])
        return tokens + sum(4 + _text_tokens(turn["text"]) for turn in self.conversation) + sum(
            _call_tokens(c["arguments"]) + _text_tokens(o["output"])
            for c, o in zip(state["record"]["function_calls"], state["record"]["outputs"]))

    def _response_obj(self, rid: str, created_at: int, status: str, usage: dict | None = None) -> dict:
        cfg = self.backend_config
        choice = cfg.get("tool_choice")
        if not (isinstance(choice, str) or (isinstance(choice, dict) and choice.get("type") == "function")):
            choice = "auto"
        return {"id": rid, "object": "response", "created_at": created_at, "model": cfg.get("model") or "",
                "status": status, "output": [], "tools": [], "instructions": None, "tool_choice": choice,
                "parallel_tool_calls": cfg.get("parallel_tool_calls", True), "error": None,
                "incomplete_details": None, "metadata": {}, "usage": usage}

    # ---- client commands ----------------------------------------------------------------------

    def _require_responses(self, etype: str) -> None:
        if self.delegation_type != "responses":
            raise _Error("invalid_value", f"{etype} needs Responses delegation (session.delegation.type "
                         f"'{self.delegation_type}').", "type")

    async def on_response_item_create(self, event: dict, client_event_id: str | None) -> None:
        self._require_responses("response.item.create")
        item = event.get("item")
        if not isinstance(item, dict):
            raise _Error("missing_required_parameter", "Missing required parameter: 'item'.", "item")
        if item.get("type") != "function_call_output":
            self.record["appended"].append({"type": "response_item", "content": item})
            return
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not call_id:
            raise _Error("missing_required_parameter", "Missing required parameter: 'item.call_id'.", "item.call_id")
        if output is None:
            raise _Error("missing_required_parameter", "Missing required parameter: 'item.output'.", "item.output")
        output = output if isinstance(output, str) else json.dumps(output)
        call = self.calls.get(call_id)
        answer = {"call_id": call_id, "output": output, "known": call is not None}
        self.record["tool_outputs"].append(answer)
        if call is None:
            raise _Error("invalid_value", f"No function call with call_id '{call_id}' is waiting for output.",
                         "item.call_id")
        if call["answered"]:
            raise _Error("invalid_value", f"The function call '{call_id}' already has an output.", "item.call_id")
        call["answered"] = True
        state = self.delegations[call["delegation"]]
        state["record"]["outputs"].append(answer)
        state["last_output"] = output
        if state["messages"] is not None:
            state["messages"].append({"role": "tool", "tool_call_id": call_id, "content": output})

    async def on_response_create(self, event: dict, client_event_id: str | None) -> None:
        self.record["response_creates"] += 1
        self._require_responses("response.create")
        unanswered = [call_id for call_id, call in self.calls.items() if not call["answered"]]
        if unanswered:
            raise _Error("function_call_outputs_required", "Every pending function call needs its "
                         f"function_call_output before response.create; missing: {', '.join(unanswered)}.")
        state = next((s for s in self.delegations.values() if s["awaiting"]), None)
        if state is None:
            raise _Error("invalid_value", "No delegated work is waiting for response.create.")
        state["awaiting"] = False
        state["record"]["continued"] += 1
        if state["messages"] is None and state["after"] is not None:
            state["after"] = _fill_step(state["after"], state["last_output"])
        self.spawn(self._backend(state, self.ids.new("resp")))
