"""What a simulated call measured: per-turn latencies, barge-ins, marks, clears, protocol errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


_MAX_LOG = 500  # cap on list-type report entries (mark log, protocol errors)


@dataclass
class TurnReport:
    index: int
    barge_in: bool
    utterance_start_ms: float
    utterance_end_ms: float | None = None
    utterance_audio_ms: float = 0.0
    first_agent_audio_received_ms: float | None = None
    first_agent_audio_played_ms: float | None = None
    latency_received_ms: float | None = None  # end of caller speech → first agent audio received
    latency_played_ms: float | None = None  # end of caller speech → first agent audio played
    agent_audio_received_ms: float = 0.0
    agent_done_ms: float | None = None


@dataclass
class BargeIn:
    utterance: int
    at_ms: float
    agent_playing_since_ms: float | None
    agent_buffered_ms: float  # agent audio still queued for playback when the caller started talking
    clear_ms: float | None = None
    clear_after_ms: float | None = None  # barge-in start → server's `clear`
    talk_over_ms: float | None = None  # agent audio played between barge-in start and the clear


@dataclass
class CallReport:
    call_sid: str
    stream_sid: str
    account_sid: str
    from_number: str
    to_number: str
    webhook_url: str
    signed_url: str
    webhook_status: int | None = None
    webhook_ms: float | None = None
    twiml: dict[str, Any] = field(default_factory=dict)
    ws_url: str | None = None
    ws_handshake_status: int | None = None
    connected: bool = False
    connect_ms: float | None = None
    start_sent: bool = False
    greeting_latency_ms: float | None = None  # `start` sent → first agent audio played
    greeting_received_ms: float | None = None  # `start` sent → first agent audio received
    turns: list[TurnReport] = field(default_factory=list)
    agent_audio_received_ms: float = 0.0
    agent_audio_played_ms: float = 0.0
    agent_audio_cleared_ms: float = 0.0
    caller_speech_ms: float = 0.0
    media_frames_sent: int = 0
    max_send_lag_ms: float = 0.0  # how late the simulator sent a frame (its own health)
    server_messages: dict[str, int] = field(default_factory=dict)
    marks_sent_by_server: int = 0
    marks_echoed: int = 0
    marks_pending_at_end: int = 0
    mark_log: list[dict[str, Any]] = field(default_factory=list)
    clears_received: list[dict[str, Any]] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    dtmf_sent: list[dict[str, Any]] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    protocol_error_count: int = 0
    ended_by: str | None = None  # script | hang_up_after | max_duration | server | error
    closed_by: str | None = None  # caller | server
    close_code: int | None = None
    close_reason: str | None = None
    duration_ms: float | None = None  # media socket open → closed
    status_callback_status: int | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def failures(self) -> list[str]:
        """Why the call counts as failed; empty when it went fine."""
        out: list[str] = []
        if self.error:
            out.append(f"error: {self.error}")
        outcome = self.twiml.get("outcome")
        if outcome != "stream":
            out.append(f"twiml outcome is {outcome!r}, not a stream")
        elif not self.connected:
            out.append("media WebSocket never connected")
        if self.protocol_error_count:
            out.append(f"{self.protocol_error_count} protocol error(s)")
        if self.connected:
            normal = (1000, 1001, 1005) if self.closed_by == "caller" else (1000,)
            if self.close_code not in normal:
                out.append(f"socket closed by {self.closed_by} with code {self.close_code}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["failures"] = self.failures
        return _round_floats(data)


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 1)
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round_floats(v) for v in value]
    return value


class _AgentTurn:
    """Agent audio that arrives after a given moment (the greeting, or the reply to an utterance)."""

    __slots__ = ("first_recv", "first_pos", "first_played", "received_bytes", "turn")

    def __init__(self, turn: TurnReport | None) -> None:
        self.first_recv: float | None = None  # loop time
        self.first_pos: int | None = None  # queue offset of its first byte
        self.first_played: float | None = None  # loop time
        self.received_bytes = 0
        self.turn = turn
