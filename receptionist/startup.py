"""A web process loads and connects everything a call needs before it takes traffic.

Without this, the first requests after a start (every deploy, restart and scale-out) pay for Python imports,
the URL configuration (which pulls in the Polar SDK), and the first connections to PostgreSQL and Redis, on
the one event loop that also carries every live call's audio: a burst of calls on a fresh process stalled
every call's audio for seconds (issue 13). `prepare_process` does that work at ASGI lifespan start-up, which
uvicorn completes before it listens, so `/healthz/` answers only once it is done. Under a server without
lifespan (daphne in development), the first `/healthz/` runs it. A PostgreSQL or Redis that is down does not keep
the process from starting: `/healthz/` names what is failing (still 200) and retries it.

`LOG_LATE_IMPORTS=true` logs every module imported after start-up, with a stack: the test that keeps the live
path free of lazy imports runs a real call with it on.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

# Modules a call, its webhooks, its post-call work or its live updates import somewhere inside a function (the
# SDKs are imported lazily by their own packages, or by ours to keep management commands light).
LIVE_PATH_MODULES = (
    "receptionist.urls",
    "receptionist.routing",
    "voice.session",
    "voice.twilio_stream",
    "voice.browser_call",
    "voice.views",
    "voice.tasks",
    "voice.twilio_api",
    "calls.tasks",
    "calls.postcall.summary",
    "calls.postcall.notifications",
    "calls.postcall.webhooks",
    "calls.postcall.reaper",
    "calls.live",
    "billing.tasks",
    "billing.polar_client",
    "websockets.asyncio.client",
    "twilio.rest",
    "twilio.request_validator",
    "celery.app.amqp",
    "celery.events",  # sending a task
    "kombu.transport.redis",
    "django.http.multipartparser",
    "django.contrib.messages.storage.fallback",  # MessageMiddleware loads its storage on a request
)
# Each connection step gets this long; a dependency that is down does not stop the process from starting:
# `/healthz/` says what is missing and tries again.
CONNECT_TIMEOUT_S = 5.0
RETRY_EVERY_S = 2.0


class StartupState:
    def __init__(self) -> None:
        self.ready = False
        self.problems: list[str] = []
        self.seconds: float | None = None
        self.last_try = 0.0
        self.lock: asyncio.Lock | None = None
        self.recheck: asyncio.Task | None = None
        self.preparing: asyncio.Task | None = None


STATE = StartupState()


def import_live_path() -> None:
    """Import every module the live path needs and build the URL resolver (which imports every view)."""
    from django.urls import get_resolver

    for name in LIVE_PATH_MODULES:
        importlib.import_module(name)
    resolver = get_resolver()
    resolver.reverse_dict  # noqa: B018 - populating the resolver imports every urls module and view
    resolver.resolve("/voice/twilio/incoming/")
    # Signing (the stream token) loads its hash and compression modules on first use.
    from django.core import signing

    signing.loads(signing.dumps({"warm": True}, salt="startup", compress=True), salt="startup")
    # phonenumbers loads each country's metadata module on first use (a caller's number, a transfer number):
    # all of them is ~0.1 s and ~1.5 MB once.
    from phonenumbers.phonemetadata import PhoneMetadata

    PhoneMetadata.load_all()
    # Celery builds its task registry (importing its canvas, results and events modules) on the first
    # `apply_async`: the first post-call or supervisor task of the process.
    from receptionist.celery import app

    app.loader.import_default_modules()
    app.finalize(auto=True)
    app.amqp  # noqa: B018 - builds the task message machinery


def connect_database(*, first_connections: bool = True) -> None:
    """Open a database connection and use it; with a pool configured and `first_connections`, also wait for the
    pool's first connections (at start-up: later, live calls hold some of them, and one query says enough)."""
    from django.db import close_old_connections, connection

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        close_old_connections()  # back to the pool, which then counts it as ready
    pool = getattr(connection, "pool", None)
    if pool is not None and first_connections:  # all of them, not only this one: a burst of calls needs them
        # Inside the step's own time limit, so that `/healthz/` says how far the pool got.
        wait_for_pool(pool, timeout=CONNECT_TIMEOUT_S - 1)


def wait_for_pool(pool: Any, *, timeout: float) -> None:
    """Until the pool holds its first `min_size` connections. Not psycopg's `pool.wait()`: when that times out
    (PostgreSQL slow to start backends, or refusing more) it closes the pool for good, and every later query of the
    process fails. Here a timeout only reports it; the pool stays open and goes on growing."""
    deadline = time.monotonic() + timeout
    while True:
        stats = pool.get_stats()
        if stats["pool_available"] >= pool.min_size:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the connection pool has {stats['pool_available']} of its first {pool.min_size} "
                               "connections")
        time.sleep(0.02)


async def start_db_threads() -> None:
    """Make a pool of DB_THREADS threads the event loop's default executor (where `in_db_pool` and
    `asyncio.to_thread` run) and start every thread now: left to itself, the executor starts them one by one as
    the first burst of calls arrives, on a default of only cores + 4."""
    loop = asyncio.get_running_loop()
    count = settings.DB_THREADS
    executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="db")
    loop.set_default_executor(executor)
    # Each task holds its thread until all are running, so each submit starts a new one.
    everyone_running = threading.Barrier(count)
    await asyncio.gather(*(loop.run_in_executor(None, everyone_running.wait, CONNECT_TIMEOUT_S)
                           for _ in range(count)))


