#!/usr/bin/env python
"""Supervisor hand-off: what it costs to get the voice agent's `ask_supervisor` call to a worker and back.

    .venv/bin/python bench/supervisor_dispatch.py [--count 1000] [--quick] [--out docs/benchmarks.md]

Times N sequential hand-offs the way the call session makes them (`CallSession._dispatch_supervisor`): a reply
channel on the real channels-redis layer, read by a listener task like the media consumer's; the product's
`voice.session.enqueue_supervisor(kwargs)` called through `sync_to_async(..., thread_sensitive=False)`; one real
Celery worker (threads pool) on the Redis broker runs `voice.ask_supervisor`, whose supervisor model is the local
OpenAI stand-in answering at once; the answer comes back over the channel layer. Each hand-off is timed from just
before the enqueue to the answer's arrival in the listener.

The supervisor's own time is taken out in two ways: its model call from the `duration_ms` the worker records on
each "model" step, and the rest of the task body (`run_supervisor` + `record_supervisor_run`) from a separate
in-process loop against the same stand-in and database. The worker's recorded event times also split every hand-off
into "before the supervisor starts" and "after it returns". A control task with the same signature and answer send
but no supervisor (`bench.empty_supervisor`, registered only in the bench's own processes) measures the transport
floor directly. For comparison the same hand-offs run in embedded mode (no REDIS_URL: eager Celery, in-memory
channel layer) in a child process of this bench.

Everything binds to 127.0.0.1; every loop is bounded by a count or a deadline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import faulthandler
import json
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

# The repository root, so `bench.benchlib` and the product's apps import both when this runs as a script and
# when it is imported as `bench.<name>` (a bench's own Celery worker does that).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.benchlib import nearest_rank as pct  # noqa: E402
from bench.benchlib import other_benchmarks, update_doc  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
SECTION = "## Supervisor hand-off (bench/supervisor_dispatch.py)"
BENCH_DB = "receptionist_bench_supervisor"
REDIS_URL = "redis://127.0.0.1:6379/8"
BUSINESS_NUMBER = "+15550100888"
CALLER_NUMBER = "+15550100999"
STANDIN_SCRIPT = {"supervisor": [{"default": True, "steps": [{"say": "Done."}]}]}
CONVERSATION = [
    {"speaker": "agent", "text": "Thanks for calling Bench Dental, how can I help?"},
    {"speaker": "caller", "text": "Hi, I'd like to book a cleaning."},
    {"speaker": "agent", "text": "Sure, which day works for you?"},
    {"speaker": "caller", "text": "Tomorrow morning, if you have anything."},
]
REQUEST = "The caller wants a cleaning tomorrow morning. Is there a free slot? [bench {label} #{index}]"
MARK = re.compile(r"\[bench (\w+) #(\d+)\]")

HANDOFF_TIMEOUT_S = 10.0        # per hand-off; the session's own deadline is 8 s
MAX_CONSECUTIVE_FAILURES = 5    # then the run is aborted
READY_TIMEOUT_S = 40.0
KILL_AFTER_S = 8.0
CHILD_TIMEOUT_S = 900.0
MAX_RUNTIME_S = 1800            # the whole bench; SIGALRM then unwinds through the cleanup
GOAL_P50_MS, GOAL_P99_MS = 10.0, 30.0
EMPTY_TASK = "bench.empty_supervisor"   # the control task, registered only in the bench's worker (see below)
EMPTY_TASK_ENV = "BENCH_SUPERVISOR_EMPTY_TASK"
LOG_ISSUE = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback|Exception)\b")


# The control: a task with voice.ask_supervisor's signature, options and answer send, but no supervisor. Timing it
# gives the transport floor of the hand-off directly: thread hop, publish, pickup, Celery, answer send, receive. The
# bench's worker registers it by importing this module (`-I bench.supervisor_dispatch`, with EMPTY_TASK_ENV set); the
# bench process and the embedded child register it when they first use it.
_empty_task: Any = None


def empty_task() -> Any:
    global _empty_task
    if _empty_task is None:
        from asgiref.sync import async_to_sync
        from celery import shared_task
        from channels.layers import get_channel_layer

        @shared_task(name=EMPTY_TASK, acks_late=False, ignore_result=True)
        def empty_supervisor(*, call_id: int, tool_call_id: str, reply_channel: str, request: str,
                             conversation: list[dict[str, str]]) -> None:
            message = {"type": "supervisor.answer", "tool_call_id": tool_call_id, "answer": "Done.", "ok": True,
                       "error": ""}
            async_to_sync(get_channel_layer().send)(reply_channel, message)

        _empty_task = empty_supervisor
    return _empty_task


if __name__ == "bench.supervisor_dispatch" and os.environ.get(EMPTY_TASK_ENV) == "1":
    empty_task()


# --- small helpers ----------------------------------------------------------------------------------------------




def median(values: list[float]) -> float | None:
    return pct(values, 50)


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def nproc() -> str:
    try:
        return subprocess.run(["nproc", "--all"], check=False, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(os.cpu_count())


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # from field 3 (state) on


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of pid and its live descendants, in seconds (None if it is gone)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
    total, found, todo, seen = 0, False, [pid], 0
    while todo and seen < 10_000:
        member = todo.pop()
        seen += 1
        todo.extend(children.get(member, []))
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat(member)
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            found = True
    return total / CLK_TCK if found else None


def self_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system




try:  # resolved here, not in the forked child
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None
_PR_SET_PDEATHSIG, _SIGTERM = 1, int(signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench dies, so no worker or stand-in is left behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


class Proc:
    """A subprocess in its own process group, output to a log file; stop() = SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent)  # noqa: PLW1509 - started before any thread
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> str:
        how = f"had exited ({self.popen.returncode})"
        if self.alive():
            how = "SIGTERM"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=KILL_AFTER_S)
            except subprocess.TimeoutExpired:
                how = f"SIGKILL (still running {KILL_AFTER_S:.0f} s after SIGTERM)"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # sweep the group: children may outlive the leader
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            how += ", did not die"
        self._log.close()
        return how

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def log_issues(path: Path, limit: int = 8) -> list[str]:
    """Distinct warning/error lines of a log, with counts."""
    counts: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if LOG_ISSUE.search(line):
                key = re.sub(r"^\S+ \S+ ", "", line.strip())[:160]  # drop a leading timestamp
                key = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "<uuid>", key)
                counts[key] = counts.get(key, 0) + 1
    return [f"{n}× {line}" for line, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]


