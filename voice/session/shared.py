"""What every part of a call session uses: the caller's side it talks to (`CallTransport`), the state it keeps per
agent item and per response, the database hop, and the size of a base64 payload."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from channels.db import DatabaseSyncToAsync
from django.conf import settings


def in_db_pool(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a call's database writes on the shared thread pool rather than the one thread-sensitive thread,
    so a hundred calls ending together are written in parallel (connections are still closed after)."""
    return DatabaseSyncToAsync(func, thread_sensitive=False)


_io_executor: ThreadPoolExecutor | None = None
_io_executor_lock = threading.Lock()


def in_io_threads(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """Run a blocking call to an outside service (Twilio's REST API, the task broker; embedded, the supervisor
    task itself) on IO_THREADS threads of its own. The database hops' threads are few (DB_THREADS: more of them
    only fight over the GIL with the event loop), so a slow or unreachable service must never hold one: Twilio
    taking its 10 s timeout would stall every call's set-up and writes in the process."""
    global _io_executor
    with _io_executor_lock:
        if _io_executor is None:
            _io_executor = ThreadPoolExecutor(max_workers=settings.IO_THREADS, thread_name_prefix="io")
    # Database-aware like in_db_pool: the embedded supervisor task uses the ORM, and its connection is closed after.
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_io_executor)


class CallTransport(Protocol):
    """What a session needs from the caller's side (Twilio media stream or browser socket)."""

    audio_format: dict[str, Any]
    bytes_per_ms: int

    async def send_audio(self, payload: str) -> None: ...
    async def send_mark(self, name: str) -> None: ...
    async def clear_audio(self) -> None: ...
    async def hang_up(self) -> None: ...
    async def transfer(self, number: str) -> None: ...
    async def fallback(self, *, action: str, language: str, transfer_to: str) -> str:
        """The model is gone: an apology, then `action` ("voicemail", or "transfer" to `transfer_to`). Returns what
        the caller got ("voicemail", "transfer", or "notice" where the transport can do neither)."""
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


async def close_quietly(upstream: Any, timeout: float = 2.0) -> None:
    """Close an OpenAI socket without waiting long or raising: the caller is waiting on what comes next."""
    try:
        await asyncio.wait_for(upstream.close(), timeout=timeout)
    except Exception:
        pass


def b64_len_to_bytes(payload: str) -> int:
    """Decoded size of a base64 string, without decoding it."""
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return len(payload) * 3 // 4 - padding
