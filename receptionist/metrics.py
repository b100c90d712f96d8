"""Operator metrics, in Prometheus' text format at `/metrics` (receptionist/metrics_endpoint.py).

Every metric is defined here, and every place that updates one calls a function of this module, so the names
and labels live in one file. Updating a metric is a few in-memory writes (in multi-process mode to a memory-mapped
file) under the library's lock, held for microseconds: no database, no network, no I/O to wait for, so the audio
path may call these. The frame-drop counters are looked up once, here, so a drop only adds to a number.

Several web and worker processes on one machine share PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process
mode): each writes its own files there, and any web process's `/metrics` adds them all up. The library reads the
variable when it is imported, so it must be set in the processes' environment (not only in settings). Unset, a
process shows only its own metrics (one process: `make run`).
"""

from __future__ import annotations

import atexit
import os

from django.conf import settings

MULTIPROC_DIR = settings.PROMETHEUS_MULTIPROC_DIR
if not MULTIPROC_DIR:
    # Set but empty (an environment copied from .env.example): the library would still switch to multi-process
    # mode, on its mere presence, and write its files into the working directory.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge,  # noqa: E402
                               Histogram, generate_latest, multiprocess)

if MULTIPROC_DIR:
    # The library writes its first file as soon as a metric below is defined; a missing folder would stop the
    # process from starting. Creating it is harmless; emptying it is the deploy's job (README).
    os.makedirs(MULTIPROC_DIR, exist_ok=True)

LIVE_CALLS = Gauge(
    "receptionist_live_calls", "Calls with a live session (a caller on the line), across the web processes.",
    # Summed over the processes still running: a process that exited is marked dead and drops out.
    multiprocess_mode="livesum")
CALLS = Counter(
    "receptionist_calls", "Calls finalised, by final status and end reason (how the call ended).",
    ["status", "end_reason"])
CALL_OUTCOMES = Counter(
    "receptionist_call_outcomes",
    "Calls summarised after they ended, by outcome (calls/outcomes.py: booked, answered, message_taken, ...; "
    "none when the summary failed and no tool proved one).", ["outcome"])
OPENAI_RECONNECTS = Counter(
    "receptionist_openai_reconnects", "New OpenAI sessions opened after one was lost mid-call.", ["result"])
OPENAI_RENEWALS = Counter(
    "receptionist_openai_renewals", "OpenAI sessions replaced before their time cap.", ["result"])
FALLBACKS = Counter(
    "receptionist_fallbacks",
    "Callers who got the fallback, by what they got and by whom: the call session when the model was gone, or "
    "Twilio's fallback URL when our incoming-call webhook failed.", ["action", "by"])
TURN_LATENCY = Histogram(
    "receptionist_turn_latency_seconds",
    "From the end of a caller's turn to the agent's first audio (the call's `latency` events).",
    buckets=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0))
SUPERVISOR_ROUND_TRIP = Histogram(
    "receptionist_supervisor_round_trip_seconds",
    "From the agent handing a request to the supervisor to its answer reaching the call; result is ok, failed "
    "(it answered with an error) or late (after the call stopped waiting).",
    ["result"], buckets=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0))
