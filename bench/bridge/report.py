"""The media bridge benchmark's tables, goal checks and notes."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from typing import Any

from bench.bridge.config import BENCH_DB, DIRECT_NOTE, ENGINES, FINALIZE_TIMEOUT_S, SECTION, SETUP_CONCURRENCY
from bench.bridge.scenarios import RunResult
from bench.harness import fmt, log_issues, package_versions


def results_table(results: list[RunResult]) -> str:
    head = ("| engine | server | calls | frames sent | frames lost | RTT p50 / p99 (ms) | added p50 / p99 (ms) "
            "| server CPU % | CPU per call (% of a core) | RSS per call (MB) |")
    rows = [head, "|" + "---|" * 10]
    for r in results:
        if r.error and not r.frames_sent:
            rows.append(f"| {r.engine} | {r.kind} | {r.calls} | — | — | failed: {r.error.splitlines()[0][:120]} "
                        "| | | | |")
            continue
        star = "¹" if r.measured == "stand-in" else ""
        lost = f"{r.lost}" + (f" ({100 * r.lost / r.frames_sent:.1f} %)" if r.lost and r.frames_sent else "")
        calls = f"{r.calls}" + (f" ({len(r.setup_failed)} failed)" if r.setup_failed else "")
        rows.append(
            f"| {r.engine} | {r.kind} | {calls} | {r.frames_sent} | {lost} | {fmt(r.rtt_p50, 2)} / {fmt(r.rtt_p99, 2)} "
            f"| {'—' if r.kind == 'direct' else fmt(r.added_p50, 2) + ' / ' + fmt(r.added_p99, 2)} "
            f"| {fmt(r.cpu_pct)}{star} | {fmt(r.cpu_per_call, 2)}{star} | {fmt(r.rss_per_call, 3)}{star} |")
    return "\n".join(rows)


def engines_table(results: list[RunResult]) -> str:
    """The voice engines side by side (empty unless both ran): one row per scenario, server and call count, each cell
    `realtime / live`. CPU per call is the steady state's; set-up is measured when calls arrive (cold, burst)."""
    if {r.engine for r in results} != set(ENGINES):
        return ""
    by = {(r.scenario, r.kind, r.calls, r.engine): r for r in results if not (r.error and not r.frames_sent)}
    scenario_rank = {"steady": 0, "cold": 1, "burst": 2}
    kind_rank = {"uvicorn": 0, "daphne": 1, "relay": 2, "direct": 3}
    keys = sorted({(r.scenario, r.kind, r.calls) for r in results},
                  key=lambda k: (scenario_rank[k[0]], k[2], kind_rank[k[1]]))

    def cells(key: tuple[str, str, int], value: Any) -> str:
        return " / ".join("—" if (r := by.get((*key, e))) is None else value(r) for e in ENGINES)

    rows = ["| scenario | server | calls | RTT p50 (ms) | RTT p99 (ms) | added p50 (ms) | added p99 (ms) "
            "| CPU per call (% of a core) | set-up p50 (ms) | set-up p99 (ms) |", "|" + "---|" * 10]
    for key in keys:
        scenario, kind, _ = key
        steady, direct = scenario == "steady", kind == "direct"
        rows.append("| " + " | ".join([
            scenario, kind, str(key[2]),
            cells(key, lambda r: fmt(r.rtt_p50, 2)), cells(key, lambda r: fmt(r.rtt_p99, 2)),
            "—" if direct or not steady else cells(key, lambda r: fmt(r.added_p50, 2)),
            "—" if direct or not steady else cells(key, lambda r: fmt(r.added_p99, 2)),
            cells(key, lambda r: fmt(r.cpu_per_call, 2) + ("¹" if r.measured == "stand-in" else "")) if steady else "—",
            "—" if steady else cells(key, lambda r: fmt(r.setup_p50)),
            "—" if steady else cells(key, lambda r: fmt(r.setup_p99))]) + " |")
    return "\n".join(rows)


