"""The OpenAI Realtime engine (GA protocol): a call session's socket to `/v1/realtime`, turn by turn.

Realtime's server VAD ends the caller's turns, the agent speaks in responses we ask for (`response.create`), a
barge-in cancels the reply and truncates what was not heard, and its only tools are end_call, transfer_to_human and
ask_supervisor (our supervisor on Celery). The handlers of its events live in `voice.session.events` and its
barge-in in `voice.session.playback` (mixed into `CallSession`); this module is what the session asks of it.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Awaitable, Callable

import websockets
from django.conf import settings

from voice.agent import greeting_response, session_update
from voice.session.engine import VoiceEngine
from voice.session.shared import close_quietly
from voice.session.shutdown import SHUTDOWN_PURPOSE, shutdown_instructions


async def open_openai_socket(url: str, timeout: float) -> Any:
    """A WebSocket to OpenAI with our key: the same options for both engines."""
    return await websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
        open_timeout=timeout, max_size=16 * 2**20, ping_interval=20, ping_timeout=20,
        # Base64 audio hardly compresses: per-message deflate would cost CPU on every frame for ~25% of a few kB/s.
        # Not offered, so never negotiated.
        compression=None)


class RealtimeEngine(VoiceEngine):
    name = "realtime"
    label = "OpenAI Realtime"

    def __init__(self, session: Any) -> None:
        super().__init__(session)
        # Bound once: looked up for every event, audio deltas included.
        self._handlers = {kind: functools.partial(handler, session) for kind, handler in session.HANDLERS.items()}

    @property
    def model(self) -> str:
        return settings.OPENAI_REALTIME_MODEL

    def handler(self, event_type: str) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
        return self._handlers.get(event_type)

    async def connect(self, *, timeout: float, resume: bool) -> Any:
        # The configuration (and, resuming, the transcript) follows in `begin` / `seed`.
        return await open_openai_socket(f"{settings.OPENAI_REALTIME_URL}?model={self.model}", timeout)

    async def begin(self) -> None:
        session = self.session
        await session.send_upstream(session_update(session.profile, session.transport.audio_format))
        session.response_requested = True
        await session.send_upstream(greeting_response(session.profile))

    def audio_frame(self, payload: str) -> str:
        return '{"type":"input_audio_buffer.append","audio":"' + payload + '"}'

    async def request_speech(self, instructions: str) -> None:
        await self.session._create_response(instructions)

    async def speak_shutdown(self, language: str) -> None:
        # Its response.done marks the sentence as said and hangs up after playback (`_on_response_done`).
        await self.session.send_upstream({"type": "response.create", "response": {
            "instructions": shutdown_instructions(language), "tool_choice": "none",
            "metadata": {"purpose": SHUTDOWN_PURPOSE}}})

    def forget_session(self) -> Any:
        session = self.session
        # The lost session's reply is gone with it; what it had not handed over is seeded (`seed`).
        unsent_outputs = [output for state in session.responses.values() for output in state.tool_outputs]
        session.responses.clear()
        # Its audio items are not in the new session: never truncated there (the caller's side keeps playing what
        # it has; its marks still come back).
        session.items.clear()
        session.dropped_responses.clear()
        session.active_response = None
        session.response_requested = False
        pending_instructions, session.response_create_pending = session.response_create_pending, None
        return unsent_outputs, pending_instructions

    async def seed(self, carried: Any) -> list[str]:
        unsent_outputs, pending_instructions = carried if carried is not None else ([], None)
        return await self.session._seed_new_session(unsent_outputs, pending_instructions)

    async def resume(self, instructions: str) -> None:
        self.session.response_requested = True
        await self.session.upstream.send(json.dumps({"type": "response.create",
                                                     "response": {"instructions": instructions}}))

    async def close_session(self) -> None:
        if self.session.upstream is not None:
            await close_quietly(self.session.upstream)

    def playback_drained(self) -> bool:
        session = self.session
        return session.pending_marks == 0 and session.active_response is None and not session.response_requested

    def quiet(self) -> bool:
        session = self.session
        return (session.active_response is None and not session.response_requested and session.pending_marks == 0
                and not session.caller_speaking and session.after_playback is None)

    def session_ends_at(self) -> float:
        # A Realtime session lasts OPENAI_SESSION_MAX_SECONDS from when it was opened.
        return self.session.session_started_at + settings.OPENAI_SESSION_MAX_SECONDS

