"""Chat Completions request validation: the real API's 400 errors for the usual mistakes, and shared helpers."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Iterator
from typing import Any

from voice.offline.realtime.protocol import _Error
from voice.offline.realtime.script import _TEMPLATE_ATOM, _TOOL_NAME


CHAT_HANG_CAP_S = 60.0
MAX_LOGGED_CHAT_REQUESTS = 10_000
DEFAULT_SUPERVISOR_SAY = "I'm sorry, I can't help with that right now."
TOOL_MESSAGE_WITHOUT_CALL = (
    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
# "{a|b}" is the first of the alternatives that has a value.
_TEMPLATE = re.compile(r"\{((?:" + _TEMPLATE_ATOM + r")(?:\|(?:" + _TEMPLATE_ATOM + r"))*)\}")
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


def _objects(param: str, value: Any) -> Iterator[tuple[str, dict]]:
    """The items of a non-empty array of objects, each with its path as OpenAI names it (``tools[2]``).
    A generator, so an item's own checks in the caller's loop still run before the next item's type is looked at."""
    if not isinstance(value, list):
        raise _wrong_type(param, "an array", value)
    if not value:
        raise _empty_array(param)
    for i, item in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise _wrong_type(where, "an object", item)
        yield where, item


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
    for where, msg in _objects("messages", messages):
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
                for cw, call in _objects(f"{where}.tool_calls", calls):
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
        for where, tool in _objects("tools", tools):
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
