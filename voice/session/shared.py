"""What every part of a call session uses: the caller's side it talks to (`CallTransport`), the state it keeps per
agent item and per response, the database hop, and the size of a base64 payload."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from channels.db import DatabaseSyncToAsync


def in_db_pool(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a call's database writes on the shared thread pool rather than the one thread-sensitive thread,
    so a hundred calls ending together are written in parallel (connections are still closed after)."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


class CallTransport(Protocol):
    """What a session needs from the caller's side (Twilio media stream or browser socket)."""

    audio_format: dict[str, Any]
    bytes_per_ms: int

    async def send_audio(self, payload: str) -> None: ...
    async def send_mark(self, name: str) -> None: ...
    async def clear_audio(self) -> None: ...
    async def hang_up(self) -> None: ...
    async def transfer(self, number: str) -> None: ...
    async def fallback(self, message: str, *, language: str, transfer_to: str) -> None: ...
    async def close(self) -> None: ...

    def notify(self, event: dict[str, Any]) -> None:
        """A transcript entry or call event as it is recorded, for a caller's side that shows the call live
        (the browser test call). Must return at once: it is called from the session's event handlers."""


@dataclass
class ItemAudio:
    """Agent audio of one conversation item: how much we forwarded and how much the caller has heard."""

    response_id: str
    order: int
    started_ms: int
    sent_ms: float = 0.0
    played_ms: float = 0.0
    cleared: bool = False
    transcript: str = ""


@dataclass
class ResponseState:
    response_id: str
    spoke: bool = False
    tool_outputs: list[dict[str, Any]] = field(default_factory=list)
    follow_up: str | None = None  # instructions for the response we ask for after this one


def b64_len_to_bytes(payload: str) -> int:
    """Decoded size of a base64 string, without decoding it."""
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return len(payload) * 3 // 4 - padding