def client_table(results: list[RunResult]) -> str:
    rows = ["| engine | server | calls | setup failed / closed early | dup / misrouted / unreadable | marks echoed "
            "| RTT max (ms) | send lag p99 (ms) | load gen CPU % | stand-in CPU % | core 0 / core 1 used by processes % "
            "| run-queue wait % | echoed in window % | server log lines ≥ WARNING | calls in DB (status/reason) |",
            "|" + "---|" * 15]
    for r in results:
        issues = sum(int(line.split("×", 1)[0]) for line in r.log_issues) if r.log_issues else 0
        db = ", ".join(f"{k}: {v}" for k, v in sorted(r.db.items())) or "—"
        rows.append(f"| {r.engine} | {r.kind} | {r.calls} | {len(r.setup_failed)} / {len(r.closed_early)} "
                    f"| {r.duplicates} / {r.misrouted} / {r.foreign} | {r.marks} | {fmt(r.rtt_max, 1)} "
                    f"| {fmt(r.lag_p99, 2)} | {fmt(r.loadgen_cpu_pct)} | {fmt(r.standin_cpu_pct)} "
                    f"| {' / '.join(fmt(r.core_busy.get(c), 0) for c in (0, 1))} | {fmt(r.runqueue_pct)} "
                    f"| {fmt(r.window_echoed_pct, 0)} "
                    f"| {issues if r.kind in ('uvicorn', 'daphne', 'relay') else '—'} | {db} |")
    return "\n".join(rows)


def goal_check(results: list[RunResult], calls: int = 50) -> str:
    """The steady-state goals at `calls` calls, one line per engine measured (each against its own relay)."""
    engines = [e for e in ENGINES if any(r.engine == e for r in results)]
    return "\n\n".join(_goal_check(e, [r for r in results if r.engine == e], calls) for e in engines)


def _goal_check(engine: str, results: list[RunResult], calls: int) -> str:
    by = {(r.kind, r.calls): r for r in results}
    uv, relay = by.get(("uvicorn", calls)), by.get(("relay", calls))
    if uv is None or uv.error and not uv.frames_sent:
        return f"Goal check ({engine}, {calls} calls): not measured (no uvicorn run at {calls} calls)."
    parts = []
    if uv.added_p99 is None:
        parts.append("p99 added < 10 ms: n/a (no direct run)")
    else:
        parts.append(f"p99 added < 10 ms: {'PASS' if uv.added_p99 < 10 else 'FAIL'} ({uv.added_p99:.2f} ms)")
    lost_ok = uv.lost == 0 and not uv.setup_failed and not uv.closed_early
    parts.append(f"no frame lost: {'PASS' if lost_ok else 'FAIL'} ({uv.lost} lost, {len(uv.setup_failed)} calls "
                 f"failed, {len(uv.closed_early)} closed early)")
    if relay is None or relay.cpu_per_call is None or uv.cpu_per_call is None:
        parts.append("CPU per call ≤ 1.2× relay: n/a (no relay run)")
    else:
        ratio = uv.cpu_per_call / relay.cpu_per_call if relay.cpu_per_call else float("inf")
        parts.append(f"CPU per call ≤ 1.2× relay: {'PASS' if ratio <= 1.2 else 'FAIL'} "
                     f"({uv.cpu_per_call:.2f} vs {relay.cpu_per_call:.2f} % of a core = {ratio:.2f}×)")
    return f"Goal check ({engine}, {calls} calls, uvicorn): " + "; ".join(parts) + "."


def arrivals_table(results: list[RunResult]) -> str:
    rows = ["| scenario | engine | server | calls (over s) | set-up p50 / p99 / max (ms) | set-up failures "
            "| frame RTT p50 / p99 / max (ms) | frames sent | echoed | not forwarded during set-up | lost "
            "| server CPU % |", "|" + "---|" * 12]
    for r in results:
        calls = f"{r.calls} ({r.arrival_s:g} s)"
        if r.error and not r.frames_sent:
            rows.append(f"| {r.scenario} | {r.engine} | {r.kind} | {calls} | failed: {r.error.splitlines()[0][:120]} "
                        "| | | | | | | |")
            continue
        rows.append(f"| {r.scenario} | {r.engine} | {r.kind} | {calls} | {fmt(r.setup_p50)} / {fmt(r.setup_p99)} / "
                    f"{fmt(r.setup_max)} | {len(r.setup_failed)} | {fmt(r.rtt_p50, 2)} / {fmt(r.rtt_p99, 2)} / "
                    f"{fmt(r.rtt_max)} | {r.frames_sent} | {r.frames_received} | {r.not_forwarded} | {r.lost} "
                    f"| {fmt(r.cpu_pct)} |")
    return "\n".join(rows)


