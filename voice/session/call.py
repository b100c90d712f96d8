"""The call session's state, and the small helpers every part of it uses; what it does lives in its mixins."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

import websockets
from django.conf import settings

from billing.services.gate import CallAllowance
from calls.services.lifecycle import Usage
from calls.services.recording import CallRecord
from voice.agent import AgentProfile
from voice.session.allowance import _Allowance
from voice.session.engine import VoiceEngine
from voice.session.events import _OpenAIEvents
from voice.session.lifecycle import _Lifecycle
from voice.session.live import LiveEngine
from voice.session.playback import _Playback
from voice.session.realtime import RealtimeEngine
from voice.session.reconnect import _Reconnect
from voice.session.shared import CallTransport, ItemAudio, ResponseState
from voice.session.shutdown import _Shutdown
from voice.session.tools import _Tools


ENGINES: dict[str, type[VoiceEngine]] = {"realtime": RealtimeEngine, "live": LiveEngine}


class CallSession(_Lifecycle, _OpenAIEvents, _Playback, _Tools, _Allowance, _Shutdown, _Reconnect):
    """One caller and one voice-model socket; its handlers are the mixins' (one module each), the model's protocol
    is its engine's (`voice.session.engine`)."""

    def __init__(self, *, call_id: int, business_id: int, transport: CallTransport, caller_number: str = "",
                 reply_channel: str = "", profile: AgentProfile | None = None,
                 max_seconds: int | None = None, allowance: CallAllowance | None = None) -> None:
        self.call_id = call_id
        self.caller_number = caller_number
        self.reply_channel = reply_channel  # where the supervisor's answers come back (channel layer)
        self.business_id = business_id
        self.transport = transport
        self.profile = profile
        self.max_seconds = max_seconds or settings.CALL_MAX_SECONDS  # then the agent ends the call
        self.t0 = time.monotonic()
        self.upstream: Any = None
        # Picked in start() once the business is loaded (its voice_engine, else settings.VOICE_ENGINE).
        self.engine: VoiceEngine = RealtimeEngine(self)
        self.ready = False
        self.starting = False  # the engine's session is being opened, and the caller's first audio is held
        self.finished = asyncio.Event()
        self.counted_live = False  # in the operator metrics' live calls, from start() until finish()
        self._finishing = False
        self._tasks: list[asyncio.Task] = []
        self.usage = Usage()
        self.record = CallRecord()
        self._flush_lock = asyncio.Lock()
        self._transcript_order = 0
        self._caller_items: dict[str, dict[str, Any]] = {}
        self.items: dict[str, ItemAudio] = {}
        self.pending_marks = 0
        self.responses: dict[str, ResponseState] = {}
        self.active_response: str | None = None
        self.dropped_responses: set[str] = set()
        self.speech_end_at: float | None = None  # monotonic time the caller's last turn ended
        # The silence server VAD waits for before it ends a turn, as the OpenAI session reports it (session.created,
        # then session.updated); until then, what we ask for. Turn latencies count from before that silence.
        self.vad_silence_ms = settings.VAD_SILENCE_MS
        self.speech_stopped_at: float | None = None
        self.after_playback: Callable[[], Awaitable[None]] | None = None
        self._after_playback_deadline: float | None = None
        self.bad_upstream_events = 0
        self.conversation: list[dict[str, str]] = []  # what was said, for the supervisor
        self.pending_supervisor: dict[str, asyncio.Task] = {}  # tool call id -> its deadline
        self.supervisor_asked_at: dict[str, float] = {}  # tool call id -> monotonic time of the hand-off
        self.response_create_pending: str | None = None  # instructions to send once no response is active
        # A response.create is on its way and its response.created has not arrived: until it does, a second one
        # would be refused, and "nothing is playing" is not yet true (a goodbye is coming).
        self.response_requested = False
        # The minutes left (free trial, hard cap, test-call quota): read at the start and every
        # CALL_ALLOWANCE_RECHECK_SECONDS off the audio path; the agent says goodbye and ends the call at the deadline.
        self.allowance_deadline: float | None = None  # monotonic; None: not capped
        self.allowance_reason = ""
        self._allowance_goodbye = False
        self._allowance_checked_at = 0.0
        if allowance is not None:  # read with the rest of the call's set-up: no separate check at the start
            self._apply_allowance(allowance, asked_at=self.t0)
        # The server is shutting down (voice/drain.py): the agent says the restart sentence, then hangs up.
        self.draining = False
        self.shutdown_said = False  # the restart sentence was spoken in full
        self._init_reconnect()  # OpenAI's socket lost mid-call: a new session, seeded (voice/session/reconnect.py)

    # --- small helpers ---------------------------------------------------------------------------

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def add_event(self, kind: str, **payload: Any) -> None:
        # Numbered when written, from the call's one sequence (the supervisor's events share it).
        event = {"offset_ms": self.now_ms(), "kind": kind, "payload": payload}
        self.record.events.append(event)
        self.transport.notify({"type": "event", **event})

    def reserve_transcript(self) -> int:
        self._transcript_order += 1
        return self._transcript_order

    def add_transcript(self, order: int, speaker: str, text: str, start_ms: int | None, end_ms: int | None,
                       interrupted: bool = False) -> None:
        entry = {"order": order, "speaker": speaker, "text": text, "start_ms": start_ms, "end_ms": end_ms,
                 "interrupted": interrupted}
        self.record.transcripts.append(entry)
        self.transport.notify({"type": "transcript", **entry})

    def use_engine(self, name: str) -> None:
        self.engine = ENGINES.get(name, RealtimeEngine)(self)

    async def request_speech(self, instructions: str) -> None:
        """Have the agent say something as soon as it may (whatever the engine)."""
        await self.engine.request_speech(instructions)

    async def send_upstream(self, event: dict[str, Any]) -> None:
        if self.reconnecting:  # sent once the new session is seeded
            self._held_events.append(event)
            return
        try:
            await self.upstream.send(json.dumps(event))
        except websockets.ConnectionClosed:
            pass  # the reader notices the closed socket and ends the call
