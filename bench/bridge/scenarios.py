"""The three scenarios: steady (a warm process, calls set up and probed, then all stream at once), cold (a fresh
process, calls arriving as it first takes traffic) and burst (the same after one warm-up call), with the CPU, RSS,
per-core and run-queue samples around them."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bridge.calls import CallResult, LoadCall, Target
from bench.bridge.config import FINALIZE_TIMEOUT_S, SETUP_CONCURRENCY, SETUP_TIMEOUT_S, STOP_TIMEOUT_S
from bench.bridge.servers import (db_call_summary, db_wait_finalized, start_server, upstream_url, wait_accepting,
                                  wait_ready)
from bench.bridge.wire import FRAME_S
from bench.harness import (Proc, core_ticks, cpu_seconds, log_issues, percentile, rss_mb, runqueue_wait_s,
                           self_cpu_seconds)


@dataclass
class RunResult:
    kind: str
    calls: int
    seconds: float
    engine: str = "realtime"            # realtime | live: the voice engine (direct: the protocol spoken)
    scenario: str = "steady"            # steady | cold | burst
    arrival_s: float = 0.0              # cold/burst: the calls arrive evenly over this many seconds
    setup_p50: float | None = None      # cold/burst, ms: webhook (relay: connect) → the call's first echo
    setup_p99: float | None = None
    setup_max: float | None = None
    not_forwarded: int = 0              # cold/burst: frames sent before the call's first echo that never came back
    arrival_lag_max: float | None = None  # ms the load generator started a call after its scheduled arrival
    started_to_ready: float | None = None  # cold: s from starting the process to it accepting
    streamed: int = 0                   # cold/burst: calls that got as far as `start` (the server owes a record)
    # cold/burst, ms p50 / p99 of the set-up's parts: webhook answered, socket opened, `start` → first echo
    setup_parts: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    frames_sent: int = 0
    frames_received: int = 0
    rtt_p50: float | None = None
    rtt_p99: float | None = None
    rtt_max: float | None = None
    lag_p99: float | None = None
    duplicates: int = 0
    misrouted: int = 0
    foreign: int = 0
    marks: int = 0
    setup_failed: list[str] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)
    cpu_pct: float | None = None        # of one core, over the steady-state window
    rss_idle: float | None = None
    rss_steady: float | None = None
    measured: str = "server"            # whose CPU/RSS: server or stand-in
    loadgen_cpu_pct: float | None = None
    core_busy: dict[int, float] = field(default_factory=dict)  # % of each core used by processes (everyone's)
    core_irq: dict[int, float] = field(default_factory=dict)   # % in irq/softirq (mostly our loopback traffic)
    core_steal: dict[int, float] = field(default_factory=dict)  # % stolen by the hypervisor
    runqueue_pct: float | None = None   # measured process: % of the window spent waiting for a CPU
    standin_cpu_pct: float | None = None
    window_s: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    window_echoed_pct: float | None = None  # frames echoed in the CPU window / frames due in it (100 = keeping up)
    log_issues: list[str] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    stop_how: str = ""
    finalize_s: float | None = None     # our server: seconds after the last close until all calls were finalised
    error: str = ""
    added_p50: float | None = None
    added_p99: float | None = None

    @property
    def lost(self) -> int:
        return self.frames_sent - self.frames_received - self.not_forwarded

    @property
    def cpu_per_call(self) -> float | None:
        return None if self.cpu_pct is None or not self.calls else self.cpu_pct / self.calls

    @property
    def rss_per_call(self) -> float | None:
        if self.rss_idle is None or self.rss_steady is None or not self.calls:
            return None
        return (self.rss_steady - self.rss_idle) / self.calls


@dataclass
class Snapshot:
    """CPU counters at one moment: the measured process tree, the stand-in, the load generator, cores, run queue."""
    t: float
    measured: float | None
    standin: float | None
    loadgen: float
    cores: dict[int, list[int]]
    runqueue: float | None

    @classmethod
    def take(cls, measured_pid: int, standin_pid: int) -> "Snapshot":
        return cls(time.perf_counter(), cpu_seconds(measured_pid), cpu_seconds(standin_pid), self_cpu_seconds(),
                   core_ticks(), runqueue_wait_s(measured_pid))

    def fill(self, result: RunResult, before: "Snapshot") -> None:
        """Put the usage between `before` and this snapshot into result, as % of one core over that window."""
        span = self.t - before.t
        if span <= 0:
            return
        for core in before.cores.keys() & self.cores.keys():
            d = [b - a for a, b in zip(before.cores[core], self.cores[core])]
            if d[3] > 0:
                result.core_busy[core] = 100 * d[0] / d[3]
                result.core_irq[core] = 100 * d[1] / d[3]
                result.core_steal[core] = 100 * d[2] / d[3]
        if before.runqueue is not None and self.runqueue is not None:
            result.runqueue_pct = 100 * (self.runqueue - before.runqueue) / span
        result.window_s = span
        result.window = (before.t, self.t)
        if before.measured is not None and self.measured is not None:
            result.cpu_pct = 100 * (self.measured - before.measured) / span
        if before.standin is not None and self.standin is not None:
            result.standin_cpu_pct = 100 * (self.standin - before.standin) / span
        result.loadgen_cpu_pct = 100 * (self.loadgen - before.loadgen) / span


async def play_calls(target: Target, count: int, seconds: float, drain_s: float, measured_pid: int,
                     standin_pid: int, result: RunResult | None) -> list[CallResult]:
    """Set up `count` calls, then stream `seconds` of audio on all at once; samples CPU/RSS in steady state."""
    frames = max(1, int(round(seconds / FRAME_S)))
    calls = [LoadCall(target, i, frames) for i in range(count)]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def set_up(call: LoadCall) -> None:
        async with gate:
            try:
                await asyncio.wait_for(call.setup(time.monotonic() + SETUP_TIMEOUT_S), SETUP_TIMEOUT_S + 5)
            except Exception as exc:
                call.r.error = f"{type(exc).__name__}: {exc}"[:300]
                await call.close()

    await asyncio.gather(*(set_up(call) for call in calls))
    ready = [call for call in calls if not call.r.error]
    await asyncio.sleep(0.3)  # let late probe echoes and the setup bursts settle

    start = time.perf_counter() + 0.2
    # Calls are spread evenly over one 20 ms period, as independent callers would be.
    tasks = [asyncio.create_task(call.media(start + i * FRAME_S / max(1, len(ready)), drain_s))
             for i, call in enumerate(ready)]

    async def sample() -> None:
        if result is None:
            return
        warm = min(1.0, seconds / 5)
        await asyncio.sleep(max(0.0, start + warm - time.perf_counter()))
        before = Snapshot.take(measured_pid, standin_pid)
        await asyncio.sleep(max(0.0, start + seconds - time.perf_counter()))
        Snapshot.take(measured_pid, standin_pid).fill(result, before)
        result.rss_steady = rss_mb(measured_pid)

    sampler = asyncio.create_task(sample())
    # Bounded: the media phase lasts `seconds` plus the drain; the rest is slack for a struggling box.
    pending: set[asyncio.Task] = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=seconds + drain_s + STOP_TIMEOUT_S + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*(call.close() for call in calls if call.ws is not None and not call.stopping),
                         return_exceptions=True)
    try:
        await asyncio.wait_for(sampler, 10)
    except Exception:
        pass  # a missing sample shows up as n/a
    return [call.r for call in calls]


def summarise(result: RunResult, calls: list[CallResult]) -> None:
    rtts: list[float] = []
    lags: list[float] = []
    for call in calls:
        result.frames_sent += call.sent
        result.frames_received += call.received
        result.duplicates += call.duplicates
        result.misrouted += call.misrouted
        result.foreign += call.foreign
        result.marks += call.marks
        rtts.extend(call.rtts)
        lags.extend(call.lags)
        if call.error:
            result.setup_failed.append(f"call {call.index}: {call.error}")
        if call.closed_early:
            result.closed_early.append(f"call {call.index}: {call.closed_early}")
    t0, t1 = result.window
    if result.scenario == "steady" and t1 > t0:
        echoed = sum(1 for call in calls for at in call.recv_at if t0 <= at < t1)
        due = sum(1 for call in calls if not call.error) * (t1 - t0) / FRAME_S
        result.window_echoed_pct = 100 * echoed / due if due else None
    elif result.scenario != "steady":
        result.streamed = sum(1 for call in calls if call.streamed)
        setups, arrival_lags = [], []
        for call in calls:
            if call.setup_start:
                arrival_lags.append(call.arrival_lag)
            if call.first_echo:
                setups.append(call.first_echo - call.setup_start)
            # A call that never echoed never finished its set-up: all its unanswered frames count here too (and
            # the call as a set-up failure).
            cut = call.first_echo or math.inf
            result.not_forwarded += sum(1 for seq in range(call.frames)
                                        if call.send_t[seq] and not call.got[seq] and call.send_t[seq] < cut)
        setups.sort()
        if setups:
            result.setup_p50, result.setup_p99 = percentile(setups, 50) * 1000, percentile(setups, 99) * 1000
            result.setup_max = setups[-1] * 1000
        if arrival_lags:
            result.arrival_lag_max = max(arrival_lags) * 1000
        parts = {
            "webhook": [c.webhook_done - c.setup_start for c in calls if c.webhook_done],
            "socket": [c.start_sent - (c.webhook_done or c.setup_start) for c in calls if c.start_sent],
            "flow": [c.first_echo - c.start_sent for c in calls if c.first_echo and c.start_sent],
        }
        for name, values in parts.items():
            values.sort()
            if values:
                result.setup_parts[name] = (percentile(values, 50) * 1000, percentile(values, 99) * 1000)
    rtts.sort()
    lags.sort()
    if rtts:
        result.rtt_p50, result.rtt_p99 = percentile(rtts, 50) * 1000, percentile(rtts, 99) * 1000
        result.rtt_max = rtts[-1] * 1000
    if lags:
        result.lag_p99 = percentile(lags, 99) * 1000


def warm_up(target: Target, measured: int, standin: Proc, args: argparse.Namespace) -> None:
    """One call through every code path (views, session, websockets client), as a process that has served."""
    warm = run_async(play_calls(target, 1, 0.5, args.drain, measured, standin.pid, None))
    if warm[0].error or warm[0].received == 0:
        raise RuntimeError(f"warm-up call failed: {warm[0].error or warm[0].closed_early or 'no frames back'}")
    time.sleep(0.5)


def settle(result: RunResult, kind: str, calls: list[CallResult], sids: list[str]) -> list[str] | None:
    """Sum up the calls into result and, for our server, wait (bounded) until it has finalised the calls `sids` in
    the database, before it is stopped; returns the call sids to read back, or None for the relay."""
    summarise(result, calls)
    if kind not in ("uvicorn", "daphne"):
        return None
    result.finalize_s = db_wait_finalized(sids, FINALIZE_TIMEOUT_S)
    return sids


def finish_run(result: RunResult, kind: str, proc: Proc | None, log_path: Path, sids: list[str] | None) -> None:
    """Stop the server, scan its log, and read back the calls it wrote."""
    if proc is not None:
        result.stop_how = proc.stop()
        result.log_issues = log_issues(log_path)
    if kind in ("uvicorn", "daphne") and sids is not None:
        try:
            result.db = db_call_summary(sids)
        except Exception as exc:
            result.db = {f"db check failed: {exc}": 0}


def run_one(kind: str, count: int, args: argparse.Namespace, ctx: dict[str, Any],
            engine: str = "realtime") -> RunResult:
    """Steady state: warm process, calls set up SETUP_CONCURRENCY at a time and probed, then all stream at once."""
    result = RunResult(kind=kind, calls=count, seconds=args.seconds, engine=engine)
    standin: Proc = ctx["standin"]
    proc: Proc | None = None
    sids: list[str] | None = None
    log_path = ctx["log_dir"] / f"{kind}-{engine}-n{count}.log"
    try:
        if kind == "direct":
            target = Target(kind, ws_url=upstream_url(ctx["standin_port"], engine), engine=engine)
            measured = standin.pid
            result.measured = "stand-in"
        else:
            proc, target, port = start_server(kind, ctx, log_path, engine)
            wait_ready(kind, port, proc)
            measured = proc.pid
        warm_up(target, measured, standin, args)
        result.rss_idle = rss_mb(measured)
        calls = run_async(play_calls(target, count, args.seconds, args.drain, measured, standin.pid, result))
        sids = settle(result, kind, calls, [c.call_sid for c in calls if not c.error])
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        finish_run(result, kind, proc, log_path, sids)
    return result


async def arrive_calls(target: Target, count: int, args: argparse.Namespace, measured_pid: int, standin_pid: int,
                       result: RunResult, ready: Callable[[], Awaitable[None]] | None = None) -> list[CallResult]:
    """`count` calls arriving evenly over args.arrival seconds, each streaming from its `start` on; `ready()` is
    awaited first and the first call arrives the moment it returns. CPU is sampled over the run."""
    frames = max(1, int(round(args.call_seconds / FRAME_S)))
    calls = [LoadCall(target, i, frames) for i in range(count)]
    if target.kind in ("uvicorn", "daphne"):
        for call in calls:
            call.prepare_webhook()
    if ready is not None:
        await ready()
    before = Snapshot.take(measured_pid, standin_pid)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(call.arrive(t0 + i * args.arrival / count, args.drain))
             for i, call in enumerate(calls)]
    # Bounded: arrivals, a set-up that may time out, the call, its drain and close, and slack for a struggling box.
    _, pending = await asyncio.wait(tasks, timeout=args.arrival + SETUP_TIMEOUT_S + args.call_seconds + args.drain
                                    + STOP_TIMEOUT_S + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*(call.close() for call in calls if call.ws is not None and not call.stopping),
                         return_exceptions=True)
    Snapshot.take(measured_pid, standin_pid).fill(result, before)
    return [call.r for call in calls]


def run_arrivals(scenario: str, kind: str, count: int, args: argparse.Namespace, ctx: dict[str, Any],
                 engine: str = "realtime") -> RunResult:
    """Cold start (a fresh process, no warm-up) or burst (a fresh process after one warm-up call): `count` calls
    arriving evenly over args.arrival seconds."""
    result = RunResult(kind=kind, calls=count, seconds=args.call_seconds, scenario=scenario, arrival_s=args.arrival,
                       engine=engine)
    standin: Proc = ctx["standin"]
    proc: Proc | None = None
    sids: list[str] | None = None
    log_path = ctx["log_dir"] / f"{kind}-{engine}-{scenario}-n{count}.log"
    try:
        started = time.perf_counter()
        proc, target, port = start_server(kind, ctx, log_path, engine)
        if scenario == "cold":
            async def ready() -> None:
                await wait_accepting(kind, port, proc)
                result.started_to_ready = time.perf_counter() - started

            calls = run_async(arrive_calls(target, count, args, proc.pid, standin.pid, result, ready))
        else:
            wait_ready(kind, port, proc)
            warm_up(target, proc.pid, standin, args)
            calls = run_async(arrive_calls(target, count, args, proc.pid, standin.pid, result))
        sids = settle(result, kind, calls, [c.call_sid for c in calls if c.streamed])
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        finish_run(result, kind, proc, log_path, sids)
    return result


def run_async(coro: Any) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
