"""The timed hand-offs, made exactly as the call session makes them, the worker's own record of each, and the
same loop in embedded mode (a child process without REDIS_URL)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, cpu_seconds, fmt, percentile, self_cpu_seconds
from bench.supervisor.config import (CHILD_TIMEOUT_S, CONVERSATION, HANDOFF_TIMEOUT_S, MARK,
                                     MAX_CONSECUTIVE_FAILURES, PY, REQUEST)
from bench.supervisor.control import enqueue_empty
from bench.supervisor.setup import django_setup

SCRIPT = REPO / "bench" / "supervisor_dispatch.py"  # runs the embedded child (`--_embedded CALL_ID`)


def handoff_kwargs(call_id: int, label: str, index: int, channel: str) -> dict[str, Any]:
    # The same keys and shapes as CallSession._dispatch_supervisor builds.
    return {"call_id": call_id, "tool_call_id": f"call_bench{label}{index:05d}", "reply_channel": channel,
            "request": REQUEST.format(label=label, index=index), "conversation": CONVERSATION[-30:]}


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float | None]:
    snap: dict[str, float | None] = {"bench": self_cpu_seconds()}
    snap.update({name: cpu_seconds(pid) for name, pid in pids.items()})
    return snap


async def handoff_loop(call_id: int, label: str, count: int, warmup: int, gap_ms: float,
                       progress: bool, empty: bool = False, pids: dict[str, int] | None = None) -> dict[str, Any]:
    """Sequential hand-offs (one caller waiting at a time); returns the samples, failures and the CPU time per
    timed hand-off of this process and of `pids` (from the end of the warm-up to the end)."""
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from voice.session import enqueue_supervisor

    enqueue = enqueue_empty if empty else enqueue_supervisor

    layer = get_channel_layer()
    channel = await layer.new_channel("call.")  # as the media consumer does
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future] = {}
    stray: list[str] = []

    async def listen() -> None:  # as voice.audio_socket.forward_call_messages does: a task reading the reply channel
        while True:
            message = await layer.receive(channel)
            arrived = time.perf_counter()
            future = waiting.pop(str(message.get("tool_call_id", "")), None)
            if future is None or future.done():
                if len(stray) < 100:
                    stray.append(str(message.get("tool_call_id", "")))
                continue
            future.set_result((arrived, message))

    listener = asyncio.create_task(listen())
    samples: list[dict[str, Any]] = []
    failures: list[str] = []
    consecutive = 0
    started = time.monotonic()
    cpu0: dict[str, float | None] = {}
    index = -1
    try:
        await asyncio.sleep(0.05)  # the listener is waiting on the channel before the first hand-off
        for index in range(warmup + count):
            if index == warmup:
                cpu0 = cpu_snapshot(pids or {})
            kwargs = handoff_kwargs(call_id, label, index, channel)
            future = loop.create_future()
            waiting[kwargs["tool_call_id"]] = future
            wall0 = time.time()
            t0 = time.perf_counter()
            try:
                await sync_to_async(enqueue, thread_sensitive=False)(kwargs)
                t1 = time.perf_counter()
                arrived, message = await asyncio.wait_for(future, HANDOFF_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                waiting.pop(kwargs["tool_call_id"], None)
                failures.append(f"#{index}: {type(exc).__name__}: {str(exc)[:200]}")
                consecutive += 1
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    failures.append(f"aborted after {consecutive} failures in a row")
                    break
                continue
            consecutive = 0
            if not message.get("ok"):
                failures.append(f"#{index}: answer not ok: {str(message.get('error'))[:200]}")
            elif index >= warmup:
                samples.append({"index": index, "wall0": wall0, "total_ms": (arrived - t0) * 1000,
                                "publish_ms": (t1 - t0) * 1000, "arrived_wall": wall0 + (arrived - t0)})
            if progress and index >= warmup and (index - warmup + 1) % max(1, count // 5) == 0:
                done = index - warmup + 1
                recent = [s["total_ms"] for s in samples[-max(1, count // 5):]]
                print(f"    {label}: {done}/{count} hand-offs, recent p50 {fmt(percentile(recent, 50), 2)} ms "
                      f"({time.monotonic() - started:.0f} s)", flush=True)
            if gap_ms > 0:
                await asyncio.sleep(gap_ms / 1000)
    finally:
        cpu1 = cpu_snapshot(pids or {})
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(listener, 5)  # bounded, should a cancelled receive not end
    timed = index - warmup + 1 if cpu0 else 0
    cpu_ms = {name: (cpu1[name] - start) * 1000 / timed for name, start in cpu0.items()
              if timed > 0 and start is not None and cpu1.get(name) is not None}
    return {"samples": samples, "failures": failures, "stray": stray, "channel": channel, "cpu_ms": cpu_ms}


def collect_supervisor_runs(call_id: int) -> dict[int, dict[str, Any]]:
    """Per hand-off (by the index in its request text), what the worker recorded as the supervisor's steps.

    start_wall: the "request" step (run_supervisor after loading the call, creating the OpenAI client and building
    the prompt); offset_ms is truncated to whole ms, so +0.5 ms centres it. record_wall: created_at of the events,
    set when record_supervisor_run builds them, i.e. just after run_supervisor returned. model_ms: sum of the
    "model" steps' duration_ms (whole ms).
    """
    from calls.models import Call, CallEvent

    call = Call.objects.get(id=call_id)
    base = (call.answered_at or call.started_at).timestamp()
    runs: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for event in CallEvent.objects.filter(call_id=call_id, kind=CallEvent.Kind.SUPERVISOR).order_by("id").iterator():
        payload = event.payload or {}
        step = payload.get("step")
        if step == "request":
            match = MARK.search(str(payload.get("request", "")))
            current = None
            if match:
                current = runs.setdefault(int(match.group(2)), {"model_ms": 0.0, "model_steps": 0})
                current["start_wall"] = base + (event.offset_ms + 0.5) / 1000
                current["record_wall"] = event.created_at.timestamp()
        elif current is not None and step == "model":
            current["model_ms"] += float(payload.get("duration_ms") or 0)
            current["model_steps"] += 1
        elif current is not None and step in ("answer", "error"):
            current["end"] = step
    return runs


def merge_runs(result: dict[str, Any], runs: dict[int, dict[str, Any]]) -> None:
    """Add the worker-side split to every sample."""
    missing = 0
    for sample in result["samples"]:
        run = runs.get(sample["index"])
        if not run or "start_wall" not in run:
            missing += 1
            continue
        sample["model_ms"] = run["model_ms"]
        sample["model_steps"] = run["model_steps"]
        sample["before_ms"] = (run["start_wall"] - sample["wall0"]) * 1000
        sample["inside_other_ms"] = (run["record_wall"] - run["start_wall"]) * 1000 - run["model_ms"]
        sample["after_ms"] = (sample["arrived_wall"] - run["record_wall"]) * 1000
    result["missing_events"] = missing


def run_loop(coro: Any) -> Any:
    """Run on uvloop when installed (the Procfile's uvicorn uses it), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def embedded_child(call_id: int, count: int, warmup: int, gap_ms: float) -> int:
    django_setup({})
    from django.conf import settings

    layer_backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if not settings.CELERY_TASK_ALWAYS_EAGER or "InMemory" not in layer_backend:
        print("RESULT " + json.dumps({"error": f"not embedded mode: eager={settings.CELERY_TASK_ALWAYS_EAGER}, "
                                               f"layer={layer_backend}"}), flush=True)
        return 1
    result = run_loop(handoff_loop(call_id, "embedded", count, warmup, gap_ms, progress=False))
    merge_runs(result, collect_supervisor_runs(call_id))
    result["floor"] = run_loop(handoff_loop(call_id, "emptyembedded", count, warmup, gap_ms, progress=False,
                                             empty=True))
    result.update(layer=layer_backend, broker=settings.CELERY_BROKER_URL)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def run_embedded(env: dict[str, str], call_id: int, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    argv = [PY, str(SCRIPT), "--_embedded", str(call_id), "--count", str(args.count),
            "--warmup", str(args.warmup), "--gap-ms", str(args.gap_ms)]
    log_path = log_dir / "embedded.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            raise RuntimeError(f"the embedded run did not finish within {CHILD_TIMEOUT_S:.0f} s")
    lines = log_path.read_text(errors="replace").splitlines()
    result = next((json.loads(line[7:]) for line in reversed(lines) if line.startswith("RESULT ")), None)
    if result is None or "error" in result:
        tail = "\n".join(lines[-15:])
        raise RuntimeError(f"the embedded run failed ({proc.returncode}): "
                           f"{result.get('error') if result else tail}")
    return result