def arrivals_client_table(results: list[RunResult]) -> str:
    rows = ["| scenario | engine | server | calls | taking traffic after start (s) | set-up parts p50 / p99 (ms): webhook; "
            "socket open; start → first echo | arrival lag max (ms) "
            "| send lag p99 (ms) | closed early | dup / misrouted / unreadable | load gen CPU % | stand-in CPU % "
            "| core 0 / core 1 used by processes % | run-queue wait % | server log lines ≥ WARNING "
            "| calls in DB (status/reason) |", "|" + "---|" * 16]
    for r in results:
        issues = sum(int(line.split("×", 1)[0]) for line in r.log_issues) if r.log_issues else 0
        db = ", ".join(f"{k}: {v}" for k, v in sorted(r.db.items())) or "—"
        parts = "; ".join(" / ".join(fmt(v) for v in r.setup_parts[name]) if name in r.setup_parts else "—"
                          for name in ("webhook", "socket", "flow"))
        rows.append(f"| {r.scenario} | {r.engine} | {r.kind} | {r.calls} | {fmt(r.started_to_ready, 2)} | {parts} "
                    f"| {fmt(r.arrival_lag_max, 1)} | {fmt(r.lag_p99, 2)} | {len(r.closed_early)} "
                    f"| {r.duplicates} / {r.misrouted} / {r.foreign} | {fmt(r.loadgen_cpu_pct)} "
                    f"| {fmt(r.standin_cpu_pct)} | {' / '.join(fmt(r.core_busy.get(c), 0) for c in (0, 1))} "
                    f"| {fmt(r.runqueue_pct)} | {issues} | {db} |")
    return "\n".join(rows)


def issue13_goals(results: list[RunResult]) -> list[str]:
    """The three goals of issue 13 for each engine measured, each against that engine's own runs."""
    engines = [e for e in ENGINES if any(r.engine == e for r in results)]
    if len(engines) < 2:
        return _issue13_goals(results)
    lines = []
    for engine in engines:
        lines.append(f"{engine}:")
        lines += ["  " + line for line in _issue13_goals([r for r in results if r.engine == engine])]
    return lines


def _issue13_goals(results: list[RunResult]) -> list[str]:
    """The three goals of issue 13, each with its figures; our server (uvicorn) is judged, the relay shown beside."""
    def find(scenario: str, kind: str, calls: int) -> RunResult | None:
        found = [r for r in results if (r.scenario, r.kind, r.calls) == (scenario, kind, calls)]
        return found[0] if found and not (found[0].error and not found[0].frames_sent) else None

    lines = ["(a) cold start: no frame of the first 100 calls (over 2 s) more than 50 ms beyond the steady state's "
             "p99 at 100 calls"]
    colds = sorted((r for r in results if r.scenario == "cold"), key=lambda r: (r.calls, r.kind != "uvicorn"))
    if not colds:
        lines.append("  - not measured (no cold scenario in this run)")
    for r in colds:
        steady = find("steady", r.kind, 100)
        who = r.kind + ("" if r.kind == "uvicorn" else " (for comparison)")
        shape = "" if (r.calls, r.arrival_s) == (100, 2) else f" [measured {r.calls} calls over {r.arrival_s:g} s]"
        if r.rtt_max is None or steady is None or steady.rtt_p99 is None:
            why = "no steady run at 100 calls" if steady is None or steady.rtt_p99 is None else "no frame came back"
            lines.append(f"  - {who}{shape}: n/a ({why})")
            continue
        excess = r.rtt_max - steady.rtt_p99
        ok = excess <= 50 and not r.lost and not r.setup_failed
        lines.append(f"  - {who}{shape}: max RTT {r.rtt_max:.1f} ms − steady p99 {steady.rtt_p99:.2f} ms = "
                     f"{excess:+.1f} ms; {r.lost} lost, {len(r.setup_failed)} set-up failures, "
                     f"{r.not_forwarded} not forwarded during set-up: {'PASS' if ok else 'FAIL'}")
    lines.append("(b) burst: set-up p99 under 100 ms for 50 calls within 2 s on a warm process")
    bursts = [r for r in (find("burst", "uvicorn", 50), find("burst", "relay", 50)) if r is not None]
    if not bursts:
        lines.append("  - not measured (no burst of 50 calls in this run)")
    for r in bursts:
        who = r.kind + ("" if r.kind == "uvicorn" else " (for comparison)")
        shape = "" if r.arrival_s == 2 else f" [over {r.arrival_s:g} s]"
        ok = r.setup_p99 is not None and r.setup_p99 < 100 and not r.setup_failed
        lines.append(f"  - {who}{shape}: set-up p99 {fmt(r.setup_p99)} ms, {len(r.setup_failed)} set-up failures: "
                     f"{'PASS' if ok else 'FAIL'}")
    lines.append("(c) steady state: CPU per call at 50 and 100 calls no more than the bare relay's × 1.1")
    for calls in (50, 100):
        uv, relay = find("steady", "uvicorn", calls), find("steady", "relay", calls)
        if uv is None or relay is None or uv.cpu_per_call is None or not relay.cpu_per_call:
            lines.append(f"  - {calls} calls: n/a (needs steady uvicorn and relay runs at {calls} calls)")
            continue
        ratio = uv.cpu_per_call / relay.cpu_per_call
        lines.append(f"  - {calls} calls: uvicorn {uv.cpu_per_call:.2f} vs relay {relay.cpu_per_call:.2f} % of a "
                     f"core = {ratio:.2f}×: {'PASS' if ratio <= 1.1 else 'FAIL'}")
    return lines


