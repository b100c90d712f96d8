"""Input audio: appends, server VAD (RMS-based), commits and transcriptions (mixed into ``_Session``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy

from websockets.exceptions import ConnectionClosed

from voice.offline.audio import FORMATS, audioop, to_lin16
from voice.offline.realtime.protocol import MIN_COMMIT_MS, _Error, _text_tokens, _user_audio_tokens
from voice.offline.realtime.script import Step


def decode_audio(event: dict) -> bytes:
    """The audio of an append event (Realtime ``input_audio_buffer.append``, Live ``session.input_audio.append``)."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise _Error("missing_required_parameter", "Missing required parameter: 'audio'.", "audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise _Error("invalid_value", "Invalid 'audio'. Expected base64-encoded audio data.", "audio") from None


def is_loud(data: bytes, fmt: str, threshold: float | None = None) -> bool:
    """The energy detector: speech when the chunk's RMS is at least ``1000 * threshold`` (default 0.5)."""
    return audioop.rms(to_lin16(data, fmt), 2) >= 1000 * (0.5 if threshold is None else float(threshold))


class _TurnCursor:
    """The script cursor shared by both sessions: which turn the next caller utterance consumes. Needs
    ``script``, ``turn_index``, ``utterances``, ``greeted`` and ``fill_wire``."""

    def next_turn(self, text: str | None = None) -> tuple[Step, str]:
        self.greeted = True
        self.utterances += 1
        if self.turn_index < len(self.script.turns):
            step = self.script.turns[self.turn_index]
            self.turn_index += 1
            transcript = text if text is not None else (self.fill_wire(step.caller) if step.caller
                                                        else f"(caller speech {self.utterances})")
        else:
            step = Step(text=self.script.default_agent)
            transcript = text if text is not None else f"(caller speech {self.utterances})"
        if step.text is None and step.tool is None:
            step = Step(text=self.script.default_agent, caller=step.caller)
        return step, transcript


class _InputAudio(_TurnCursor):
    """Input audio buffer and server VAD of a :class:`~voice.offline.realtime.session._Session`."""

    async def on_append(self, event: dict) -> None:
        data = decode_audio(event)
        fmt = self.input_format
        ms = len(data) / FORMATS[fmt][0]
        start_ms = self.input_ms
        self.input_ms += ms
        self.buffer_ms += ms
        self.record["input_audio_ms"] = int(self.input_ms)
        td = self.turn_detection
        if td is None or not data:
            return
        loud = is_loud(data, fmt, td.get("threshold"))
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