def connect_broker() -> None:
    """With Redis, open the Celery producer connection that `apply_async` would open on a call's first tool."""
    if not settings.REDIS_URL:
        return
    from receptionist.celery import app

    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=1)


async def connect_channel_layer() -> None:
    """Import the channel layer's backend and connect it (channels-redis opens its pool on first use)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    # A group nobody is in: the send reaches Redis and costs nothing.
    await layer.group_send("startup-check", {"type": "startup.check"})


async def prepare_process() -> None:
    """Load everything a call needs and open its connections. Idempotent. Raises only when our own code cannot
    be imported: a broken release should fail to start, not start half-loaded.

    The process is ready once this has run, even with PostgreSQL or Redis unreachable: that outage is every
    process's, and taking them all out of the load balancer would also take away the Twilio fallback URL and the
    calls that still work without Redis. `/healthz/` reports the connections that failed and tries them again."""
    if STATE.ready:
        return
    if STATE.lock is None:
        STATE.lock = asyncio.Lock()
    async with STATE.lock:
        if STATE.ready:
            return
        started = time.monotonic()
        await start_db_threads()
        # In a thread: the event loop stays free for whatever is already connected (e.g. daphne's first page).
        await asyncio.to_thread(import_live_path)
        await check_connections()
        # Everything loaded so far lives as long as the process. Frozen, the garbage collector never walks it
        # again: a full collection over it (~250,000 objects, 0.1 s or more) would stall every live call's audio.
        gc.collect()
        gc.freeze()
        STATE.seconds = time.monotonic() - started
        STATE.ready = True
        if STATE.problems:
            log.warning("Start-up: ready after %.2f s, but without %s", STATE.seconds, "; ".join(STATE.problems))
        else:
            log.info("Start-up: ready to take calls after %.2f s", STATE.seconds)
        if settings.LOG_LATE_IMPORTS:
            watch_late_imports()


async def check_connections() -> list[str]:
    """Open (or check) the database, channel-layer and broker connections; what failed, also in STATE."""
    from voice.session import in_db_pool

    STATE.last_try = time.monotonic()
    steps: list[tuple[str, Any]] = [
        ("database", in_db_pool(connect_database)(first_connections=not STATE.ready)),
        ("channel layer", connect_channel_layer()),
        ("task broker", asyncio.to_thread(connect_broker)),
    ]
    results = await asyncio.gather(*(asyncio.wait_for(step, CONNECT_TIMEOUT_S) for _, step in steps),
                                   return_exceptions=True)
    STATE.problems = [f"{name}: {type(result).__name__}: {result}"[:300]
                      for (name, _), result in zip(steps, results) if isinstance(result, BaseException)]
    return STATE.problems


async def health() -> list[str]:
    """For `/healthz/`: prepare the process if no lifespan start-up did; then the connections that were failing
    at the last check. While any is, it is checked again in the background (at most every RETRY_EVERY_S), so a
    probe never waits for a connection timeout."""
    if not STATE.ready:
        # A task of its own: a probe that gives up (a client timeout cancels its request) must not cancel it.
        if STATE.preparing is None or STATE.preparing.done():
            STATE.preparing = asyncio.create_task(prepare_process(), name="startup-prepare")
        await asyncio.shield(STATE.preparing)
    elif STATE.problems and time.monotonic() - STATE.last_try >= RETRY_EVERY_S \
            and (STATE.recheck is None or STATE.recheck.done()):
        STATE.last_try = time.monotonic()
        STATE.recheck = asyncio.create_task(recheck_connections(), name="startup-recheck")
    return STATE.problems


async def recheck_connections() -> None:
    try:
        if not await check_connections():
            log.info("Start-up: every connection works again")
    except Exception:  # never an unretrieved task exception; the next probe tries again
        log.exception("Checking the connections failed")


_watching = False


def watch_late_imports() -> None:
    """Log each module imported from now on, with where it was imported from (an audit hook, never removed:
    only switched on by LOG_LATE_IMPORTS, for tests and for operators hunting a stall)."""
    global _watching
    if _watching:
        return
    _watching = True
    local = threading.local()

    def on_audit(event: str, args: tuple) -> None:
        if event != "import" or getattr(local, "busy", False):
            return
        name = args[0]
        if not isinstance(name, str) or name in sys.modules:
            return
        local.busy = True  # logging may itself import (e.g. a formatter's first use)
        try:
            frames = [frame for frame in traceback.extract_stack(limit=60)[:-1] if "<frozen" not in frame.filename]
            stack = "".join(traceback.format_list(frames[-12:]))
            log.warning("Late import after start-up: %s (thread %s)\n%s", name, threading.current_thread().name,
                        stack)
        finally:
            local.busy = False

    sys.addaudithook(on_audit)


async def lifespan(scope: dict, receive: Any, send: Any) -> None:
    """The ASGI lifespan protocol (uvicorn): prepare the process, then install the SIGTERM drain of live calls
    (voice/drain.py). uvicorn listens only after start-up completes."""
    from receptionist import metrics as operator_metrics
    from voice.drain import install_sigterm_drain

    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await prepare_process()
            if install_sigterm_drain():
                log.info("Live calls drain for up to %s s on SIGTERM", settings.CALL_DRAIN_SECONDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Its live-call gauge leaves the sum the other processes' /metrics show.
            operator_metrics.process_exited()
            await send({"type": "lifespan.shutdown.complete"})
            return