SUPERVISOR_QUEUE_WAIT = Histogram(
    "receptionist_supervisor_queue_wait_seconds",
    "From a supervisor request being queued to a worker starting on it (wall clocks of two processes).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
TOKENS = Counter(
    "receptionist_tokens",
    "Model tokens of finalised calls and supervisor runs, by kind; the kinds do not overlap (cached input is "
    "not also counted as input), so their sum is every token.", ["kind"])
COST_USD = Counter(
    "receptionist_cost_usd", "What those tokens cost, in US dollars (the price tables in settings), by kind.",
    ["kind"])
FRAMES_DROPPED = Counter(
    "receptionist_frames_dropped",
    "Frames from the caller's side that were not passed on, by reason.", ["reason"])

# Why a frame from the caller's side is not passed on to the model.
DROP_MALFORMED = "malformed"  # not a frame of the protocol (bad JSON, bad base64, unknown event)
DROP_OTHER_STREAM = "other_stream"  # a Twilio frame naming another call's stream
DROP_OVERSIZED = "oversized"  # a frame far too big (the socket is closed)
DROP_NOT_READY = "not_ready"  # caller audio before the agent is connected (the caller still hears the ring)
DROP_TOO_FAST = "too_fast"  # a browser sending audio faster than real time
DROP_HOLD_FULL = "reconnect_hold_full"  # held during a reconnect, and pushed out by newer audio
DROP_UPSTREAM_CLOSED = "upstream_closed"  # the OpenAI socket had closed under it
DROP_REASONS = (DROP_MALFORMED, DROP_OTHER_STREAM, DROP_OVERSIZED, DROP_NOT_READY, DROP_TOO_FAST, DROP_HOLD_FULL,
                DROP_UPSTREAM_CLOSED)
# The children, looked up once: the audio path then only adds to a number.
_DROPPED = {reason: FRAMES_DROPPED.labels(reason=reason) for reason in DROP_REASONS}


def call_started() -> None:
    LIVE_CALLS.inc()


def call_ended() -> None:
    LIVE_CALLS.dec()


def call_finalized(*, status: str, end_reason: str) -> None:
    CALLS.labels(status=status, end_reason=end_reason).inc()


def call_summarized(*, outcome: str) -> None:
    CALL_OUTCOMES.labels(outcome=outcome or "none").inc()


def tokens_used(*, tokens: dict[str, int], cost_usd: dict[str, float]) -> None:
    """Tokens and their cost by kind (each kind's names as the caller gives them, e.g. `output_audio`)."""
    for kind, count in tokens.items():
        if count:
            TOKENS.labels(kind=kind).inc(count)
    for kind, cost in cost_usd.items():
        if cost:
            COST_USD.labels(kind=kind).inc(cost)


def openai_reconnected(*, ok: bool) -> None:
    OPENAI_RECONNECTS.labels(result="succeeded" if ok else "failed").inc()


def openai_renewed(*, ok: bool) -> None:
    OPENAI_RENEWALS.labels(result="succeeded" if ok else "failed").inc()


def fallback_taken(action: str, *, by: str = "session") -> None:
    """`action`: what the caller got (transfer, voicemail; a browser test call a notice), as the fallback site
    names it; `by`: the session, or `twilio_fallback_url`."""
    FALLBACKS.labels(action=action, by=by).inc()


def turn_latency(seconds: float) -> None:
    TURN_LATENCY.observe(max(0.0, seconds))


def supervisor_round_trip(seconds: float, *, result: str) -> None:
    SUPERVISOR_ROUND_TRIP.labels(result=result).observe(max(0.0, seconds))


def supervisor_queue_wait(seconds: float) -> None:
    # Clocks of two machines: a slightly fast worker clock must not make a negative wait.
    SUPERVISOR_QUEUE_WAIT.observe(max(0.0, seconds))


def frame_dropped(reason: str, count: int = 1) -> None:
    _DROPPED[reason].inc(count)


def render() -> tuple[bytes, str]:
    """The text a scrape gets, and its content type: every process's metrics in multi-process mode, else this
    process's (with the library's process and Python metrics)."""
    if MULTIPROC_DIR:
        # A fresh registry per scrape, as the library asks: the collector reads the files as they are now.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_exited(pid: int | None = None) -> None:
    """A process is going away: its live-call gauge leaves the sum (its counters stay: they are totals). Called
    by uvicorn's lifespan shutdown and Celery's shutdown signals; again at exit, which does no harm."""
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(pid or os.getpid(), path=MULTIPROC_DIR)


if MULTIPROC_DIR:
    # Any other process that exits cleanly (daphne in development, a management command) leaves the sums too.
    atexit.register(process_exited)
