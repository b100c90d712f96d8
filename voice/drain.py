"""Deploys without cut calls: on SIGTERM the web process drains its live calls before uvicorn shuts down.

uvicorn (0.54) handles SIGTERM by closing every WebSocket at once with 1012 (`Server.shutdown` calls each
connection's `shutdown()`), and sends the lifespan `shutdown` event only after that, so the application cannot
wait for that event to start draining. Instead, at lifespan startup we put our own SIGTERM handler in front of
uvicorn's. The first SIGTERM:

1. refuses new call sockets (a Twilio media stream is closed with 1012, so Twilio goes on with the TwiML after
   `<Connect>`; a browser test call is closed with 1012 too);
2. asks every live call to end politely: the agent finishes what it is saying (and a lookup in flight), tells
   the caller the `server_restart` sentence in the business's language, and hangs up;
3. waits at most CALL_DRAIN_SECONDS, then ends whatever is still live (hung up, recorded as a server shutdown);
4. hands the signal to uvicorn, which stops listening and closes what is left (dashboards) within its
   --timeout-graceful-shutdown (the Procfile's; keep CALL_DRAIN_SECONDS below it).

A second SIGTERM goes to uvicorn at once. Servers without lifespan (daphne in development) do not drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from voice.session import CallSession

log = logging.getLogger(__name__)

# How long a call still live at the end of the drain gets to be hung up and written.
FORCED_END_S = 4.0


class LiveCalls:
    """The call sessions this process runs, and whether it is shutting down."""

    def __init__(self) -> None:
        self.sessions: set[CallSession] = set()
        self.draining = False

    def add(self, session: CallSession) -> None:
        self.sessions.add(session)

    def discard(self, session: CallSession) -> None:
        self.sessions.discard(session)


LIVE_CALLS = LiveCalls()


def draining() -> bool:
    """The process is shutting down: open no new calls."""
    return LIVE_CALLS.draining


async def drain_live_calls(bound_s: float) -> None:
    """Ask every live call to end politely, wait at most `bound_s`, then end the rest."""
    LIVE_CALLS.draining = True
    sessions = [session for session in LIVE_CALLS.sessions if not session.finished.is_set()]
    if not sessions:
        log.info("Shutting down: no live calls to drain")
        return
    log.warning("Shutting down: draining %d live call(s), for at most %.0f s", len(sessions), bound_s)
    started = time.monotonic()
    for session in sessions:
        session.start_shutdown()
    waits = [asyncio.ensure_future(session.finished.wait()) for session in sessions]
    try:
        await asyncio.wait(waits, timeout=bound_s)
    finally:
        for wait in waits:
            wait.cancel()
    leftovers = [session for session in sessions if not session.finished.is_set()]
    if leftovers:
        log.warning("Drain time is up: ending %d call(s) that are still live", len(leftovers))
        ends = [asyncio.ensure_future(session.end_for_shutdown()) for session in leftovers]
        await asyncio.wait(ends, timeout=FORCED_END_S)
    log.warning("Drained %d call(s) in %.1f s", len(sessions), time.monotonic() - started)


def install_sigterm_drain() -> bool:
    """Put the drain in front of the server's own SIGTERM handler. True if installed.

    Only in the main thread (where signal handlers live) and only over a Python handler to chain to (uvicorn's
    `Server.handle_exit`): under anything else SIGTERM keeps its usual meaning."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        log.info("No server SIGTERM handler to chain to: live calls will not be drained on SIGTERM")
        return False
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()

    def hand_to_server(sig: int) -> None:
        previous(sig, None)

    async def drain_then_exit(sig: int) -> None:
        try:
            await drain_live_calls(settings.CALL_DRAIN_SECONDS)
        except Exception:
            log.exception("Draining live calls failed; shutting down anyway")
        finally:
            hand_to_server(sig)

    def start_drain(sig: int) -> None:
        task = loop.create_task(drain_then_exit(sig), name="drain-live-calls")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_sigterm(sig: int, frame: Any) -> None:
        if LIVE_CALLS.draining or settings.CALL_DRAIN_SECONDS <= 0:
            previous(sig, frame)  # a second SIGTERM, or draining switched off: the server's own shutdown now
            return
        LIVE_CALLS.draining = True  # at once, so no call opens between the signal and the drain task
        loop.call_soon_threadsafe(start_drain, sig)

    signal.signal(signal.SIGTERM, on_sigterm)
    return True
