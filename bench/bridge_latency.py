#!/usr/bin/env python
"""Media bridge latency: what our Twilio media path adds on top of the network and the OpenAI stand-in.

    .venv/bin/python bench/bridge_latency.py [--engines realtime,live] [--scenarios steady,cold,burst]
        [--calls 1,10,50,100] [--seconds 10] [--cold-calls 100] [--burst-calls 50,100] [--arrival 2]
        [--call-seconds 20] [--servers uvicorn,daphne,relay,direct] [--out docs/benchmarks.md] [--quick]

It plays Twilio calls at Twilio's real rate (one 160-byte μ-law frame every 20 ms per call) against the local
OpenAI stand-in in echo mode, and times every frame's round trip: load generator → server → stand-in → server
→ load generator. It does so for each voice engine (`--engines`): **realtime** (OpenAI Realtime: the stand-in's
`/v1/realtime` echoes each `input_audio_buffer.append` as a `response.output_audio.delta`) and **live** (GPT-Live:
`/v1/live/sessions` echoes each `session.input_audio.append` as a `session.output_audio.delta` once the session has
started). The bench database has one business per engine (`voice_engine` set), and a call's `To` picks it. Three
scenarios:

- steady: for every server kind and N, a warm process; N calls set up and probed, then all stream at once;
- cold:   a fresh process (uvicorn, relay), no warm-up; the first calls arrive evenly over --arrival seconds
          from the moment it takes traffic, each streaming straight after `start` (as Twilio does);
- burst:  the same on a warm process (one warm-up call first).

Cold and burst also time each call's set-up (webhook, or the relay's connect, → its first echoed frame). Server
kinds:

- uvicorn: our product as the Procfile runs it (receptionist.asgi), one process pinned to core 0;
- daphne:  the same application under daphne;
- relay:   a bare `websockets` relay (bench/bridge/relay.py, no Django): Twilio `media` →
           `input_audio_buffer.append`, deltas → Twilio `media` + `mark`; the practical floor for a Python bridge;
- direct:  no server; the load generator speaks the engine's OpenAI protocol to the stand-in (network + stand-in
           baseline; GPT-Live: `session.start`, wait for `session.started`, then the appends).

The relay speaks the engine's protocol too. "Added" latency is a server's RTT percentile minus the direct run's at
the same call count and engine, so each engine is judged against its own baseline. The stand-in and the
load generator share core 1 (when `taskset` exists), so on a 2-core machine compare ratios, not absolutes.
Everything listens on 127.0.0.1 only; every loop is bounded by a count or a deadline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The repository root, so `bench.*` and the product's apps import when this runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bridge.config import (ARRIVAL_KINDS, BENCH_DB, BUSINESS_NUMBERS, ENGINES, PY,  # noqa: E402
                                 READY_TIMEOUT_S, SECTION)
from bench.bridge.relay import fallback_standin_main, relay_main  # noqa: E402
from bench.bridge.report import bytecode_note, conclude, versions  # noqa: E402
from bench.bridge.scenarios import RunResult, run_arrivals, run_one  # noqa: E402
from bench.bridge.servers import bench_env, setup_database  # noqa: E402
from bench.harness import (Proc, can_pin, fmt, free_port, load_average, machine,  # noqa: E402
                           pin_self, wait_tcp, write_section)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="1,10,50,100", help="steady state: comma-separated concurrent call counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per call (steady state)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated voice engines: realtime (OpenAI Realtime), live (GPT-Live)")
    parser.add_argument("--servers", default="uvicorn,daphne,relay,direct",
                        help="comma-separated: uvicorn, daphne, relay, direct")
    parser.add_argument("--out", help="markdown file whose bench section to write/update, e.g. docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true",
                        help="a quick try-out: steady N=1,10 for 5 s; cold and burst 50 calls of 5 s")
    parser.add_argument("--drain", type=float, default=1.0, help="seconds to wait for echoes after the last frame")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores with taskset")
    parser.add_argument("--scenarios", default="steady,cold,burst",
                        help="comma-separated: steady (warm, set up, then all stream), cold (fresh process, calls "
                             "arrive at once), burst (warm process, calls arrive at once)")
    parser.add_argument("--cold-calls", help="cold start: comma-separated call counts arriving on a fresh process "
                                             "(default 100; --quick 50)")
    parser.add_argument("--burst-calls", help="burst: comma-separated call counts arriving on a warm process "
                                              "(default 50,100; --quick 50)")
    parser.add_argument("--arrival", type=float, default=2.0,
                        help="cold/burst: the calls arrive evenly spread over this many seconds")
    parser.add_argument("--call-seconds", type=float,
                        help="cold/burst: audio seconds per call (default 20; --quick 5)")
    parser.add_argument("--builtin-standin", action="store_true",
                        help="use the bench's tiny FALLBACK echo stand-in (bench/bridge/relay.py) instead of "
                             "`manage.py realtime_standin`")
    parser.add_argument("--_relay", nargs=3, metavar=("PORT", "UPSTREAM", "ENGINE"), help=argparse.SUPPRESS)
    parser.add_argument("--_standin", metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.seconds = "1,10", 5.0
    quick = args.quick
    args.cold_calls = args.cold_calls or ("50" if quick else "100")
    args.burst_calls = args.burst_calls or ("50" if quick else "50,100")
    args.call_seconds = args.call_seconds or (5.0 if quick else 20.0)

    def counts(flag: str, text: str) -> list[int]:
        try:
            values = [int(c) for c in text.split(",") if c.strip()]
        except ValueError:
            parser.error(f"{flag} must be comma-separated whole numbers")
        if not values or min(values) < 1 or max(values) > 1000:
            parser.error(f"{flag} must be between 1 and 1000")
        return values

    args.call_counts = counts("--calls", args.calls)
    args.cold_counts = counts("--cold-calls", args.cold_calls)
    args.burst_counts = counts("--burst-calls", args.burst_calls)
    args.server_kinds = [s.strip() for s in args.servers.split(",") if s.strip()]
    bad = [s for s in args.server_kinds if s not in {"uvicorn", "daphne", "relay", "direct"}]
    if bad:
        parser.error(f"unknown server kind(s): {', '.join(bad)}")
    args.engine_list = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in args.engine_list if e not in ENGINES]
    if bad or not args.engine_list:
        parser.error(f"--engines takes {' and/or '.join(ENGINES)}, not {', '.join(bad) or 'nothing'}")
    if args.builtin_standin and "live" in args.engine_list:
        parser.error("--builtin-standin speaks Realtime only: add --engines realtime")
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in args.scenario_list if s not in {"steady", "cold", "burst"}]
    if bad or not args.scenario_list:
        parser.error(f"--scenarios takes steady, cold and/or burst, not {', '.join(bad) or 'nothing'}")
    if not 0.5 <= args.seconds <= 300 or not 0 <= args.drain <= 30:
        parser.error("--seconds must be 0.5–300 and --drain 0–30")
    if not 0.5 <= args.call_seconds <= 300 or not 0 <= args.arrival <= 60:
        parser.error("--call-seconds must be 0.5–300 and --arrival 0–60")
    return args



def progress(r: RunResult, args: argparse.Namespace) -> str:
    """One run's figures as it finishes."""
    if r.scenario == "steady":
        return (f"{r.engine:8s} {r.kind:8s} {r.calls:4d} calls: sent {r.frames_sent}, lost {r.lost}, RTT p50/p99 "
                f"{fmt(r.rtt_p50, 2)}/{fmt(r.rtt_p99, 2)} ms, {r.measured} CPU {fmt(r.cpu_pct)} %")
    return (f"{r.scenario:5s} {r.engine:8s} {r.kind:8s} {r.calls:4d} calls over {args.arrival:g} s: set-up p50/p99 "
            f"{fmt(r.setup_p50)}/{fmt(r.setup_p99)} ms, RTT p99/max {fmt(r.rtt_p99, 1)}/{fmt(r.rtt_max, 1)} ms, "
            f"sent {r.frames_sent}, not forwarded {r.not_forwarded}, lost {r.lost}, failed {len(r.setup_failed)}, "
            f"CPU {fmt(r.cpu_pct)} %")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args._relay:
        relay_main(int(args._relay[0]), args._relay[1], args._relay[2])
        return 0
    if args._standin:
        fallback_standin_main(int(args._standin))
        return 0

    started = dt.datetime.now(dt.timezone.utc)
    command = "python bench/bridge_latency.py" + "".join(" " + shlex.quote(a) for a in argv)
    box = f"{machine()}; {versions()}"
    load = load_average()
    pin = not args.no_pin and can_pin()
    log_dir = Path(tempfile.mkdtemp(prefix="bridge_latency-"))
    print(f"{command}\n{started:%Y-%m-%d %H:%M} UTC; {box}; {bytecode_note()}; load average {load}\n"
          f"logs: {log_dir}", flush=True)

    ctx: dict[str, Any] = {"log_dir": log_dir, "pin": pin,
                           "auth_token": "bench-" + secrets.token_hex(16), "account_sid": "AC" + secrets.token_hex(16)}
    standin_port = free_port()
    ctx["standin_port"] = standin_port
    env = bench_env(server_port=8000, standin_port=standin_port, auth_token=ctx["auth_token"],
                    account_sid=ctx["account_sid"])
    standin: Proc | None = None
    standin_label = ""
    results: list[RunResult] = []
    try:
        if any(k in ("uvicorn", "daphne") for k in args.server_kinds):
            t = time.monotonic()
            setup_database(env, log_dir)
            print(f"database {BENCH_DB} created and migrated, businesses {BUSINESS_NUMBERS} added "
                  f"({time.monotonic() - t:.1f} s)", flush=True)
        if args.builtin_standin:
            argv_standin = [PY, str(Path(__file__).resolve()), "--_standin", str(standin_port)]
            standin_label = "FALLBACK echo stand-in built into the bench, bench/bridge/relay.py (not voice/offline/realtime/)"
        else:
            argv_standin = [PY, "manage.py", "realtime_standin", "--host", "127.0.0.1", "--port", str(standin_port),
                            "--echo"]
            standin_label = ("`manage.py realtime_standin --echo` (voice/offline/realtime/): Realtime at `/v1/realtime`, "
                             "GPT-Live at `/v1/live/sessions`")
        standin = Proc("stand-in", argv_standin, env, log_dir / "standin.log", core=1 if pin else None)
        ctx["standin"] = standin
        wait_tcp(standin_port, standin, READY_TIMEOUT_S)
        if pin:
            pin_self(1)  # the load generator shares core 1 with the stand-in
        print(f"stand-in: {standin_label} on port {standin_port}; pinning: "
              f"{'server core 0, stand-in + load generator core 1' if pin else 'none'}", flush=True)

        # direct first: the other kinds' "added" latency is relative to it. The engines alternate at each step, and
        # in cold start and burst our server and the bare relay too, so that a change in the box's load affects all
        # alike.
        order = sorted(args.server_kinds, key=lambda k: k != "direct") if "steady" in args.scenario_list else []
        plan = [("steady", kind, count, engine)
                for kind in order for count in args.call_counts for engine in args.engine_list]
        for scenario, scenario_counts in (("cold", args.cold_counts), ("burst", args.burst_counts)):
            if scenario in args.scenario_list:
                plan += [(scenario, kind, count, engine) for count in scenario_counts for kind in ARRIVAL_KINDS
                         if kind in args.server_kinds for engine in args.engine_list]
        for scenario, kind, count, engine in plan:
            t = time.monotonic()
            result = (run_one(kind, count, args, ctx, engine) if scenario == "steady"
                      else run_arrivals(scenario, kind, count, args, ctx, engine))
            results.append(result)
            print(f"  {progress(result, args)}"
                  f"{'  ERROR ' + result.error.splitlines()[0][:200] if result.error else ''}"
                  f"  ({time.monotonic() - t:.0f} s)", flush=True)
            if not standin.alive():
                raise RuntimeError(f"the stand-in died:\n{standin.log_tail()}")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    except Exception as exc:
        print(f"bench aborted: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if not results:
            return 2
    finally:
        if standin is not None:
            standin.stop()

    run = {"started": started, "command": command, "machine": box, "load": load, "standin_label": standin_label}
    section = conclude(results, ctx, args, run)
    return write_section(args.out, SECTION, section, spare=ctx["log_dir"] / "section.md") if args.out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