def oddities(results: list[RunResult], ctx: dict[str, Any]) -> list[str]:
    notes = []
    for r in results:
        label = f"{r.engine} {r.kind} × {r.calls}"
        label = label if r.scenario == "steady" else f"{r.scenario}: {label}"
        if r.error:
            notes.append(f"{label}: run error: {r.error.splitlines()[0][:300]}")
        if r.setup_failed:
            notes.append(f"{label}: {len(r.setup_failed)} calls failed to set up, e.g. {r.setup_failed[0]}")
        if r.closed_early:
            notes.append(f"{label}: {len(r.closed_early)} sockets closed early, e.g. {r.closed_early[0]}")
        if r.lost:
            notes.append(f"{label}: {r.lost} of {r.frames_sent} frames not echoed within the drain")
        if r.duplicates or r.misrouted:
            notes.append(f"{label}: {r.duplicates} duplicate and {r.misrouted} misrouted frames")
        for line in r.log_issues:
            notes.append(f"{label}: server log: {line}")
        if r.kind in ("uvicorn", "daphne") and r.db:
            good = r.db.get("completed/caller_hung_up", 0)
            if good != (r.calls - len(r.setup_failed) if r.scenario == "steady" else r.streamed):
                notes.append(f"{label}: calls in the DB: {r.db}")
        if r.kind in ("uvicorn", "daphne") and r.db and r.finalize_s is None:
            notes.append(f"{label}: not every call was finalised in the DB within {FINALIZE_TIMEOUT_S:.0f} s "
                         "after the sockets closed")
        elif r.finalize_s is not None and r.finalize_s > 2:
            notes.append(f"{label}: finalising the calls took {r.finalize_s:.1f} s after the sockets closed")
        if r.stop_how.startswith("SIGKILL"):
            notes.append(f"{label}: server needed {r.stop_how}")
        if r.window_echoed_pct is not None and r.window_echoed_pct < 95:
            notes.append(f"{label}: only {r.window_echoed_pct:.0f} % of the frames due in the CPU window came back in "
                         "it (a backlog): CPU per call understates the cost and RTTs are queueing")
        if r.cpu_pct is not None and r.cpu_pct > 90:
            notes.append(f"{label}: {r.measured} saturated its core ({r.cpu_pct:.0f} %)")
        ours0 = r.cpu_pct if r.measured == "server" else 0.0
        if ctx["pin"] and r.core_busy.get(0) is not None and ours0 is not None and r.core_busy[0] - ours0 > 15:
            notes.append(f"{label}: other processes used {r.core_busy[0] - ours0:.0f} % of the server's core 0")
        for core, steal in sorted(r.core_steal.items()):
            if steal > 5:
                notes.append(f"{label}: the hypervisor stole {steal:.0f} % of core {core}")
        if r.runqueue_pct is not None and r.runqueue_pct > 10:
            notes.append(f"{label}: the {r.measured} waited for a CPU {r.runqueue_pct:.0f} % of the window")
        if (r.loadgen_cpu_pct or 0) + (r.standin_cpu_pct or 0) > 85:
            notes.append(f"{label}: core 1 busy (load gen {fmt(r.loadgen_cpu_pct, 0)} % + stand-in "
                         f"{fmt(r.standin_cpu_pct, 0)} %): client-side queueing is inside these RTTs")
        if r.lag_p99 is not None and r.lag_p99 > 5:
            notes.append(f"{label}: the load generator sent late (p99 {r.lag_p99:.1f} ms behind schedule)")
        if r.arrival_lag_max is not None and r.arrival_lag_max > 5:
            notes.append(f"{label}: the load generator started a call up to {r.arrival_lag_max:.1f} ms after its "
                         "scheduled arrival")
    for line in log_issues(ctx["log_dir"] / "standin.log"):
        notes.append(f"stand-in log: {line}")
    return notes




