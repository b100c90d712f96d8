"""Responses: starting and cancelling them, and one response streaming its audio, text and tool calls."""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import math
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable

from websockets.exceptions import ConnectionClosed

from voice.offline.audio import FORMATS, espeak_audio, tone_audio
from voice.offline.realtime.protocol import (
    _Error, _assistant_audio_tokens, _cached_tokens, _call_tokens, _prompt_text_tokens, _text_tokens,
)
from voice.offline.realtime.script import Step
from voice.offline.realtime.wire import verbatim_request

if TYPE_CHECKING:
    from voice.offline.realtime.server import RealtimeStandin
    from voice.offline.realtime.session import _Session

log = logging.getLogger("voice.offline.realtime")


async def speech_audio(standin: RealtimeStandin, text: str, fmt: str) -> bytes:
    """The audio of a spoken text in ``fmt``: espeak-ng's voice with ``audio="espeak"`` (when installed), else a
    tone as long as the text."""
    audio = await espeak_audio(text, fmt) if standin.audio == "espeak" else None
    return audio if audio is not None else tone_audio(text, fmt)


async def paced_speech(standin: RealtimeStandin, audio: bytes, bytes_per_ms: int, words: list[str],
                       sleep: Callable[[float], Awaitable[None]]) -> AsyncIterator[tuple[bytes, int, str | None]]:
    """Cut ``audio`` into ``chunk_ms`` chunks paced ``speed`` times faster than real time (``speed`` 0: unpaced,
    but the receive loop still runs between chunks). Yields ``(chunk, audio ms so far, transcript piece or None)``:
    the words are spread over the audio in proportion, so the transcript keeps up with it."""
    step_bytes = bytes_per_ms * standin.chunk_ms
    total_ms = len(audio) // bytes_per_ms
    speed = standin.speed
    emitted_words = 0
    audio_ms = 0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for offset in range(0, len(audio), step_bytes):
        if offset:
            await sleep(t0 + audio_ms / 1000 / speed - loop.time() if speed > 0 else 0)
        chunk = audio[offset:offset + step_bytes]
        audio_ms += len(chunk) // bytes_per_ms
        target = math.ceil(len(words) * audio_ms / total_ms) if total_ms else len(words)
        piece = None
        if target > emitted_words:
            piece = " ".join(words[emitted_words:target]) + (" " if target < len(words) else "")
            emitted_words = target
        yield chunk, audio_ms, piece


class _Responses:
    """Response lifecycle of a :class:`~voice.offline.realtime.session._Session`."""

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
        text = _prompt_text_tokens(self.config.get("instructions"), self.config.get("tools"))
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
        limit = self.fail.get("drop_after_responses")
        if limit is not None and self.responses_done >= int(limit):
            self.abort()



class _Cancelled(Exception):
    """Raised inside a response run at a checkpoint once a cancellation was requested."""


class _Interruptible:
    """Cooperative cancellation of a paced task: :meth:`request_cancel` sets a flag and wakes the pacing sleep; the
    task notices it at its next checkpoint (:meth:`_check`, or after each :meth:`_sleep`) as :class:`_Cancelled`."""

    cancel_reason: str | None = None
    _sleeper: asyncio.Future | None = None

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


class _ResponseRun(_Interruptible):
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
                    await self._speak(s.fill_wire(step.text, verbatim_request(self.params.get("instructions"))))
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
        audio = await speech_audio(s.standin, text, self.fmt)
        self._check()
        meta = s.meta.get(item["id"]) if self.in_conversation else None
        if meta is not None:
            meta["audio"] = True
        s.audio_produced = True
        by_item = s.record["audio_ms_by_item"]
        async for chunk, audio_ms, piece in paced_speech(s.standin, audio, FORMATS[self.fmt][0], words, self._sleep):
            await s.send({"type": "response.output_audio.delta", **base,
                          "delta": base64.b64encode(chunk).decode("ascii")})
            self.audio_ms = audio_ms
            by_item[item["id"]] = self.audio_ms
            if meta is not None:
                meta["audio_ms"] = self.audio_ms
                meta["audio_tokens"] = _assistant_audio_tokens(self.audio_ms)
            if piece is not None:
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
        args = s.fill_wire_arguments(tool["arguments"])
        base = {"response_id": self.id, "item_id": item["id"], "output_index": index, "call_id": call_id}
        third = max(1, math.ceil(len(args) / 3))
        for start in range(0, len(args), third):
            await s.send({"type": "response.function_call_arguments.delta", **base, "delta": args[start:start + third]})
        await s.send({"type": "response.function_call_arguments.done", **base, "name": tool["name"], "arguments": args})
        item["arguments"] = args
        item["status"] = "completed"
        tokens = _call_tokens(args)
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
        cached = _cached_tokens(self.s.prev_prompt_tokens, total_in)
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
