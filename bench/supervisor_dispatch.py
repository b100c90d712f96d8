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
import contextlib
import datetime as dt
import faulthandler
import json
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository root, so `bench.*` and the product's apps import when this runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (Proc, free_port, load_average, log_issues, machine, other_benchmarks,  # noqa: E402
                           wait_tcp, write_section)
from bench.supervisor.config import (BENCH_DB, EMPTY_TASK_ENV, MAX_RUNTIME_S, PY, READY_TIMEOUT_S,  # noqa: E402
                                     REDIS_URL, SECTION, STANDIN_SCRIPT)
from bench.supervisor.handoffs import (collect_supervisor_runs, embedded_child, handoff_loop,  # noqa: E402
                                       merge_runs, run_embedded, run_loop)
from bench.supervisor.pieces import (measure_answer_send, measure_full_gc, measure_openai_client,  # noqa: E402
                                     measure_task_body, standin_chat_log)
from bench.supervisor.report import Measured, conclude  # noqa: E402
from bench.supervisor.setup import bench_env, create_calls, django_setup, flush_redis, setup_database  # noqa: E402
from bench.supervisor.setup import wait_worker_ready  # noqa: E402


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
    box = machine()
    load = load_average()
    log_dir = Path(tempfile.mkdtemp(prefix="supervisor_dispatch-"))
    print(f"{command}\n{started:%Y-%m-%d %H:%M} UTC; {box}; load average {load}\nlogs: {log_dir}", flush=True)
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
        wait_tcp(standin_port, standin, READY_TIMEOUT_S)

        django_setup(env)
        from django.conf import settings

        if settings.CELERY_TASK_ALWAYS_EAGER or "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
            raise RuntimeError("the bench process did not get the Redis settings (eager Celery or no Redis layer)")
        call_ids = create_calls(["redis", "body", "embedded"])

        worker = Proc("celery worker", [PY, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads",
                                        "--concurrency", "4", "--loglevel", "WARNING", "--without-gossip",
                                        "--without-mingle", "--without-heartbeat", "-n", "bench-supervisor@%h",
                                        "-I", "bench.supervisor.control"],
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
    measured = Measured(redis_result, embedded, embedded_error, body_fresh, body_kept, send_times, client_times,
                        gc_objects, gc_times, chat_log, worker_issues, stops, notes)
    run = {"started": started, "command": command, "machine": box, "load": load, "log_dir": log_dir}
    section = conclude(measured, args, run)
    if not args.out:
        return 0
    return 3 if write_section(args.out, SECTION, section, spare=log_dir / "section.md") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