def bytecode_note() -> str:
    """Cold start depends on whether imports compile from source: say which it was."""
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "PYTHONDONTWRITEBYTECODE set (servers write no .pyc files)"
    return "PYTHONDONTWRITEBYTECODE not set"


def versions() -> str:
    return package_versions(("django", "uvicorn", "daphne", "websockets", "channels"))


def _bullet(line: str) -> str:
    """A goal line as a markdown list item at its own indent (lines that are items already stay as they are)."""
    text = line.lstrip()
    return line if text.startswith("- ") else line[:len(line) - len(text)] + "- " + text


def conclude(results: list[RunResult], ctx: dict[str, Any], args: argparse.Namespace, run: dict[str, Any]) -> str:
    """Print the tables, the goals and anything odd; return the section for docs/benchmarks.md. `run` holds the
    run's own facts: started, command, machine, load, standin_label."""
    started, command, machine, load = run["started"], run["command"], run["machine"], run["load"]
    standin_label, pin, log_dir = run["standin_label"], ctx["pin"], ctx["log_dir"]
    steady = [r for r in results if r.scenario == "steady"]
    arrivals = [r for r in results if r.scenario != "steady"]
    # Each engine against its own direct baseline: the same protocol, stand-in path and call count.
    direct = {(r.engine, r.calls): r for r in steady if r.kind == "direct" and r.rtt_p50 is not None}
    for r in steady:
        base = direct.get((r.engine, r.calls))
        if r.kind != "direct" and base is not None and r.rtt_p50 is not None:
            r.added_p50 = r.rtt_p50 - base.rtt_p50
            r.added_p99 = r.rtt_p99 - base.rtt_p99
    kind_rank = {"uvicorn": 0, "daphne": 1, "relay": 2, "direct": 3}
    engine_rank = {e: i for i, e in enumerate(ENGINES)}
    steady.sort(key=lambda r: (engine_rank[r.engine], r.calls, kind_rank[r.kind]))
    arrivals.sort(key=lambda r: (r.scenario != "cold", engine_rank[r.engine], r.calls, kind_rank[r.kind]))
    both = engines_table(steady + arrivals)
    goals = issue13_goals(results)
    direct_note = f"\n{DIRECT_NOTE}\n" if direct else ""  # the ¹ marks only appear on direct rows
    notes = oddities(steady + arrivals, ctx)
    finished = dt.datetime.now(dt.timezone.utc)
    if both:
        print()
        print(both)
    if steady:
        table, clients, check = results_table(steady), client_table(steady), goal_check(steady)
        print()
        print(table)
        print(direct_note)
        print(clients)
        print()
        print(check)
    if arrivals:
        print()
        print(arrivals_table(arrivals))
        print()
        print(arrivals_client_table(arrivals))
    print("\nGoals (issue 13):\n" + "\n".join(goals))
    if notes:
        print("\nOdd things seen:\n" + "\n".join(f"- {n}" for n in notes))
    print(f"\nTook {(finished - started).total_seconds():.0f} s; logs in {log_dir}")

    section = f"""{SECTION}

What our media path adds to every 20 ms audio frame, in steady state and when calls arrive together. Every
simulated Twilio call sends one tagged 160-byte μ-law frame every 20 ms through the server to the local OpenAI
stand-in in echo mode, which sends each frame straight back; the server forwards it to the caller as Twilio
`media` + `mark`, and the load generator echoes every `mark` as Twilio would. RTT is per frame, send to echo.
The voice engines: **realtime** = OpenAI Realtime, the stand-in echoes each `input_audio_buffer.append` as a
`response.output_audio.delta`; **live** = GPT-Live, each `session.input_audio.append` as a
`session.output_audio.delta`, once `session.started` has answered the `session.start` (the model says nothing of
its own). The bench database has one business per engine (`voice_engine` set, its own number); a call's `To` picks
it. Each engine's figures are measured and judged against its own direct baseline.

- Command: `{command}` (from the repository root, with `.venv/bin/python`)
- Date: {started:%Y-%m-%d %H:%M} UTC; took {(finished - started).total_seconds():.0f} s; load average at start {load}
- Machine: {machine}; {bytecode_note()}
- Engines: {", ".join(sorted({r.engine for r in results}, key=ENGINES.index))}
- Stand-in: {standin_label}
- Servers: **uvicorn** = the Procfile's `web` command (uvloop, httptools, `--ws websockets-sansio`) serving
  `receptionist.asgi`; **daphne** = `daphne receptionist.asgi:application`; both with DEBUG=false, PostgreSQL
  (`{BENCH_DB}`) and `REDIS_URL` (the real channels-redis/cache config). **relay** = a bare `websockets` relay
  inside the bench (no Django) speaking the engine's protocol: the practical floor for Python. **direct** = no
  server; the load generator speaks the engine's protocol to the stand-in (the network + stand-in baseline;
  GPT-Live: `session.start`, wait for `session.started`, then the appends). One fresh server process per row.
- Load generator: one asyncio (uvloop) process with a small callback-driven WebSocket client (and HTTP client for
  the webhooks) written for the bench (`bench/bridge/wire.py`), so it costs less per message than the servers it
  measures (bench/README.md says why not the call simulator's). Per-core
  busy % (from /proc/stat) and the measured process's run-queue wait (from schedstat) show how much other load
  there was; when they are high, that run's latencies say more about the box than about the server.
- Cores: {'the server is pinned to core 0; the stand-in and the load generator share core 1' if pin else 'no pinning'}.
  On a 2-core machine that other people's test runs may share, the load generator, the stand-in and the
  server compete for 2 cores: **compare ratios between rows, not absolute numbers.**
"""
    if both:
        section += f"""
### The engines side by side

Each cell is `realtime / live`, from the tables below. Added = the server's RTT percentile minus its own engine's
direct run at the same N. CPU per call is the steady state's (server process, % of one core). Set-up = webhook
sent (relay: socket connect) → the call's first echoed frame, when calls arrive together (cold, burst).

{both}
{direct_note}"""
    if steady:
        section += f"""
### Steady state

N calls on a warm process (one warm-up call first), set up {SETUP_CONCURRENCY} at a time through the real signed
incoming-call webhook, stream token and `start` (uvicorn, daphne), each probed until one frame comes back; then all
stream at once on a drift-free schedule, spread evenly over the 20 ms period, for {args.seconds:g} s.
Added = a server's RTT percentile minus the direct run's at the same N and engine. Server CPU % is utime+stime of the server
process (and children) over the steady-state window ({steady[0].window_s:.1f} s of the {args.seconds:g} s), in %
of one core; CPU per call = that / N (1 % of a core = 10 ms CPU per second of call). RSS per call = (VmRSS in
steady state − idle VmRSS after the warm-up call) / N. Frames lost = sent − echoed back within {args.drain:g} s
after the last frame.

{table}
{direct_note}
Client side and checks (core 1 saturation shows up here; unreadable = media we could not read a tag from):

{clients}

{check}
"""
    if arrivals:
        section += f"""
### Cold start and bursts

Calls arriving together, as Twilio delivers them, for our server and the bare relay side by side. **Cold**: a
freshly started process, no warm-up call; the first call arrives the moment it takes traffic (uvicorn: `/healthz/`
first answers 200; relay: its port accepts). **Burst**: a fresh process after one warm-up call. In both, the calls
arrive evenly spread over {args.arrival:g} s; each sends the signed webhook (relay: none, it connects at once),
opens the media socket, sends `connected` + `start` and then streams a frame every 20 ms straight away, without
waiting for anything, for {args.call_seconds:g} s, then `stop`. **Set-up** = webhook sent (relay: socket connect)
→ the call's first echoed frame (the stream flows); a call with no echo at all is a set-up failure. RTT counts
every echoed frame, late backlog included. Frames sent before a call's first echo that never come back are **not
forwarded during set-up** (for a failed call, all of its frames); frames sent after it that are not back within
{args.drain:g} s of the last frame are **lost**. Server CPU % = utime+stime of the server's process tree from the
first arrival until the last call closed, in % of one core.

{arrivals_table(arrivals)}

Client side (taking traffic after start = process start → first accepting, cold only; set-up parts = webhook
sent → TwiML read, → media socket open and `start` sent, → first echo; arrival lag = how late the load generator
began a call after its scheduled time):

{arrivals_client_table(arrivals)}
"""
    section += "\n### Goals (issue 13)\n\n" + "\n".join(_bullet(line) for line in goals) + "\n"
    if notes:
        section += "\nOdd things seen in this run:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return section
