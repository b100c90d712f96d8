"""GPT-Live session configuration: the strict ``session.start`` check, the resolved session and ``session.update``.

The shapes are the installed openai SDK's typed Live models (``openai.types.live``): the stand-in walks their
pydantic fields, so a field the SDK does not declare, at any depth, is ``unknown_parameter`` with its dotted path
(``session.audio.input``, ``session.input[0].foo``), as the real server rejects unknown fields. The SDK is a
dependency of the product already; this module only reads its model classes (no network, no client).

Checks of ``session.start`` (each an ``error`` that prevents ``session.started``):

* an unknown field (Realtime-only fields included: ``type``, ``turn_detection``, ``tools``, ``output_modalities``
  ...): ``unknown_parameter``, param the dotted path;
* no ``model``: ``missing_required_parameter`` ``session.model``;
* ``audio.format`` ``audio/pcmu`` / ``audio/pcma`` without ``rate: 8000``, or ``audio/pcm`` at a rate other than
  16000 / 24000: ``invalid_value`` ``session.audio.format.rate``;
* a voice that is neither one of the SDK's ``BuiltInVoice`` names nor ``{"id": ...}``: ``forbidden``
  ``session.audio.output.voice``;
* more than 128 ``input`` messages: ``invalid_value`` ``session.input``;
* anything else the SDK model refuses (a wrong type, a missing required field, an unknown ``role``):
  ``invalid_value`` / ``missing_required_parameter`` with the path pydantic reports.

``session.update`` may change ``delegation`` (same ``type``; ``responses`` merged key by key, omitted keys kept;
``acknowledgement_delay_ms``) and ``triggers`` (replaced). Any other field of the session is
``immutable_field_update`` (param ``session.<field>``, ``session.delegation.type`` for a mode change); a field
the SDK's update model does not know is ``unknown_parameter``.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from voice.offline.realtime.protocol import DEFAULT_INSTRUCTIONS, _Error

MAX_INPUT_MESSAGES = 128
DEFAULT_FORMAT = {"type": "audio/pcm", "rate": 24000}
DEFAULT_VOICE = "marin"
_RATES = {"audio/pcm": (16000, 24000), "audio/pcmu": (8000,), "audio/pcma": (8000,)}


def _sdk() -> Any:
    from openai.types.live import built_in_voice, session_config, session_update_config
    return session_config.SessionConfig, session_update_config.SessionUpdateConfig, \
        typing.get_args(built_in_voice.BuiltInVoice)


def unknown_field(tp: Any, value: Any, path: str) -> str | None:
    """The dotted path of the first field in ``value`` that the type ``tp`` (a pydantic model, or a union / list /
    Optional of them) does not declare; None when every field is known. Types are not checked here."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        disc = next((getattr(m, "discriminator", None) for m in meta if getattr(m, "discriminator", None)), None)
        if disc and isinstance(value, dict):
            for member in _members(base):
                literal = member.model_fields.get(disc) if _is_model(member) else None
                if literal is not None and value.get(disc) in typing.get_args(literal.annotation):
                    return unknown_field(member, value, path)
            return None  # an unknown discriminator value is the type check's business
        return unknown_field(base, value, path)
    if origin in (typing.Union, types.UnionType):
        candidates = [m for m in _members(tp) if _fits(m, value)]
        # a member whose `type` literal names the value's type is the one meant
        candidates.sort(key=lambda m: not (_is_model(m) and isinstance(value, dict) and "type" in m.model_fields
                                           and value.get("type") in typing.get_args(m.model_fields["type"].annotation)))
        first = None
        for member in candidates:
            found = unknown_field(member, value, path)
            if found is None:
                return None
            first = first or found
        return first
    if origin in (list, typing.List) and isinstance(value, list):
        (item,) = typing.get_args(tp) or (Any,)
        for i, v in enumerate(value):
            found = unknown_field(item, v, f"{path}[{i}]")
            if found:
                return found
        return None
    if _is_model(tp) and isinstance(value, dict):
        fields = {(f.alias or name): f for name, f in tp.model_fields.items()}
        for key, v in value.items():
            if key not in fields:
                return f"{path}.{key}"
            found = unknown_field(fields[key].annotation, v, f"{path}.{key}")
            if found:
                return found
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp: Any) -> list[Any]:
    out = []
    for member in typing.get_args(tp):
        if typing.get_origin(member) in (typing.Union, types.UnionType):
            out.extend(_members(member))
        elif member is not type(None):
            out.append(member)
    return out


