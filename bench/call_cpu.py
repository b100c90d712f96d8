"""Server CPU per call: what one whole call costs the web process, from the incoming-call webhook to the call's
record being finalised, for our server (uvicorn as the Procfile runs it) and the bare relay.

Calls run one after another on a warm process, so nothing waits for anything else, and what is measured is CPU
time (utime + stime of the server's process tree), not latency: it depends less than latencies on what else the
machine is doing, though not at all is too much to hope (compare the rows of one run). It is the figure behind a burst's set-up times: a process that
spends X ms of CPU per call set-up can start at most 1000 / X calls a second on its one event loop core, less
what the live calls' audio needs.

    python bench/call_cpu.py [--calls 40] [--call-seconds 1] [--servers uvicorn,relay] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bridge.calls import LoadCall, Target  # noqa: E402
from bench.bridge.config import BENCH_DB, PY  # noqa: E402
from bench.bridge.servers import bench_env, db_wait_finalized, setup_database, start_server, wait_ready  # noqa: E402
from bench.harness import (Proc, cpu_seconds, fmt, free_port, load_average, machine, package_versions,  # noqa: E402
                           percentile, wait_tcp, write_section)

SECTION = "## Server CPU per call (bench/call_cpu.py)"

WARM_UP_CALLS = 3
DRAIN_S = 1.0
FINALIZE_TIMEOUT_S = 30.0


async def one_call(target: Target, index: int, frames: int) -> LoadCall:
    call = LoadCall(target, index, frames)
    if target.kind != "relay":
        call.prepare_webhook()
    await call.arrive(time.perf_counter(), DRAIN_S)
    await call.close()
    if call.r.error or call.r.first_echo == 0.0:
        raise RuntimeError(f"call {index} failed: {call.r.error or call.r.closed_early or 'no echo'}")
    return call


async def measure(kind: str, target: Target, proc: Proc, calls: int, frames: int) -> dict[str, Any]:
    for i in range(WARM_UP_CALLS):
        await one_call(target, 10_000 + i, frames)
    await asyncio.sleep(2.0)  # the warm-up calls' finalisation is not counted
    before = cpu_seconds(proc.pid)
    setups: list[float] = []
    sids: list[str] = []
    for i in range(calls):
        call = await one_call(target, i, frames)
        setups.append((call.r.first_echo - call.r.setup_start) * 1000)
        sids.append(call.r.call_sid)
    finalized_after = None
    if kind != "relay":
        # A call's record is written after Twilio's `stop`: count that work too.
        finalized_after = await asyncio.to_thread(db_wait_finalized, sids, FINALIZE_TIMEOUT_S)
        if finalized_after is None:
            raise RuntimeError("calls were not finalised in the database")
    await asyncio.sleep(1.0)
    after = cpu_seconds(proc.pid)
    if before is None or after is None:
        raise RuntimeError(f"{kind} exited")
    return {"kind": kind, "calls": calls, "cpu_ms_per_call": (after - before) * 1000 / calls,
            "setup_p50": percentile(setups, 50), "setup_p90": percentile(setups, 90)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--call-seconds", type=float, default=1.0, help="audio per call (a frame every 20 ms)")
    parser.add_argument("--servers", default="uvicorn,relay")
    parser.add_argument("--out", help="markdown file whose section to write/update, e.g. docs/benchmarks.md")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    frames = max(1, int(round(args.call_seconds / 0.02)))
    log_dir = Path(tempfile.mkdtemp(prefix="call_cpu-"))
    started_load = load_average()
    print(f"python bench/call_cpu.py --calls {args.calls} --call-seconds {args.call_seconds:g} --servers "
          f"{','.join(kinds)}\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; {machine()}; load average "
          f"{load_average()}; {package_versions(['django', 'uvicorn', 'websockets', 'psycopg'])}\nlogs: {log_dir}",
          flush=True)
    ctx: dict[str, Any] = {"log_dir": log_dir, "pin": False, "auth_token": "bench-" + secrets.token_hex(16),
                           "account_sid": "AC" + secrets.token_hex(16)}
    ctx["standin_port"] = free_port()
    env = bench_env(server_port=8000, standin_port=ctx["standin_port"], auth_token=ctx["auth_token"],
                    account_sid=ctx["account_sid"])
    if any(k != "relay" for k in kinds):
        setup_database(env, log_dir)
        print(f"database {BENCH_DB} created and migrated", flush=True)
    standin = Proc("stand-in", [PY, "manage.py", "realtime_standin", "--host", "127.0.0.1", "--port",
                                str(ctx["standin_port"]), "--echo"], env, log_dir / "standin.log")
    rows = []
    try:
        wait_tcp(ctx["standin_port"], standin, 40)
        for kind in kinds:
            proc, target, port = start_server(kind, ctx, log_dir / f"{kind}.log")
            try:
                wait_ready(kind, port, proc)
                rows.append(asyncio.run(measure(kind, target, proc, args.calls, frames)))
            finally:
                proc.stop()
    finally:
        standin.stop()
    command = (f"python bench/call_cpu.py --calls {args.calls} --call-seconds {args.call_seconds:g} --servers "
               f"{','.join(kinds)}")
    lines = [SECTION, "",
             f"What one whole call costs the web process in CPU: {args.calls} calls one after another on a warm "
             "process, each the signed webhook (relay: none), the media socket, `start`, "
             f"{args.call_seconds:g} s of audio echoed back by `manage.py realtime_standin --echo`, and `stop`; CPU = "
             "utime + stime of the server's process tree until every call's record is finalised. A CPU-time figure: "
             "other load on the machine moves it less than it moves latencies, but it does move it (caches, the "
             "sibling core; runs here on one afternoon gave 62 to 81 ms for our server and 22 to 33 ms for the relay), so compare rows of one run. It "
             "bounds how fast a "
             "process can take calls that arrive together: at X ms per call, at most 1000 / X calls a second on its "
             "one event-loop core, less what the live calls' audio needs.", "",
             f"- Command: `{command}`",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; load average at start {started_load}",
             f"- Machine: {machine()}", "",
             "| server | calls | CPU per call (ms) | set-up p50 / p90 (ms) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['kind']} | {row['calls']} | {fmt(row['cpu_ms_per_call'])} | "
                     f"{fmt(row['setup_p50'])} / {fmt(row['setup_p90'])} |")
    section = "\n".join(lines) + "\n"
    print("\n" + section)
    if args.out:
        sys.exit(write_section(args.out, SECTION, section, spare=log_dir / "section.md"))

if __name__ == "__main__":
    main()
