#!/usr/bin/env python
"""Post-call summary latency: time from hang-up (the call's finalisation) to its summary stored.

    .venv/bin/python bench/postcall_latency.py [--calls 100] [--out docs/benchmarks.md]

Each of N calls (one business, a six-line transcript) is finalised with the product's `call_finalize`, which
queues `calls.summarize_call` on commit to Redis; one real Celery worker (threads pool) runs it against the local
OpenAI stand-in (structured output, answered at once), stores the summary and queues the email. Calls run one
after another. Latency = `Call.summarized_at - Call.finalized_at` (both written by the product, same host), and
the bench's own wall time from just before `call_finalize` to seeing the summary in the database (5 ms polling).

It uses its own PostgreSQL database (`receptionist_bench_postcall`, dropped and re-created) and Redis database 9
(flushed). Everything binds to 127.0.0.1; every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

# The repository root, so `bench.*` and the product's apps import when this runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (REPO, Proc, bench_stores, machine, percentile, recreate_database,  # noqa: E402
                           write_section)

PY = sys.executable
SECTION = "## Post-call summary latency (bench/postcall_latency.py)"
# Overridable (BENCH_DATABASE, BENCH_REDIS_DB) so a second bench can run beside this one without sharing its stores.
BENCH_DB, REDIS_URL = bench_stores("receptionist_bench_postcall", 9)
TRANSCRIPT = [
    ("agent", "Thanks for calling Bench Dental, how can I help?"),
    ("caller", "Hi, this is Ann Lee. I'd like to know when you're open on Saturday."),
    ("agent", "We're open nine to one on Saturdays."),
    ("caller", "And how much is a cleaning?"),
    ("agent", "A cleaning is one hundred and twenty dollars."),
    ("caller", "Great, thanks, bye."),
]
SUMMARY_DOC = {"summary": "Ann Lee asked about Saturday hours and the price of a cleaning.", "caller_name": "Ann Lee",
               "reason": "Hours and prices.", "outcome": "answered", "action_items": [], "sentiment": "positive",
               "follow_up_needed": False, "follow_up_reason": ""}

def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--out", help="markdown file whose section to write/replace, e.g. docs/benchmarks.md")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from voice.offline.realtime import RealtimeStandin

    standin = RealtimeStandin(script={"summary": {"document": SUMMARY_DOC}}, port=0).start_in_thread()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG", "CELERY_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "receptionist.settings", "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}", "REDIS_URL": REDIS_URL,
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000", "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false", "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": standin.base_url,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend", "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    import redis

    recreate_database(BENCH_DB, env)
    redis.Redis.from_url(REDIS_URL).flushdb()

    log_path = REPO / "test-artifacts" / "bench-postcall-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    worker = Proc("celery worker", [PY, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads",
                                    "--concurrency", "4", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                                    "--without-heartbeat"], env, log_path)
    try:
        deadline = time.monotonic() + 60
        while " ready." not in log_path.read_text(errors="replace"):
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)

        os.environ.update(env)
        import django

        django.setup()
        from django.utils import timezone

        from accounts.models import Business
        from calls.models import Call, TranscriptEntry
        from calls.services.lifecycle import call_finalize

        business = Business.objects.create(name="Bench Dental", phone_number="+15550100777",
                                           notification_email="desk@bench.example", onboarded_at=timezone.now())
        stored_ms, observed_ms = [], []
        for i in range(args.calls + 1):  # the first call warms up the worker and is not counted
            now = timezone.now()
            call = Call.objects.create(business=business, from_number="+15550100999", to_number="+15550100777",
                                       status=Call.Status.IN_PROGRESS, started_at=now - dt.timedelta(seconds=40),
                                       answered_at=now - dt.timedelta(seconds=40), stream_started_at=now)
            TranscriptEntry.objects.bulk_create([TranscriptEntry(call=call, order=n, speaker=s, text=t)
                                                 for n, (s, t) in enumerate(TRANSCRIPT, 1)])
            t0 = time.monotonic()
            call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
            deadline = t0 + 30
            while True:
                row = Call.objects.filter(id=call.id).values("finalized_at", "summarized_at", "summary_error").get()
                if row["summarized_at"] is not None:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"call {call.id} was not summarised in 30 s:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.005)
            if row["summary_error"]:
                raise RuntimeError(f"summary failed: {row['summary_error']}")
            if i:
                observed_ms.append((time.monotonic() - t0) * 1000)
                stored_ms.append((row["summarized_at"] - row["finalized_at"]).total_seconds() * 1000)
    finally:
        worker.stop()
        standin.stop()

    def line(name: str, values: list[float]) -> str:
        return (f"| {name} | {percentile(values, 50):.0f} | {percentile(values, 90):.0f} | "
                f"{percentile(values, 99):.0f} | {max(values):.0f} | {statistics.mean(values):.0f} |")

    section = "\n".join([
        SECTION, "",
        f"Time from hang-up (`call_finalize`) to the call's summary stored, {args.calls} calls one after another, "
        "one Celery worker (threads pool, 4) on Redis, PostgreSQL, the OpenAI stand-in answering the structured-"
        "output request at once (so this is our pipeline: on-commit enqueue, broker, worker, transcript load, "
        "model round trip over HTTP, compare-and-set store). Goal: p50 under 2 s.", "",
        "| ms | p50 | p90 | p99 | max | mean |", "| --- | --- | --- | --- | --- | --- |",
        line("finalised → summary stored (product timestamps)", stored_ms),
        line("before `call_finalize` → summary seen by the bench", observed_ms), "",
        f"- Machine: {machine()}; "
        f"run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "- Command: `.venv/bin/python bench/postcall_latency.py --out docs/benchmarks.md`. A real model's own "
        "response time comes on top of these figures.",
    ])
    print(section)
    return write_section(args.out, SECTION, section) if args.out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
