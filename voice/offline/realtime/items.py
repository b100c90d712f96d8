"""Conversation items: create, truncate, delete, retrieve (mixed into ``_Session``)."""

from __future__ import annotations

import copy
import math
from typing import Any

from voice.offline.realtime.protocol import _Error, _assistant_audio_tokens, _text_tokens
from voice.offline.realtime.script import Step, _fill_step


class _Conversation:
    """Conversation items of a :class:`~voice.offline.realtime.session._Session`."""

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
        if self.standin.echo_scripted and item_id == self.echo_item_id:
            # A barge-in over echoed audio: nothing of the script's to cut.
            entry["accepted"] = True
            await self.send({"type": "conversation.item.truncated", "item_id": item_id,
                             "content_index": content_index, "audio_end_ms": audio_end_ms})
            return
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