def _fits(tp: Any, value: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _fits(typing.get_args(tp)[0], value) if not isinstance(value, dict) else True
    if origin in (list, typing.List):
        return isinstance(value, list)
    if _is_model(tp):
        return isinstance(value, dict)
    return False


def _pydantic_error(exc: ValidationError, where: str) -> _Error:
    err = exc.errors()[0]
    path = where
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and not part[:1].isupper() and "[" not in part and "-" not in part:
            path += "." + part  # skip pydantic's union member tags (class names, "function-after[...]")
    if err["type"] == "missing":
        return _Error("missing_required_parameter", f"Missing required parameter: '{path}'.", path)
    return _Error("invalid_value", f"Invalid value for '{path}': {err['msg']}.", path)


def resolve_start(session: Any) -> dict:
    """Check a ``session.start``'s ``session`` and return the resolved config (defaults filled in); raises
    :class:`_Error` as described in the module docstring."""
    config_model, _, voices = _sdk()
    if not isinstance(session, dict):
        raise _Error("missing_required_parameter", "Missing required parameter: 'session'.", "session")
    found = unknown_field(config_model, session, "session")
    if found:
        raise _Error("unknown_parameter", f"Unknown parameter: '{found}'.", found)
    if not session.get("model"):
        raise _Error("missing_required_parameter", "Missing required parameter: 'session.model'.", "session.model")
    audio = session.get("audio") or {}
    fmt = audio.get("format") if isinstance(audio, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") in _RATES and fmt.get("rate") not in _RATES[fmt["type"]]:
        rates = " or ".join(str(r) for r in _RATES[fmt["type"]])
        raise _Error("invalid_value", f"Invalid 'session.audio.format.rate' for {fmt['type']}: expected {rates}.",
                     "session.audio.format.rate")
    voice = ((audio.get("output") or {}) if isinstance(audio, dict) else {}).get("voice")
    if voice is not None and not (isinstance(voice, dict) and isinstance(voice.get("id"), str)) and voice not in voices:
        raise _Error("forbidden", f"The voice '{voice}' is not available for this model.", "session.audio.output.voice")
    if isinstance(session.get("input"), list) and len(session["input"]) > MAX_INPUT_MESSAGES:
        raise _Error("invalid_value", f"'session.input' has {len(session['input'])} messages; at most "
                     f"{MAX_INPUT_MESSAGES} are allowed.", "session.input")
    try:
        config_model.model_validate(session)
    except ValidationError as exc:
        raise _pydantic_error(exc, "session") from None
    resolved = copy.deepcopy(session)
    blank = not (session.get("instructions") or "").strip()
    resolved["instructions"] = DEFAULT_INSTRUCTIONS if blank else session["instructions"]  # blank: server default
    resolved["audio"] = {"format": copy.deepcopy(fmt or DEFAULT_FORMAT),
                         "output": {"voice": copy.deepcopy(voice if voice is not None else DEFAULT_VOICE)}}
    resolved["delegation"] = copy.deepcopy(session.get("delegation") or {"type": "client"})
    resolved["input"] = copy.deepcopy(session.get("input") or [])
    resolved["store"] = bool(session.get("store"))
    return resolved


def apply_update(config: dict, session: Any) -> dict:
    """A ``session.update``'s ``session`` applied to ``config``: the new config (``config`` is left alone when
    the update is refused, with an :class:`_Error`)."""
    config_model, update_model, _ = _sdk()
    if not isinstance(session, dict):
        raise _Error("missing_required_parameter", "Missing required parameter: 'session'.", "session")
    for key in session:
        if key not in update_model.model_fields and key in config_model.model_fields:
            raise _Error("immutable_field_update", f"'session.{key}' cannot be changed after the session started.",
                         f"session.{key}")
    found = unknown_field(update_model, session, "session")
    if found:
        raise _Error("unknown_parameter", f"Unknown parameter: '{found}'.", found)
    try:
        update_model.model_validate(session)
    except ValidationError as exc:
        raise _pydantic_error(exc, "session") from None
    new = copy.deepcopy(config)
    if "triggers" in session:
        new["triggers"] = copy.deepcopy(session["triggers"])
    delegation = session.get("delegation")
    if delegation is not None:
        current = new.get("delegation") or {"type": "client"}
        if delegation.get("type") != current.get("type"):
            raise _Error("immutable_field_update", "The delegation mode cannot be changed after the session started.",
                         "session.delegation.type")
        merged = copy.deepcopy(current)
        for key, value in delegation.items():
            if key == "responses" and isinstance(value, dict):
                merged.setdefault("responses", {}).update(copy.deepcopy(value))
            else:
                merged[key] = copy.deepcopy(value)
        new["delegation"] = merged
    return new


def function_names(config: dict) -> list[str]:
    """The function tools the Responses backend may call (``delegation.responses.tools`` of type function)."""
    responses = (config.get("delegation") or {}).get("responses") or {}
    return [t["name"] for t in responses.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
