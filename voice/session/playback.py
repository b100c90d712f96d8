"""What the caller has heard (mixed into `CallSession`): echoed marks, barge-in, and actions (a hang-up, a
transfer) that wait for the agent's last words to finish playing."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from calls.models import CallEvent

CANCEL_EVENT_PREFIX = "barge_in_cancel_"  # event_id of our response.cancel, echoed in the error it may cause
PLAYBACK_WAIT_S = 20.0  # longest we wait for a goodbye to finish playing before hanging up anyway


class _Playback:
    """Marks, barge-in and the wait for playback."""

    def playback_marked(self, name: str) -> None:
        """The transport reports that the audio before mark `name` has been played (or cleared)."""
        if self.pending_marks > 0:
            self.pending_marks -= 1
        item_id, _, sent = name.rpartition(":")
        audio = self.items.get(item_id)
        if audio is not None and not audio.cleared:
            try:
                audio.played_ms = max(audio.played_ms, float(sent))
            except ValueError:
                pass

    async def _barge_in(self) -> None:
        """The caller talks over the agent: stop the reply still being generated, stop playback, and tell
        OpenAI how much of each interrupted item was actually heard."""
        talking = self.active_response
        if talking is not None:
            self.dropped_responses.add(talking)  # deltas already on their way are not played
            # With interrupt_response the server may have cancelled it already: then this one gets a harmless
            # `response_cancel_not_active`, which _on_error recognises by its event_id.
            await self.send_upstream({"type": "response.cancel", "response_id": talking,
                                      "event_id": CANCEL_EVENT_PREFIX + talking})
        await self.transport.clear_audio()
        for item_id, audio in self.items.items():
            if audio.cleared:
                continue
            if audio.response_id != talking and audio.played_ms >= audio.sent_ms - 0.5:
                continue  # an earlier reply, heard to the end
            audio.cleared = True
            if audio.sent_ms <= 0:
                continue  # no audio yet: nothing to truncate (OpenAI refuses it), nothing was heard
            # played_ms comes from echoed marks, sent_ms from what we forwarded: never more than was generated.
            heard = int(min(audio.played_ms, audio.sent_ms))
            await self.send_upstream({"type": "conversation.item.truncate", "item_id": item_id,
                                      "content_index": 0, "audio_end_ms": heard})
            self.add_event(CallEvent.Kind.BARGE_IN, item_id=item_id, heard_ms=heard, sent_ms=round(audio.sent_ms),
                           still_generating=audio.response_id == talking)
        self.after_playback = None  # a hang-up or transfer waits for the caller's new turn

    def _wait_for_playback(self, action: Callable[[], Awaitable[None]]) -> None:
        self.after_playback = action
        self._after_playback_deadline = time.monotonic() + PLAYBACK_WAIT_S

    async def _run_after_playback(self) -> None:
        action, self.after_playback = self.after_playback, None
        self._after_playback_deadline = None
        if action is not None:
            await action()

    def playback_drained(self) -> bool:
        return self.engine.playback_drained()

    async def check_playback(self) -> None:
        """Called by transports after each echoed mark: run a pending hang-up/transfer once all is heard."""
        if self.after_playback is not None and self.playback_drained():
            await self._run_after_playback()
