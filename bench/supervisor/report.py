"""The supervisor hand-off benchmark's tables, goal check, findings and notes, and its docs section."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from bench.harness import fmt, log_issues, nproc, percentile
from bench.supervisor.config import BENCH_DB, GOAL_P50_MS, GOAL_P99_MS, REDIS_URL, SECTION, STANDIN_SCRIPT
from bench.supervisor.setup import package_versions, server_versions


@dataclass
class Measured:
    """Everything one run measured, for the report."""
    redis_result: dict[str, Any]
    embedded: dict[str, Any] | None = None
    embedded_error: str = ""
    body_fresh: dict[str, list[float]] = field(default_factory=dict)
    body_kept: dict[str, list[float]] = field(default_factory=dict)
    send_times: list[float] = field(default_factory=list)
    client_times: list[float] = field(default_factory=list)
    gc_objects: int = 0
    gc_times: list[float] = field(default_factory=list)
    chat_log: list[dict[str, Any]] = field(default_factory=list)
    worker_issues: list[str] = field(default_factory=list)
    stops: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def stats(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
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
        lines.append(f"| {title} | {len(values)} | {fmt(s['p50'], 2)} | {fmt(s['p90'], 2)} | {fmt(s['p99'], 2)} | "
                     f"{fmt(s['max'], 2)} |")
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
        return f"p50 {verdict(percentile(values, 50), GOAL_P50_MS)}, p99 {verdict(percentile(values, 99), GOAL_P99_MS)}"

    return (f"Goal check (issue: hand-off p50 < {GOAL_P50_MS:g} ms, p99 < {GOAL_P99_MS:g} ms; Redis + worker mode): "
            f"**transport floor**, measured directly with the empty task: {both(floor)}. Hand-off overhead of the "
            f"product's task, estimated by subtraction (only as good as the task body's run-to-run spread): "
            f"{both(over)}. Whole round trip with an instantly answering supervisor (hand-off + the task's own "
            f"work + one model call to the stand-in): {both(totals)}.")


def where_time_goes(result: dict[str, Any], fresh: dict[str, list[float]], kept: dict[str, list[float]],
                    send: list[float], client: list[float], standin_ms: list[float]) -> str:
    """A few lines on the biggest costs, from this run's medians."""
    total = percentile([s["total_ms"] for s in result["samples"]], 50)
    floor = percentile([s["total_ms"] for s in (result.get("floor") or {}).get("samples", [])], 50)
    lines = []

    def share(ms: float | None) -> str:
        return f" ({ms / total * 100:.0f} % of the round trip's p50)" if ms is not None and total else ""

    if client:
        lines.append(f"- `openai_client()`, built afresh by every `run_supervisor`: {fmt(percentile(client, 50), 2)} ms"
                     f"{share(percentile(client, 50))}, almost all in loading the CA bundle into a new SSL context.")
    connect = None
    if fresh.get("first_step") and kept.get("first_step"):
        connect = percentile(fresh["first_step"], 50) - percentile(kept["first_step"], 50)
        lines.append(f"- A new PostgreSQL connection per task (Celery's Django fixup closes it around every task): "
                     f"≈ {fmt(connect, 2)} ms{share(connect)} (fresh − kept connection, time to the first step).")
    model = percentile([s["model_ms"] for s in result["samples"] if "model_ms" in s], 50)
    if model is not None:
        lines.append(f"- The model call: {fmt(model, 0)} ms, of which the stand-in itself "
                     f"{fmt(percentile(standin_ms, 50), 0) if standin_ms else 'n/a'} ms; the rest is the SDK's "
                     "request, a new TCP connection and the response parsing.")
    if send:
        lines.append(f"- The answer's send, `async_to_sync(layer.send)` from the worker thread (a new thread, event "
                     f"loop and Redis connection each time): {fmt(percentile(send, 50), 2)} ms.")
    if floor is not None:
        lines.append(f"- Transport floor (empty task, publish → pickup → answer send → receive): {fmt(floor, 2)} ms.")
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


def conclude(m: Measured, args: argparse.Namespace, run: dict[str, Any]) -> str:
    """Print the tables, findings, goal check and notes; return the section for docs/benchmarks.md. `run` holds
    the run's own facts: started, command, machine, load, log_dir."""
    started, command, machine, load, log_dir = (run[k] for k in ("started", "command", "machine", "load", "log_dir"))
    redis_result, embedded, embedded_error = m.redis_result, m.embedded, m.embedded_error
    body_fresh, body_kept, send_times, client_times = m.body_fresh, m.body_kept, m.send_times, m.client_times
    gc_objects, gc_times, chat_log, worker_issues = m.gc_objects, m.gc_times, m.chat_log, m.worker_issues
    stops, notes = m.stops, m.notes
    medians_fresh = {k: percentile(v, 50) for k, v in body_fresh.items()}
    medians_kept = {k: percentile(v, 50) for k, v in body_kept.items()}
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
                + (f" The stand-in's own time per chat request (whole ms): p50 {fmt(percentile(standin_ms, 50), 0)}, "
                   f"p99 {fmt(percentile(standin_ms, 99), 0)} ({len(chat_log)} requests)." if standin_ms else ""))

    findings = where_time_goes(redis_result, body_fresh, body_kept, send_times, client_times, standin_ms)
    if gc_times:
        findings += (f"\n- Slow outliers: a full garbage collection of a process like the worker (this one: "
                     f"{gc_objects:,} objects) takes {fmt(percentile(gc_times, 50), 0)} ms here; a single hand-off "
                     "slower by about that much, in whatever step it lands, is most likely one.")
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
`record_supervisor_run` minus its model call ({fmt(body_rest, 2)} ms fresh, {fmt(body_rest_kept, 2)} ms kept): what the
task itself spends besides the model (DB connect, call and business queries, OpenAI client, prompt, event insert
and cost update). Hand-off overhead = each hand-off's round trip minus its own model call minus that median, so it
holds the thread hop, publishing to Redis, the worker picking the task up, Celery's task bookkeeping, the answer's
send (new event loop and Redis connection per `async_to_sync`) and the session's receive. Because a median measured
in another phase is subtracted from each hand-off, these rows carry the task body's run-to-run spread (see its p90
below) and can go negative; read their p50 as an estimate. Percentiles of the parts do not add up to the round
trip's.

³ A control task the bench registers in its own processes only (its worker also gets `-I bench.supervisor.control`):
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
    return section