# --- setup ------------------------------------------------------------------------------------------------------


def bench_env(*, standin_port: int, redis: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG", "CELERY_"))}
    for name in ("REDIS_URL", "OPENAI_BASE_URL", "DB_CONN_MAX_AGE"):
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "receptionist.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{standin_port}/v1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    if redis:
        env["REDIS_URL"] = REDIS_URL
    return env


def setup_database(env: dict[str, str], log_dir: Path) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    result = subprocess.run([PY, "manage.py", "migrate", "--noinput"], check=False, cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    (log_dir / "setup-migrate.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed ({result.returncode}):\n{result.stderr[-2000:]}")


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def server_versions() -> str:
    import psycopg
    import redis

    out = []
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        out.append(f"Redis {client.info('server').get('redis_version')}")
        client.close()
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with contextlib.suppress(Exception), psycopg.connect(admin, connect_timeout=5) as conn:
        out.append(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0].split()[0]}")
    return ", ".join(out)


def package_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name, label in (("celery", "celery"), ("kombu", "kombu"), ("redis", "redis-py"),
                        ("channels_redis", "channels_redis"), ("channels", "channels"), ("asgiref", "asgiref"),
                        ("django", "django"), ("openai", "openai"), ("httpx", "httpx"), ("psycopg", "psycopg")):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{label} {version(name)}")
    return ", ".join(out)


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def create_calls(labels: list[str]) -> dict[str, int]:
    """One business and one in-progress call per label (the events of each phase stay apart)."""
    from django.utils import timezone

    from accounts.models import Business
    from calls.models import Call

    business = Business.objects.create(name="Bench Dental", phone_number=BUSINESS_NUMBER,
                                       onboarded_at=timezone.now())
    ids = {}
    for label in labels:
        now = timezone.now()
        call = Call.objects.create(business=business, status=Call.Status.IN_PROGRESS, from_number=CALLER_NUMBER,
                                   to_number=BUSINESS_NUMBER, twilio_call_sid=f"CA{secrets.token_hex(16)}",
                                   started_at=now, answered_at=now, stream_started_at=now)
        ids[label] = call.id
    return ids


def wait_worker_ready(worker: Proc, timeout: float) -> float:
    from receptionist.celery import app

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not worker.alive():
            raise RuntimeError(f"the Celery worker exited with {worker.popen.returncode}:\n{worker.log_tail()}")
        with contextlib.suppress(Exception):
            if app.control.ping(timeout=0.5):
                return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError(f"the Celery worker did not answer a ping within {timeout:.0f} s:\n{worker.log_tail()}")


# --- the hand-off, exactly as the session makes it --------------------------------------------------------------


def handoff_kwargs(call_id: int, label: str, index: int, channel: str) -> dict[str, Any]:
    # The same keys and shapes as CallSession._dispatch_supervisor builds.
    return {"call_id": call_id, "tool_call_id": f"call_bench{label}{index:05d}", "reply_channel": channel,
            "request": REQUEST.format(label=label, index=index), "conversation": CONVERSATION[-30:]}


def enqueue_empty(kwargs: dict[str, Any]) -> None:
    """Like voice.session.enqueue_supervisor, for the control task."""
    empty_task().apply_async(kwargs=kwargs)


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

    async def listen() -> None:  # like voice.consumers.forward_call_messages: a separate task reading the reply channel
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
                print(f"    {label}: {done}/{count} hand-offs, recent p50 {fmt(median(recent))} ms "
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


# --- in-process pieces: the task body, the answer send, the OpenAI client ----------------------------------------


def measure_task_body(call_id: int, runs: int, warmup: int, *, fresh_connection: bool) -> dict[str, list[float]]:
    """run_supervisor + record_supervisor_run, as the task runs them; with fresh_connection the DB connection is
    closed before each run, as Celery's Django fixup does around every task (no CELERY_DB_REUSE_MAX)."""
    from django.db import connections

    from calls.models import Call
    from voice.supervisor import record_supervisor_run, run_supervisor

    call = Call.objects.get(id=call_id)
    base = (call.answered_at or call.started_at).timestamp()
    out: dict[str, list[float]] = {"body": [], "model": [], "rest": [], "first_step": [], "record": []}
    for index in range(warmup + runs):
        if fresh_connection:
            connections.close_all()
        wall0 = time.time()
        t0 = time.perf_counter()
        result = run_supervisor(call_id=call_id, request=REQUEST.format(label="body", index=index),
                                conversation=CONVERSATION)
        t1 = time.perf_counter()
        record_supervisor_run(call_id=call_id, result=result)
        t2 = time.perf_counter()
        if not result.ok:
            raise RuntimeError(f"the supervisor failed in-process: {result.error}")
        if index >= warmup:
            model = float(sum(e["payload"].get("duration_ms") or 0 for e in result.events
                              if e["payload"].get("step") == "model"))
            out["body"].append((t2 - t0) * 1000)
            out["model"].append(model)
            out["rest"].append((t2 - t0) * 1000 - model)
            # to the "request" step, measured the way the worker's events are read (±0.5 ms)
            out["first_step"].append((base + (result.events[0]["offset_ms"] + 0.5) / 1000 - wall0) * 1000)
            out["record"].append((t2 - t1) * 1000)
    return out


def measure_answer_send(runs: int, warmup: int) -> list[float]:
    """`async_to_sync(get_channel_layer().send)(...)` from a plain thread, as the task sends its answer."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    times: list[float] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for index in range(warmup + runs):
                message = {"type": "supervisor.answer", "tool_call_id": f"call_send{index}", "answer": "Done.",
                           "ok": True, "error": ""}
                t0 = time.perf_counter()
                async_to_sync(get_channel_layer().send)("bench.sink", message)
                if index >= warmup:
                    times.append((time.perf_counter() - t0) * 1000)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=worker, name="bench-answer-send", daemon=True)
    thread.start()
    thread.join(120)
    if errors:
        raise errors[0]
    return times


def measure_full_gc(runs: int = 3) -> tuple[int, list[float]]:
    """A full garbage collection of this process's heap (Django, Celery, channels, openai loaded, like a worker's)."""
    import gc

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return len(gc.get_objects()), times


def measure_openai_client(runs: int) -> list[float]:
    from voice.supervisor import openai_client

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        openai_client()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def standin_chat_log(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/standin/chat", timeout=10) as response:
        return json.loads(response.read()).get("requests", [])


# --- embedded mode: a child process without REDIS_URL ------------------------------------------------------------


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
    argv = [PY, str(Path(__file__).resolve()), "--_embedded", str(call_id), "--count", str(args.count),
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


# --- report -----------------------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": max(values) if values else None}


def col(values: list[float], digits: int = 2) -> str:
    s = stats(values)
    return " / ".join(fmt(s[k], digits) for k in ("p50", "p90", "p99", "max"))


ROWS = [
    ("**Round trip**: enqueue → answer received by the session", "total_ms"),
    ("`enqueue_supervisor` returned (thread hop + publish; embedded: the whole task runs in it)", "publish_ms"),
    (("enqueue → supervisor's first step¹ (publish, broker, pickup, task start, DB connect, call query, OpenAI "
      "client, prompt)"), "before_ms"),
    ("… minus the task's own work before that step² = publish + queue + pickup + Celery", "queue_ms"),
    ("supervisor model call (`duration_ms` of its \"model\" step: HTTP to the stand-in)", "model_ms"),
    ("rest of `run_supervisor` after the first step, besides the model call¹", "inside_other_ms"),
    ("supervisor returned → answer received¹ (record events + cost, channel-layer send, session receive)",
     "after_ms"),
    ("… minus the task's own `record_supervisor_run`² = answer send + receive", "answer_ms"),
    ("**Hand-off overhead** = round trip − model call − median rest of the task body²", "overhead_ms"),
    ("**Transport floor**: the same hand-off to an empty task³ (round trip)", "floor_ms"),
]


def derived(result: dict[str, Any], key: str, body: dict[str, float | None]) -> list[float]:
    """Per-sample values of a row; the derived rows subtract medians of the in-process task body."""
    samples = result["samples"]
    if key == "floor_ms":
        return [s["total_ms"] for s in (result.get("floor") or {}).get("samples", [])]
    if key == "overhead_ms":
        return overhead_values(result, body.get("rest"))
    if key == "queue_ms":
        return [] if body.get("first_step") is None else [
            s["before_ms"] - body["first_step"] for s in samples if "before_ms" in s]
    if key == "answer_ms":
        return [] if body.get("record") is None else [
            s["after_ms"] - body["record"] for s in samples if "after_ms" in s]
    return [s[key] for s in samples if key in s]


def handoff_table(modes: list[tuple[str, dict[str, Any], dict[str, float | None]]]) -> str:
    """One column per mode; each mode's derived rows subtract the medians of its own in-process task body."""
    header = "| per hand-off, ms | " + " | ".join(f"{name}: p50 / p90 / p99 / max" for name, _, _ in modes) + " |"
    lines = [header, "|---" * (1 + len(modes)) + "|"]
    for title, key in ROWS:
        cells = []
        for _, result, body in modes:
            values = derived(result, key, body)
            cells.append(col(values) if values else "n/a")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pieces_table(pieces: list[tuple[str, list[float]]]) -> str:
    lines = ["| in-process piece (bench process, no Celery), ms | runs | p50 | p90 | p99 | max |",
             "|---|---|---|---|---|---|"]
    for title, values in pieces:
        s = stats(values)
        lines.append(f"| {title} | {len(values)} | {fmt(s['p50'])} | {fmt(s['p90'])} | {fmt(s['p99'])} | "
                     f"{fmt(s['max'])} |")
    return "\n".join(lines)


def overhead_values(result: dict[str, Any], body_rest_ms: float | None) -> list[float]:
    if body_rest_ms is None:
        return []
    return [s["total_ms"] - s["model_ms"] - body_rest_ms for s in result["samples"] if "model_ms" in s]


def verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "n/a"
    return f"{'PASS' if value < goal else 'FAIL'} ({value:.2f} ms)"


def goal_check(result: dict[str, Any], body_rest_ms: float | None) -> str:
    totals = [s["total_ms"] for s in result["samples"]]
    over = overhead_values(result, body_rest_ms)
    floor = [s["total_ms"] for s in (result.get("floor") or {}).get("samples", [])]

    def both(values: list[float]) -> str:
        return f"p50 {verdict(pct(values, 50), GOAL_P50_MS)}, p99 {verdict(pct(values, 99), GOAL_P99_MS)}"

    return (f"Goal check (issue: hand-off p50 < {GOAL_P50_MS:g} ms, p99 < {GOAL_P99_MS:g} ms; Redis + worker mode): "
            f"**transport floor**, measured directly with the empty task: {both(floor)}. Hand-off overhead of the "
            f"product's task, estimated by subtraction (only as good as the task body's run-to-run spread): "
            f"{both(over)}. Whole round trip with an instantly answering supervisor (hand-off + the task's own "
            f"work + one model call to the stand-in): {both(totals)}.")


def where_time_goes(result: dict[str, Any], fresh: dict[str, list[float]], kept: dict[str, list[float]],
                    send: list[float], client: list[float], standin_ms: list[float]) -> str:
    """A few lines on the biggest costs, from this run's medians."""
    total = median([s["total_ms"] for s in result["samples"]])
    floor = median([s["total_ms"] for s in (result.get("floor") or {}).get("samples", [])])
    lines = []

    def share(ms: float | None) -> str:
        return f" ({ms / total * 100:.0f} % of the round trip's p50)" if ms is not None and total else ""

    if client:
        lines.append(f"- `openai_client()`, built afresh by every `run_supervisor`: {fmt(median(client))} ms"
                     f"{share(median(client))}, almost all in loading the CA bundle into a new SSL context.")
    connect = None
    if fresh.get("first_step") and kept.get("first_step"):
        connect = median(fresh["first_step"]) - median(kept["first_step"])
        lines.append(f"- A new PostgreSQL connection per task (Celery's Django fixup closes it around every task): "
                     f"≈ {fmt(connect)} ms{share(connect)} (fresh − kept connection, time to the first step).")
    model = median([s["model_ms"] for s in result["samples"] if "model_ms" in s])
    if model is not None:
        lines.append(f"- The model call: {fmt(model, 0)} ms, of which the stand-in itself "
                     f"{fmt(median(standin_ms), 0) if standin_ms else 'n/a'} ms; the rest is the SDK's request, a new "
                     "TCP connection and the response parsing.")
    if send:
        lines.append(f"- The answer's send, `async_to_sync(layer.send)` from the worker thread (a new thread, event "
                     f"loop and Redis connection each time): {fmt(median(send))} ms.")
    if floor is not None:
        lines.append(f"- Transport floor (empty task, publish → pickup → answer send → receive): {fmt(floor)} ms.")
    return "\n".join(lines) or "- (not measured)"


def slow_outliers(result: dict[str, Any], limit: int = 5) -> list[str]:
    """The slowest hand-offs with their split, to tell where the time went."""
    out = []
    for s in sorted(result["samples"], key=lambda s: -s["total_ms"])[:limit]:
        parts = ", ".join(f"{name} {s[key]:.1f}" for name, key in (
            ("publish", "publish_ms"), ("before", "before_ms"), ("model", "model_ms"),
            ("inside", "inside_other_ms"), ("after", "after_ms")) if key in s)
        out.append(f"#{s['index']}: {s['total_ms']:.1f} ms ({parts})")
    return out




# --- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="timed hand-offs per mode (default 1000)")
    parser.add_argument("--quick", action="store_true", help="100 hand-offs and 50 in-process runs: a try-out")
    parser.add_argument("--warmup", type=int, default=20, help="untimed hand-offs first (default 20)")
    parser.add_argument("--body-runs", type=int, default=200, help="in-process task-body runs (default 200)")
    parser.add_argument("--gap-ms", type=float, default=5.0,
                        help="pause between hand-offs, so the worker finishes the previous task (default 5)")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded-mode comparison")
    parser.add_argument("--out", help="markdown file whose section to write/replace, e.g. docs/benchmarks.md")
    parser.add_argument("--_embedded", type=int, metavar="CALL_ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.body_runs = 100, 50
    if not 1 <= args.count <= 20_000 or not 0 <= args.warmup <= 1000 or not 1 <= args.body_runs <= 5000:
        parser.error("--count must be 1–20000, --warmup 0–1000, --body-runs 1–5000")
    if not 0 <= args.gap_ms <= 1000:
        parser.error("--gap-ms must be 0–1000")
    return args


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the cleanup in main()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID` prints every thread's stack
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGALRM, _terminated)
    signal.alarm(MAX_RUNTIME_S)
    if args._embedded is not None:
        return embedded_child(args._embedded, args.count, args.warmup, args.gap_ms)

    started = dt.datetime.now(dt.UTC)
    command = "python bench/supervisor_dispatch.py" + "".join(" " + shlex.quote(a) for a in argv)
    others = other_benchmarks()
    if args.out and others:
        print("Another benchmark is running; its load would skew these numbers and both write "
              f"{args.out}. Try again when it is done:\n  " + "\n  ".join(others), file=sys.stderr)
        return 3
    machine = (f"nproc {nproc()}, {cpu_model()}, {platform.system()} {platform.release()}, "
               f"Python {platform.python_version()}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log_dir = Path(tempfile.mkdtemp(prefix="supervisor_dispatch-"))
    print(f"{command}\n{started:%Y-%m-%d %H:%M} UTC; {machine}; load average {load}\nlogs: {log_dir}", flush=True)
    if others:
        print("note: other benchmarks are running, expect noise:\n  " + "\n  ".join(others), flush=True)

    standin_port = free_port()
    env = bench_env(standin_port=standin_port)
    script_path = log_dir / "standin-script.json"
    script_path.write_text(json.dumps(STANDIN_SCRIPT))
    standin: Proc | None = None
    worker: Proc | None = None
    stops: dict[str, str] = {}
    notes: list[str] = []
    redis_result: dict[str, Any] | None = None
    embedded: dict[str, Any] | None = None
    embedded_error = ""
    body_fresh: dict[str, list[float]] = {}
    body_kept: dict[str, list[float]] = {}
    send_times: list[float] = []
    client_times: list[float] = []
    gc_objects, gc_times = 0, []
    chat_log: list[dict[str, Any]] = []
    worker_issues: list[str] = []
    try:
        t = time.monotonic()
        setup_database(env, log_dir)
        flush_redis()
        print(f"database {BENCH_DB} created and migrated; Redis {REDIS_URL} flushed ({time.monotonic() - t:.1f} s)",
              flush=True)

        standin = Proc("stand-in", [PY, "manage.py", "realtime_standin", "--host", "127.0.0.1", "--port",
                                    str(standin_port), "--script", str(script_path)], env, log_dir / "standin.log")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not standin.alive():
                raise RuntimeError(f"the stand-in exited:\n{standin.log_tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", standin_port), timeout=0.5).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in did not listen within {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)

        django_setup(env)
        from django.conf import settings

        if settings.CELERY_TASK_ALWAYS_EAGER or "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
            raise RuntimeError("the bench process did not get the Redis settings (eager Celery or no Redis layer)")
        call_ids = create_calls(["redis", "body", "embedded"])

        worker = Proc("celery worker", [PY, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads",
                                        "--concurrency", "4", "--loglevel", "WARNING", "--without-gossip",
                                        "--without-mingle", "--without-heartbeat", "-n", "bench-supervisor@%h",
                                        "-I", "bench.supervisor_dispatch"],
                      env | {EMPTY_TASK_ENV: "1"}, log_dir / "worker.log")
        ready_s = wait_worker_ready(worker, READY_TIMEOUT_S)
        print(f"stand-in on 127.0.0.1:{standin_port}; Celery worker (threads ×4) ready in {ready_s:.1f} s", flush=True)

        print(f"Redis + worker: {args.warmup} warm-up + {args.count} hand-offs", flush=True)
        t = time.monotonic()
        redis_result = run_loop(handoff_loop(call_ids["redis"], "redis", args.count, args.warmup, args.gap_ms,
                                             progress=True, pids={"worker": worker.pid, "stand-in": standin.pid}))
        elapsed = time.monotonic() - t
        redis_result["elapsed_s"] = elapsed
        merge_runs(redis_result, collect_supervisor_runs(call_ids["redis"]))

        print(f"transport floor (empty task, same worker): {args.warmup} warm-up + {args.count} hand-offs", flush=True)
        redis_result["floor"] = run_loop(handoff_loop(call_ids["redis"], "empty", args.count, args.warmup,
                                                      args.gap_ms, progress=True, empty=True,
                                                      pids={"worker": worker.pid}))
        stops["worker"] = worker.stop()
        worker_issues = log_issues(worker.log_path)
        if not worker_issues and stops["worker"] != "SIGTERM":
            notes.append(f"the worker stopped by {stops['worker']}")

        print(f"in-process task body: {args.body_runs} runs with a fresh DB connection, {args.body_runs} with a "
              "kept one; answer send; OpenAI client", flush=True)
        body_fresh = measure_task_body(call_ids["body"], args.body_runs, 10, fresh_connection=True)
        body_kept = measure_task_body(call_ids["body"], args.body_runs, 10, fresh_connection=False)
        send_times = measure_answer_send(args.body_runs, 10)
        client_times = measure_openai_client(min(args.body_runs, 50))
        gc_objects, gc_times = measure_full_gc()

        if args.no_embedded:
            embedded_error = "skipped (--no-embedded)"
        else:
            print(f"embedded mode (child process without REDIS_URL): {args.warmup} warm-up + {args.count} hand-offs",
                  flush=True)
            try:
                embedded = run_embedded(bench_env(standin_port=standin_port, redis=False) | {
                    "SECRET_KEY": env["SECRET_KEY"]}, call_ids["embedded"], args, log_dir)
            except Exception as exc:  # noqa: BLE001 - the Redis result still stands
                embedded_error = f"{type(exc).__name__}: {exc}"
                print(f"  embedded mode failed: {embedded_error}", flush=True)
        with contextlib.suppress(Exception):
            chat_log = standin_chat_log(standin_port)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    except Exception as exc:  # noqa: BLE001
        print(f"bench aborted: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if redis_result is None:
            return 2
    finally:
        if worker is not None and "worker" not in stops:
            stops["worker"] = worker.stop()
            worker_issues = log_issues(worker.log_path)
        if standin is not None:
            stops["stand-in"] = standin.stop()
        with contextlib.suppress(Exception):
            flush_redis()

    if redis_result is None:
        return 2
    medians_fresh = {k: median(v) for k, v in body_fresh.items()}
    medians_kept = {k: median(v) for k, v in body_kept.items()}
    body_rest, body_rest_kept = medians_fresh.get("rest"), medians_kept.get("rest")
    modes = [("Redis + worker", redis_result, medians_fresh)] + (
        [("embedded", embedded, medians_kept)] if embedded else [])
    table = handoff_table(modes)
    pieces = pieces_table([
        ("task body: `run_supervisor` + `record_supervisor_run`, fresh DB connection each run (as in the worker)",
         body_fresh.get("body", [])),
        ("… of which the model call (`duration_ms`)", body_fresh.get("model", [])),
        ("… rest of the task body (body − model call)²", body_fresh.get("rest", [])),
        ("… its work before the supervisor's first step (DB connect, call query, OpenAI client, prompt)²",
         body_fresh.get("first_step", [])),
        ("… its `record_supervisor_run` (events insert + cost update)²", body_fresh.get("record", [])),
        ("task body with the DB connection kept (embedded mode keeps it)", body_kept.get("body", [])),
        ("… rest of that task body (body − model call)²", body_kept.get("rest", [])),
        ("… its work before the supervisor's first step²", body_kept.get("first_step", [])),
        ("… its `record_supervisor_run`²", body_kept.get("record", [])),
        ("answer send: `async_to_sync(layer.send)` from a plain thread, as the task does", send_times),
        ("`voice.supervisor.openai_client()` (run once per task)", client_times),
        (f"full garbage collection, `gc.collect()`, of the bench process ({gc_objects:,} objects)", gc_times),
    ])
    answered = [r for r in chat_log if r.get("outcome") == "answered"]
    standin_ms = [float(r["duration_ms"]) for r in answered if r.get("duration_ms") is not None]
    not_answered = len(chat_log) - len(answered)
    check = goal_check(redis_result, body_rest)
    def cpu_text(result: dict[str, Any] | None) -> str:
        return ", ".join(f"{k} {fmt(v, 1)}" for k, v in (result or {}).get("cpu_ms", {}).items()) or "n/a"

    cpu_line = (f"CPU time per timed hand-off, ms (utime+stime): Redis + worker: {cpu_text(redis_result)}; "
                f"transport floor: {cpu_text(redis_result.get('floor'))}; embedded (bench = the child process, "
                f"which runs the task too): {cpu_text(embedded)}."
                + (f" The stand-in's own time per chat request (whole ms): p50 {fmt(pct(standin_ms, 50), 0)}, "
                   f"p99 {fmt(pct(standin_ms, 99), 0)} ({len(chat_log)} requests)." if standin_ms else ""))

    findings = where_time_goes(redis_result, body_fresh, body_kept, send_times, client_times, standin_ms)
    if gc_times:
        findings += (f"\n- Slow outliers: a full garbage collection of a process like the worker (this one: "
                     f"{gc_objects:,} objects) takes {fmt(median(gc_times), 0)} ms here; a single hand-off slower "
                     "by about that much, in whatever step it lands, is most likely one.")
    checked = [(label, result) for label, result, _ in modes]
    for label, result, _ in modes:
        if result.get("floor"):
            checked.append((f"{label}, transport floor", result["floor"]))
    for label, result in checked:
        if result["failures"]:
            notes.append(f"{label}: {len(result['failures'])} failed hand-offs, e.g. {result['failures'][0]}")
        if result.get("stray"):
            notes.append(f"{label}: {len(result['stray'])} answers arrived for no waiting hand-off")
        if result.get("missing_events"):
            notes.append(f"{label}: {result['missing_events']} hand-offs without recorded supervisor events")
        steps = {s.get("model_steps") for s in result["samples"] if "model_steps" in s}
        if steps - {1}:
            notes.append(f"{label}: supervisor runs with {sorted(steps)} model steps (expected 1)")
        if len(result["samples"]) < args.count:
            notes.append(f"{label}: only {len(result['samples'])} of {args.count} hand-offs timed")
        notes.append(f"{label}: slowest hand-offs (ms): " + "; ".join(slow_outliers(result, 3)))
    if not_answered:
        notes.append(f"stand-in: {not_answered} chat requests not answered normally")
    for line in worker_issues:
        notes.append(f"worker log: {line}")
    for line in log_issues(log_dir / "standin.log", 4):
        notes.append(f"stand-in log: {line}")
    if embedded_error:
        notes.append(f"embedded mode: {embedded_error}")
    for name, how in stops.items():
        if how != "SIGTERM":
            notes.append(f"{name} stopped: {how}")

    finished = dt.datetime.now(dt.UTC)
    took = (finished - started).total_seconds()
    print()
    print(table)
    print()
    print(pieces)
    print()
    print(cpu_line)
    print()
    print(findings)
    print()
    print(check)
    if notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in notes))
    print(f"\nTook {took:.0f} s; logs in {log_dir}")

    if args.out:
        embedded_desc = (
            "**embedded** = the same loop in a child process started without `REDIS_URL`, i.e. the product's "
            "embedded settings: `CELERY_TASK_ALWAYS_EAGER` (the task runs inside the `sync_to_async` thread of "
            "`enqueue_supervisor`) and `InMemoryChannelLayer`; same PostgreSQL database (embedded's default would be "
            "SQLite) and stand-in."
            if embedded else f"Embedded mode was not measured in this run: {embedded_error}.")
        section = f"""{SECTION}

What handing the voice agent's `ask_supervisor` call to a worker and getting the answer back costs, with a
supervisor that answers at once. Each hand-off is made the way `CallSession._dispatch_supervisor` makes it: a
reply channel from `get_channel_layer().new_channel("call.")` on the real channels-redis layer, read by a separate
listener task like the media consumer's; the product's `voice.session.enqueue_supervisor(kwargs)` (same kwargs:
call id, tool call id, reply channel, request, 4-turn conversation) through
`sync_to_async(..., thread_sensitive=False)`; one real Celery worker runs `voice.ask_supervisor`
(`run_supervisor` → one chat completion from the stand-in → `record_supervisor_run` → `supervisor.answer` over the
channel layer). Timed with `time.perf_counter` from just before the enqueue to the answer's arrival in the listener.
Hand-offs are sequential (one caller waiting at a time), {args.gap_ms:g} ms apart, after {args.warmup} untimed
warm-up hand-offs.

- Command: `{command}` (from the repository root, with `.venv/bin/python`)
- Date: {started:%Y-%m-%d %H:%M} UTC; took {took:.0f} s; load average at start {load}
- Machine: {machine}; {server_versions()}
- Versions: {package_versions()}
- **Redis + worker** = `DEBUG=false`, PostgreSQL database `{BENCH_DB}` (dropped, created, migrated; one business,
  one in-progress call), `REDIS_URL={REDIS_URL}` (flushed; Celery broker and channels-redis layer), one worker
  `python -m celery -A receptionist worker --pool threads --concurrency 4 --without-gossip --without-mingle
  --without-heartbeat --loglevel WARNING`, the bench process on uvloop. {embedded_desc}
- Stand-in: `manage.py realtime_standin --script` with `{json.dumps(STANDIN_SCRIPT)}` (voice/offline/realtime/; every
  chat completion answers "Done." at once). No pinning: bench, worker and stand-in share the {nproc()} cores.

{table}

¹ From the events the worker records: the "request" step's `offset_ms` (whole ms, centred with +0.5 ms, so
±0.5 ms) and the events' `created_at` (set when `record_supervisor_run` builds them, just after `run_supervisor`
returns), against the bench's wall clock at the enqueue and at the arrival (same machine, same clock). The model
call's `duration_ms` is rounded to whole ms.

² Medians of the in-process runs of the task body below, subtracted from each hand-off: for Redis + worker those
with a fresh DB connection per run (Celery's Django fixup closes the connection around every task, so each task
connects again), for embedded those with the connection kept. "Rest of the task body" = `run_supervisor` +
`record_supervisor_run` minus its model call ({fmt(body_rest)} ms fresh, {fmt(body_rest_kept)} ms kept): what the
task itself spends besides the model (DB connect, call and business queries, OpenAI client, prompt, event insert
and cost update). Hand-off overhead = each hand-off's round trip minus its own model call minus that median, so it
holds the thread hop, publishing to Redis, the worker picking the task up, Celery's task bookkeeping, the answer's
send (new event loop and Redis connection per `async_to_sync`) and the session's receive. Because a median measured
in another phase is subtracted from each hand-off, these rows carry the task body's run-to-run spread (see its p90
below) and can go negative; read their p50 as an estimate. Percentiles of the parts do not add up to the round
trip's.

³ A control task the bench registers in its own processes only (its worker also gets `-I bench.supervisor_dispatch`):
`voice.ask_supervisor`'s signature and options, enqueued with `apply_async` through the same
`sync_to_async(..., thread_sensitive=False)` hop with the same kwargs (embedded: run eagerly in that thread, as the
product's task is), and the same answer send
(`async_to_sync(get_channel_layer().send)`), but no supervisor, no database and no OpenAI client. It measures the
hand-off's transport directly, without subtracting anything; {args.count} hand-offs after {args.warmup} warm-up
ones, right after the product's.

{pieces}

{cpu_line}

Where the time goes (medians of this run):

{findings}

{check}
"""
        if notes:
            section += "\nNotes from this run:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        out = Path(args.out)
        out = out if out.is_absolute() else REPO / out
        others = other_benchmarks()
        if others:
            side = log_dir / "section.md"
            side.write_text(section)
            print(f"another benchmark started meanwhile; not touching {out}. The section is in {side}",
                  file=sys.stderr)
            return 3
        update_doc(out, SECTION, section)
        print(f"wrote the section to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
