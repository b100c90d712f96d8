"""``session.update``: validating and merging a partial GA session config (mixed into ``_Session``)."""

from __future__ import annotations

import copy
import json
from typing import Any

from voice.offline.audio import FORMATS
from voice.offline.realtime.protocol import (
    _AUDIO_INPUT_KEYS, _AUDIO_OUTPUT_KEYS, DEFAULT_TURN_DETECTION, _SESSION_KEYS, _Error,
)


class _SessionConfig:
    """session.update handling of a :class:`~voice.offline.realtime.session._Session`."""

    async def on_session_update(self, event: dict) -> None:
        fail = self.fail
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
            if not isinstance(value, dict) or value.get("type") not in FORMATS:
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
