"""Scale-out soak: the production shape on one machine, with calls that talk and faults injected.

nginx (Debian's package, configured with the README's "TLS proxy" block, plain HTTP) in front of two uvicorn `web`
processes, the Procfile's Celery workers and beat, channels-redis, PostgreSQL, and the OpenAI stand-in echoing every
frame while it runs the conversation script (`--echo-scripted`). Simulated Twilio calls (bench/bridge: the lean
client) arrive through nginx, turn after turn: every caller asks a question, a share barge in over the answer, a
share book a cleaning through the supervisor (the stand-in answers each model step after `--step-delay-ms`, as a
model does). During the run: kill -9 and restart a Celery worker, restart Redis, restart PostgreSQL, drop a share
of the live upstream sessions (the calls reconnect). The soak starts its own redis-server and its own PostgreSQL
cluster (initdb in a temporary directory) and restarts those, never the machine's.

It checks: every call the server took is finalised, no frame lost outside the fault windows, every dropped session
reconnected, every summary stored once, no appointment doubled; and reports the frame round trip outside the fault
windows and how long supervisor requests waited in the Celery queue (enqueue -> task start).

    python bench/soak.py                          # 100 calls at once for 5 minutes, the Procfile's pools
    python bench/soak.py --pool old              # the same with the previous Procfile's worker (4 prefork processes)
    python bench/soak.py --calls 10 --seconds 60 --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bridge.calls import LoadCall, Target  # noqa: E402
from bench.bridge.servers import bench_env, server_argv  # noqa: E402
from bench.bridge.wire import FRAME_S, http_request  # noqa: E402
from bench.harness import (REPO, Proc, fmt, free_port, load_average, log_issues, machine,  # noqa: E402
                           package_versions, percentile, run_step, wait_http, wait_tcp, write_section)

SECTION = "## Scale-out soak (bench/soak.py)"
PY = sys.executable
# The worker line of the Procfile before the supervisor had a queue of its own: one pool for every task.
OLD_WORKER = "celery -A receptionist worker --loglevel=INFO --concurrency=${CELERY_CONCURRENCY:-4}"
FAULTS = ("worker", "redis", "postgres", "upstream")
WINDOW_TAIL_S = 5.0     # a fault's window lasts until it is repaired, and this long after
WINDOW_LEAD_S = 1.0     # and starts this long before it: a frame still on its way when the fault strikes (sent to
                        # a model session just before it is aborted) is lost with it
DRAIN_S = 3.0           # after its last frame a call waits this long for echoes (a reconnect may hold some)
BUSINESSES = 10         # calls spread over them, so that the bookings have slots enough

# One conversation for every call: each committed caller turn takes the next entry (a reconnected session is
# seeded with the transcript, whose caller turns take theirs). Which turns a call gets to is its plan.
SCRIPT = {
    "greeting": "Thanks for calling {business.name}, how can I help?",
    "response_delay_ms": 300,
    "turns": [
        {"caller": "What are your opening hours?", "agent": "We're open eight to six, every day."},
        {"caller": "And is there parking?", "agent": "Yes, there is free parking behind the building."},
        {"caller": "I'd like to book a cleaning tomorrow.", "say": "One moment, let me check.",
         "tool": {"name": "ask_supervisor", "arguments": {"request": "Book a cleaning tomorrow for the caller"}},
         "after_tool": "{output.answer}"},
    ],
    "default_agent": "Is there anything else I can help with?",
}


def supervisor_script(step_delay_ms: int) -> list[dict]:
    return [{"match": "book", "steps": [
        {"tool": "check_availability", "arguments": {"date": "{today+1}", "service": "Cleaning"},
         "delay_ms": step_delay_ms},
        {"tool": "book_appointment", "when": "result.check_availability.slots.0", "delay_ms": step_delay_ms,
         "arguments": {"name": "Soak Caller", "service": "Cleaning", "start": "{result.check_availability.slots.0}"}},
        {"say": "You're booked for a cleaning tomorrow. See you then!", "delay_ms": step_delay_ms}]},
        {"default": True, "steps": [{"say": "I can help with bookings.", "delay_ms": step_delay_ms}]}]


@dataclass
class SoakConfig:
    calls: int = 100             # calls at once: each slot runs calls back to back
    seconds: float = 300.0       # slots start new calls for this long
    call_min_s: float = 30.0
    call_max_s: float = 50.0
    booking_share: float = 0.3
    barge_share: float = 0.3
    arrival_s: float = 10.0      # the first calls arrive spread over this long
    faults: dict[str, float] = field(default_factory=dict)  # fault -> seconds after the start
    drop_share: float = 0.1
    step_delay_ms: int = 1500
    pool: str = "new"            # new: the Procfile's worker + supervisor lines; old: OLD_WORKER for every task
    workers: int = 2             # processes of each worker line
    settle_s: float = 90.0       # after the last call: until everything is finalised and summarised
    one_round: bool = False      # each slot places one call only (the CI test)


def default_faults(seconds: float) -> dict[str, float]:
    """One of each, spread over the run: the worker at 1/5, Redis at 2/5, PostgreSQL at 3/5, upstream at 4/5."""
    return {name: round(seconds * (i + 1) / 5, 1) for i, name in enumerate(FAULTS)}


# --- the call ---------------------------------------------------------------------------------------------------

@dataclass
class Plan:
    seconds: float
    barge: bool
    booking: bool

    def speech(self) -> list[tuple[float, float]]:
        """When the caller speaks (seconds from the stream's start), the agent speaking in real time: after the
        greeting (0.3-3.5 s) a question, whose answer streams from about 5.8 s to 8.1 s; a barge-in over that answer
        or, later, a second question; the booking (the supervisor's answer comes about 5 s after it)."""
        turns = [(4.5, 5.3)]
        if self.barge:
            turns.append((6.5, 7.1))
        elif self.booking:
            turns.append((11.0, 11.8))
        if self.booking:
            turns.append((17.0, 18.0))
        return turns


class SoakCall(LoadCall):
    """A bench call whose caller speaks on a plan (loud frames), to a business of its own choosing."""

    def __init__(self, target: Target, index: int, plan: Plan, to_number: str) -> None:
        super().__init__(target, index, int(plan.seconds / FRAME_S))
        self.plan = plan
        self.quiet = True
        self.to_number = to_number
        self.from_number = f"+1202555{index % 10000:04d}"  # a number of its own, valid, so the caller can book
        self.status_callback: int | str = 0
        self.loud = bytearray(self.r.frames)
        for start, end in plan.speech():
            for seq in range(int(start / FRAME_S), min(self.r.frames, int(end / FRAME_S))):
                self.loud[seq] = 1

    def is_loud(self, seq: int) -> bool:
        return bool(self.loud[seq]) if seq < len(self.loud) else False


# --- our own PostgreSQL and Redis ---------------------------------------------------------------------------------

def pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
    return versions[-1].parent


class PgCluster:
    """A PostgreSQL cluster of the soak's own (initdb in `root`, trust auth, loopback, a free port): restarted as a
    fault, never the machine's. initdb refuses root, so as root it runs as the `postgres` user."""

    def __init__(self, root: Path) -> None:
        self.home = root / "pg"
        self.data = self.home / "data"
        self.log = self.home / "server.log"
        self.port = free_port()
        self.bin = pg_bin()

    def _run(self, *argv: str, timeout: float = 120) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} {argv[-1]} failed ({result.returncode}): {result.stderr[-1500:]}")

    def init_and_start(self) -> None:
        self.home.mkdir(mode=0o755)
        if os.geteuid() == 0:
            shutil.chown(self.home, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.home} -c listen_addresses=127.0.0.1 -c max_connections=500 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")

    def restart(self) -> None:
        # Same server options (postmaster.opts); the log file again, or the server would write to our pipe.
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"


# --- the stack ----------------------------------------------------------------------------------------------------

def procfile_line(name: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"the Procfile has no {name!r} line")


def expand(command: str, env: dict[str, str]) -> list[str]:
    """A Procfile command as argv: ${VAR:-default} from `env`, `celery` run by this Python."""
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), command)
    argv = shlex.split(text)
    return [PY, "-m", "celery", *argv[1:]] if argv[0] == "celery" else argv


def nginx_conf(root: Path, port: int, upstreams: list[int]) -> str:
    """The README's nginx block (### TLS proxy), as it is, in a server on loopback with the map it mentions."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### TLS proxy", 1)[1]
    block = re.search(r"```nginx\n(.*?)```", section, re.S)
    if block is None:
        raise RuntimeError("README's TLS proxy section has no nginx block")
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in upstreams)
    temp = "".join(f"    {kind}_temp_path {root}/nginx-{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    location = "\n".join("        " + line for line in block.group(1).strip().splitlines())
    return (f"daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/nginx-error.log warn;\n"
            f"events {{ worker_connections 8192; }}\nhttp {{\n    access_log off;\n{temp}"
            "    map $http_upgrade $connection_upgrade { default upgrade; \"\" close; }\n"
            f"    upstream receptionist_web {{\n{servers}    }}\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n{location}\n    }}\n}}\n")


class Stack:
    """Everything the calls run against, started and restarted here."""

    def __init__(self, cfg: SoakConfig, root: Path) -> None:
        self.cfg = cfg
        self.root = root
        self.pg = PgCluster(root)
        self.redis_port = free_port()
        self.standin_port = free_port()
        self.nginx_port = free_port()
        self.web_ports = [free_port(), free_port()]
        self.auth_token = secrets.token_hex(16)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.procs: dict[str, Proc] = {}
        self.restarts: dict[str, int] = {}
        self.busy: set[str] = set()     # being restarted by a fault: not an exit of its own
        self.exits: list[str] = []      # processes that exited on their own during the run
        env = bench_env(server_port=self.nginx_port, standin_port=self.standin_port, auth_token=self.auth_token,
                        account_sid=self.account_sid)
        for name in [k for k in env if k.startswith(("CELERY_", "SUPERVISOR_", "OPENAI_", "DB_"))]:
            env.pop(name)
        env.update({
            "DATABASE_URL": self.pg.url("receptionist"),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.nginx_port}",
            "OPENAI_API_KEY": "sk-soak",
            "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{self.standin_port}/v1/realtime",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.standin_port}/v1",
            "LOG_LEVEL": "WARNING",
            # The reaper's production schedule (a ringing call after 5 minutes, every 60 s) is longer than the soak
            # waits: a call left ringing by a fault is finalised within it this way.
            "REAPER_RINGING_MINUTES": "1",
            "REAPER_INTERVAL_SECONDS": "10",
        })
        self.env = env

    # -- processes --

    def start_proc(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        n = self.restarts.get(name, 0)
        self.restarts[name] = n + 1
        proc = Proc(name, argv, env or self.env, self.root / f"{name}{'-' + str(n) if n else ''}.log")
        self.procs[name] = proc
        return proc

    def redis_argv(self) -> list[str]:
        return ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no"]

    def start_redis(self) -> None:
        wait_tcp(self.redis_port, self.start_proc("redis", self.redis_argv()), 20)

    def worker_lines(self) -> dict[str, str]:
        if self.cfg.pool == "old":
            return {"worker": OLD_WORKER}
        return {"worker": procfile_line("worker"), "supervisor": procfile_line("supervisor")}

    def start_worker(self, name: str) -> Proc:
        line = self.worker_lines()[name.rsplit("-", 1)[0]]
        return self.start_proc(name, expand(line, self.env) + ["--hostname", f"{name}@soak"])

    def worker_names(self) -> list[str]:
        return [f"{line}-{i}" for line in self.worker_lines() for i in range(1, self.cfg.workers + 1)]

    def wait_workers(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for name in names:
            proc = self.procs[name]
            while "ready." not in proc.log_path.read_text(errors="replace"):
                if not proc.alive():
                    raise RuntimeError(proc.died())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} was not ready within {timeout:.0f} s:\n{proc.log_tail()}")
                time.sleep(0.2)

    def start(self, log: Any = print) -> None:
        self.root.chmod(0o755)  # the postgres user reaches its cluster inside
        log(f"soak: PostgreSQL cluster on {self.pg.port}, redis-server on {self.redis_port} (ours), logs in {self.root}")
        self.pg.init_and_start()
        import psycopg

        with psycopg.connect(self.pg.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE DATABASE receptionist")
        self.start_redis()
        run_step("migrate", [PY, "manage.py", "migrate", "--noinput"], self.env, self.root)
        run_step("businesses", [PY, "manage.py", "shell", "-c", SETUP_CODE % BUSINESSES], self.env, self.root)
        script = self.root / "script.json"
        script.write_text(json.dumps({**SCRIPT, "supervisor": supervisor_script(self.cfg.step_delay_ms),
                                      "summary": {"delay_ms": self.cfg.step_delay_ms}}))
        standin = self.start_proc("standin", [PY, "-m", "voice.offline.realtime", "--port", str(self.standin_port),
                                              "--echo-scripted", "--script", str(script), "--speed", "1"])
        for i, port in enumerate(self.web_ports, 1):
            self.start_proc(f"web-{i}", server_argv("uvicorn", port))
        conf = self.root / "nginx.conf"
        conf.write_text(nginx_conf(self.root, self.nginx_port, self.web_ports))
        run_step("nginx-test", ["nginx", "-t", "-c", str(conf), "-p", str(self.root)], self.env, self.root)
        nginx = self.start_proc("nginx", ["nginx", "-c", str(conf), "-p", str(self.root)])
        for name in self.worker_names():
            self.start_worker(name)
        self.start_proc("beat", expand(procfile_line("beat"), self.env) + ["--schedule", str(self.root / "beat")])
        wait_tcp(self.standin_port, standin, 30)
        for i, port in enumerate(self.web_ports, 1):
            wait_http(f"http://127.0.0.1:{port}/healthz/", self.procs[f"web-{i}"], 60)
        wait_tcp(self.nginx_port, nginx, 20)
        wait_http(f"http://127.0.0.1:{self.nginx_port}/healthz/", nginx, 20)
        self.wait_workers(self.worker_names())

    def stop(self) -> dict[str, str]:
        how = {name: proc.stop() for name, proc in reversed(list(self.procs.items()))}
        self.pg.stop()
        return how

    # -- faults: each returns once it is repaired --

    # Processes are started from the main thread only: Proc's children get SIGTERM when the *thread* that started
    # them ends (PR_SET_PDEATHSIG), so one started in a worker thread would die with it. Waiting runs in threads.

    async def kill_workers(self) -> str:
        """kill -9 the first process of each worker line (its whole process group, as a dying container), then
        start it again."""
        names = [f"{line}-1" for line in self.worker_lines()]
        self.busy.update(names)
        for name in names:
            proc = self.procs[name]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.stop)
            self.start_worker(name)
        await asyncio.to_thread(self.wait_workers, names)
        self.busy.difference_update(names)
        return ", ".join(names)

    async def restart_redis(self) -> str:
        self.busy.add("redis")
        await asyncio.to_thread(self.procs["redis"].stop)
        proc = self.start_proc("redis", self.redis_argv())
        await asyncio.to_thread(wait_tcp, self.redis_port, proc, 20)
        self.busy.discard("redis")
        return f"redis-server on {self.redis_port}, no persistence: queued tasks and channel messages are lost"

    def restart_postgres(self) -> str:
        self.pg.restart()
        return f"pg_ctl restart -m fast on {self.pg.port}"

    def watch(self, t0: float) -> None:
        """A process manager's part (systemd's Restart=always, a platform's dyno restart): a worker or beat that
        exited on its own is recorded and started again; any other exit is only recorded."""
        for name, proc in list(self.procs.items()):
            if name in self.busy or proc.alive():
                continue
            self.exits.append(f"{name} exited ({proc.popen.returncode}) at {time.perf_counter() - t0:.0f} s: "
                              f"{proc.last_line()[:160]}")
            proc.stop()
            if name.startswith(("worker-", "supervisor-")):
                self.start_worker(name)
            elif name == "beat":
                self.start_proc("beat", expand(procfile_line("beat"), self.env) + ["--schedule", str(self.root / "beat")])
            else:
                self.busy.add(name)  # recorded once

    async def drop_upstream(self) -> str:
        status, body = await http_request(f"http://127.0.0.1:{self.standin_port}/standin/drop",
                                          body=json.dumps({"share": self.cfg.drop_share}).encode(),
                                          headers={"Content-Type": "application/json"})
        if status != 200:
            raise RuntimeError(f"the stand-in's drop answered {status}: {body[:200]}")
        answer = json.loads(body)
        self.dropped_sessions = len(answer["dropped"])
        return f"{len(answer['dropped'])} of {answer['live']} live sessions aborted (no close frame)"


SETUP_CODE = """
import datetime as dt
from django.utils import timezone
from accounts.models import Business, OpeningHours, Service
from billing.models import BillingAccount
for i in range(%d):
    b = Business.objects.create(name=f"Soak Dental {i}", phone_number=f"+155501009{i:02d}", onboarded_at=timezone.now())
    BillingAccount.objects.create(business=b, status="active", trial_minutes=0, plan_key="bench",
                                  current_period_start=timezone.now())
    for day in range(7):
        OpeningHours.objects.create(business=b, weekday=day, opens=dt.time(8), closes=dt.time(18))
    Service.objects.create(business=b, name="Cleaning", duration_minutes=45, price="120.00")
"""


async def status_callback(call: SoakCall, target: Target) -> None:
    """Twilio's status callback once the call is over (sent once, as Twilio does; a failure is only counted)."""
    from twilio.request_validator import RequestValidator

    url = target.base_url + "/voice/twilio/status/"
    params = {"CallSid": call.r.call_sid, "AccountSid": target.account_sid, "CallStatus": "completed",
              "CallDuration": str(round(call.plan.seconds)), "From": call.from_number, "To": call.to_number}
    headers = {"X-Twilio-Signature": RequestValidator(target.auth_token).compute_signature(url, params),
               "Content-Type": "application/x-www-form-urlencoded"}
    try:
        status, _ = await http_request(url, body=urllib.parse.urlencode(params).encode(), headers=headers)
        call.status_callback = status
    except Exception as exc:
        call.status_callback = f"{type(exc).__name__}"


def business_number(i: int) -> str:
    return f"+155501009{i % BUSINESSES:02d}"


# --- the run ------------------------------------------------------------------------------------------------------

@dataclass
class Fault:
    name: str
    at: float          # perf_counter when injected
    repaired: float = 0.0
    detail: str = ""
    error: str = ""


async def run_faults(stack: Stack, cfg: SoakConfig, t0: float, faults: list[Fault], log: Any) -> None:
    for name, at_s in sorted(cfg.faults.items(), key=lambda kv: kv[1]):
        await asyncio.sleep(max(0.0, t0 + at_s - time.perf_counter()))
        fault = Fault(name, time.perf_counter())
        faults.append(fault)
        try:
            if name == "postgres":
                fault.detail = await asyncio.to_thread(stack.restart_postgres)
            else:
                action = {"worker": stack.kill_workers, "redis": stack.restart_redis,
                          "upstream": stack.drop_upstream}[name]
                fault.detail = await action()
        except Exception as exc:  # reported, and the soak fails
            fault.error = f"{type(exc).__name__}: {exc}"[:500]
        fault.repaired = time.perf_counter()
        log(f"soak: fault {name} at {fault.at - t0:.1f} s, repaired in {fault.repaired - fault.at:.1f} s: "
            f"{fault.detail or fault.error}")


async def run_calls(stack: Stack, cfg: SoakConfig, t0: float, log: Any,
                    plans: list[tuple[bool, bool]] | None = None) -> list[SoakCall]:
    """The slots' calls; `plans` ((barge, booking) per slot, one round) instead of the shares (the CI test)."""
    rng = random.Random(16)
    target = Target("uvicorn", base_url=f"http://127.0.0.1:{stack.nginx_port}", auth_token=stack.auth_token,
                    account_sid=stack.account_sid)
    calls: list[SoakCall] = []
    counter = iter(range(10_000))

    def plan(k: int) -> Plan:
        if plans is not None:
            return Plan(seconds=cfg.call_min_s, barge=plans[k][0], booking=plans[k][1])
        booking = rng.random() < cfg.booking_share
        return Plan(seconds=round(rng.uniform(cfg.call_min_s, cfg.call_max_s), 1), booking=booking,
                    barge=rng.random() < cfg.barge_share)

    async def slot(k: int) -> None:
        await asyncio.sleep(cfg.arrival_s * k / max(1, cfg.calls))
        while True:
            p = plan(k)
            if not cfg.one_round and time.perf_counter() + p.seconds > t0 + cfg.seconds + cfg.call_max_s:
                return
            index = next(counter)
            call = SoakCall(target, index, p, business_number(index))
            calls.append(call)
            await call.arrive(time.perf_counter(), DRAIN_S)
            await status_callback(call, target)
            if cfg.one_round or time.perf_counter() - t0 >= cfg.seconds:
                return

    async def progress() -> None:
        while True:
            await asyncio.sleep(30)
            live = sum(1 for c in calls if c.open)
            log(f"soak: {time.perf_counter() - t0:.0f} s: {len(calls)} calls placed, {live} live, "
                f"load {load_average()}")

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(slot(k) for k in range(cfg.calls)))
    finally:
        ticker.cancel()
    return calls


def in_window(t: float, faults: list[Fault]) -> bool:
    return any(f.at - WINDOW_LEAD_S <= t <= (f.repaired or f.at) + WINDOW_TAIL_S for f in faults)


def setup_in_window(call: SoakCall, faults: list[Fault]) -> bool:
    """Whether a call's set-up (webhook sent → `start` sent, or → 1 s later if it got no further) overlaps a fault
    window: a webhook just before a Redis restart leaves a stream token that is gone when the socket comes."""
    r = call.r
    end = max(r.start_sent, r.webhook_done, r.setup_start) + 1.0
    return any(f.at - WINDOW_LEAD_S <= end and r.setup_start <= (f.repaired or f.at) + WINDOW_TAIL_S for f in faults)


def frame_figures(calls: list[SoakCall], faults: list[Fault]) -> dict[str, Any]:
    """Frames sent, lost and round trips, outside and inside the fault windows (by when the frame was sent)."""
    out = {"sent": 0, "lost": 0, "sent_in": 0, "lost_in": 0, "rtt": [], "rtt_in": [], "lost_where": []}
    for call in calls:
        r = call.r
        if not r.first_echo:
            continue  # a call that never streamed (its set-up failed): counted with the set-up failures
        for seq in range(r.frames):
            sent_at = r.send_t[seq]
            if not sent_at or sent_at < r.first_echo:
                continue
            key = "_in" if in_window(sent_at, faults) else ""
            out["sent" + key] += 1
            if not r.got[seq]:
                out["lost" + key] += 1
                if not key and len(out["lost_where"]) < 8:
                    out["lost_where"].append(f"call {r.index} frame {seq} of {r.sent}"
                                             + (f" ({r.closed_early})" if r.closed_early else ""))
        for rtt, got_at in zip(r.rtts, r.recv_at):
            out["rtt_in" if in_window(got_at - rtt, faults) else "rtt"].append(rtt * 1000)
    return out


def db_checks(stack: Stack, sids: list[str], settle_s: float, watch: Any = None) -> dict[str, Any]:
    """Waits until every call the server took is finalised and summarised (or `settle_s`), then reads the
    invariants from the database."""
    import psycopg

    deadline = time.monotonic() + settle_s
    url = stack.pg.url("receptionist")
    while True:
        try:
            with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
                pending = conn.execute(
                    "SELECT count(*) FILTER (WHERE finalized_at IS NULL), "
                    "count(*) FILTER (WHERE finalized_at IS NOT NULL AND summarized_at IS NULL "
                    "AND summary_error = '') FROM calls_call WHERE twilio_call_sid = ANY(%s)", (sids,)).fetchone()
        except psycopg.Error:
            pending = (-1, -1)
        if pending == (0, 0) or time.monotonic() > deadline:
            break
        if watch is not None:
            watch()
        time.sleep(1)
    with psycopg.connect(url, connect_timeout=10) as conn:
        q = lambda sql, *a: conn.execute(sql, a).fetchall()  # noqa: E731
        (taken, finalised, summarised, summary_errors, summary_empty), = q(
            "SELECT count(*), count(finalized_at), count(summarized_at), count(*) FILTER (WHERE summary_error <> ''),"
            " count(*) FILTER (WHERE summarized_at IS NOT NULL AND summary = '' AND summary_error = '') "
            "FROM calls_call WHERE twilio_call_sid = ANY(%s)", sids)
        statuses = dict(((f"{s}/{r or '-'}", n) for s, r, n in q(
            "SELECT status, end_reason, count(*) FROM calls_call WHERE twilio_call_sid = ANY(%s) GROUP BY 1, 2",
            sids)))
        (appointments,), = q("SELECT count(*) FROM calls_appointment")
        doubled = q("SELECT created_by_call_id, count(*) FROM calls_appointment WHERE created_by_call_id IS NOT NULL "
                    "GROUP BY 1 HAVING count(*) > 1")
        (booked_ok,), = q("SELECT count(*) FROM calls_callevent WHERE kind = 'supervisor' AND payload->>'step' = 'tool'"
                          " AND payload->>'name' = 'book_appointment' AND NOT (payload->'result' ? 'error')")
        (overlaps,), = q("SELECT count(*) FROM calls_appointment a JOIN calls_appointment b ON a.business_id = "
                         "b.business_id AND a.id < b.id AND a.status = 'booked' AND b.status = 'booked' "
                         "AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at")
        reconnects = dict(q("SELECT payload->>'ok', count(*) FROM calls_callevent WHERE kind = 'reconnect' "
                            "GROUP BY 1"))
        waits = [float(w) for (w,) in q("SELECT (payload->>'queue_wait_ms')::float FROM calls_callevent WHERE kind = "
                                        "'supervisor' AND payload->>'step' = 'request' AND payload ? 'queue_wait_ms'")]
        steps = dict(q("SELECT payload->>'step', count(*) FROM calls_callevent WHERE kind = 'supervisor' GROUP BY 1"))
        (asked,), = q("SELECT count(*) FROM calls_callevent WHERE kind = 'tool_call' AND "
                      "payload->>'name' = 'ask_supervisor'")
        # Over a reply still being generated: the echoed frames count as the agent's audio too, so every caller
        # turn that starts while an echo's mark is pending is a barge-in as well.
        (barge_ins,), = q("SELECT count(DISTINCT call_id) FROM calls_callevent WHERE kind = 'barge_in' "
                          "AND (payload->>'still_generating')::boolean")
        booking_errors = [r for (r,) in q("SELECT payload->>'result' FROM calls_callevent WHERE kind = 'supervisor' "
                                          "AND payload->>'name' = 'book_appointment' AND payload->'result' ? 'error' "
                                          "LIMIT 3")]
    return {"taken": taken, "finalised": finalised, "summarised": summarised, "summary_errors": summary_errors,
            "summary_empty": summary_empty, "statuses": statuses, "appointments": appointments,
            "doubled": len(doubled), "booked_ok": booked_ok, "overlaps": overlaps,
            "reconnect_ok": reconnects.get("true", 0), "reconnect_failed": reconnects.get("false", 0),
            "queue_waits": waits, "supervisor_steps": steps, "asked": asked, "barge_in_calls": barge_ins,
            "booking_errors": booking_errors}


async def _standin_chat_summaries(stack: Stack) -> int | None:
    with contextlib.suppress(Exception):
        status, body = await http_request(f"http://127.0.0.1:{stack.standin_port}/standin/chat")
        if status == 200:
            return sum(1 for r in json.loads(body)["requests"] if r.get("outcome") == "answered"
                       and (r.get("entry") or {}).get("summary"))
    return None


def run_soak(cfg: SoakConfig, log: Any = print, keep_dir: bool = True,
             plans: list[tuple[bool, bool]] | None = None) -> dict[str, Any]:
    """Start the stack, run the calls and the faults, check the invariants; the figures and a list of failures."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is missing: apt-get install -y nginx-light (scripts/test.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    stack = Stack(cfg, root)
    stack.dropped_sessions = 0
    result: dict[str, Any] = {"config": cfg, "dir": str(root), "load_before": load_average()}
    try:
        t_setup = time.monotonic()
        stack.start(log)
        result["setup_s"] = time.monotonic() - t_setup
        log(f"soak: stack up in {result['setup_s']:.0f} s; {cfg.calls} calls at once for {cfg.seconds:.0f} s, "
            f"pool {cfg.pool}, faults {cfg.faults}")

        async def main() -> tuple[list[SoakCall], list[Fault]]:
            t0 = time.perf_counter()
            faults: list[Fault] = []
            fault_task = asyncio.create_task(run_faults(stack, cfg, t0, faults, log))

            async def watcher() -> None:
                while True:
                    await asyncio.sleep(1)
                    stack.watch(t0)

            watch_task = asyncio.create_task(watcher())
            calls = await run_calls(stack, cfg, t0, log, plans)
            await fault_task
            watch_task.cancel()
            result["t0"] = t0
            result["run_s"] = time.perf_counter() - t0
            return calls, faults

        calls, faults = asyncio.run(main())
        result["load_after_run"] = load_average()
        sids = [c.r.call_sid for c in calls]
        result["db"] = db_checks(stack, sids, cfg.settle_s, lambda: stack.watch(result["t0"]))
        result["exits"] = stack.exits
        result["chat_summaries"] = asyncio.run(_standin_chat_summaries(stack))
        result["frames"] = frame_figures(calls, faults)
        result["faults"] = faults
        result["dropped_sessions"] = stack.dropped_sessions
        result["calls"] = len(calls)
        result["setup_failed"] = [c.r.error for c in calls if c.r.error]
        result["setup_failed_in_window"] = sum(1 for c in calls if c.r.error and setup_in_window(c, faults))
        result["clears"] = sum(1 for c in calls if c.r.clears)
        result["callbacks_failed"] = sum(1 for c in calls if c.status_callback != 204)
        result["planned"] = {"booking": sum(c.plan.booking for c in calls), "barge": sum(c.plan.barge for c in calls)}
        result["log_issues"] = {name: log_issues(proc.log_path, 4) for name, proc in stack.procs.items()
                                if name != "nginx"}
    finally:
        result["stopped"] = stack.stop()
        if not keep_dir:
            shutil.rmtree(root, ignore_errors=True)
    result["failures"] = failures(result)
    return result


def failures(res: dict[str, Any]) -> list[str]:
    """The invariants the soak (and its CI test) holds the product to."""
    out = []
    db, frames = res["db"], res["frames"]
    for fault in res["faults"]:
        if fault.error:
            out.append(f"fault {fault.name} could not be injected: {fault.error}")
    if len(res["faults"]) != len(res["config"].faults):
        out.append(f"only {len(res['faults'])} of {len(res['config'].faults)} faults ran")
    if db["taken"] == 0:
        out.append("the server took no call")
    if db["finalised"] != db["taken"]:
        out.append(f"{db['taken'] - db['finalised']} of {db['taken']} calls were not finalised")
    # One compare-and-set per call stores its summary (or, for a call nobody spoke on, that there is none).
    if db["summarised"] != db["finalised"] or db["summary_errors"]:
        out.append(f"summaries: {db['summarised']} stored, {db['summary_errors']} failed, of {db['finalised']} "
                   "finalised calls")
    if db["doubled"] or db["overlaps"] or db["appointments"] != db["booked_ok"]:
        out.append(f"appointments: {db['appointments']} rows for {db['booked_ok']} successful bookings, "
                   f"{db['doubled']} calls with two or more, {db['overlaps']} overlapping")
    if frames["lost"]:
        out.append(f"{frames['lost']} of {frames['sent']} frames lost outside the fault windows: "
                   + "; ".join(frames["lost_where"]))
    if res["dropped_sessions"] and db["reconnect_ok"] < res["dropped_sessions"]:
        out.append(f"{db['reconnect_ok']} reconnects succeeded for {res['dropped_sessions']} dropped sessions")
    if db["reconnect_failed"]:
        out.append(f"{db['reconnect_failed']} reconnects failed")
    unexplained = len(res["setup_failed"]) - res["setup_failed_in_window"]
    if unexplained:
        out.append(f"{unexplained} calls failed to set up outside the fault windows: {res['setup_failed'][:3]}")
    return out


# --- the report ---------------------------------------------------------------------------------------------------

def report(res: dict[str, Any], command: str) -> str:
    cfg, db, fr = res["config"], res["db"], res["frames"]
    waits = db["queue_waits"]
    over = sum(1 for w in waits if w > 500)
    lines = [
        SECTION, "",
        f"Command: `{command}`. Machine: {machine()}; load average before {res['load_before']}, after the calls "
        f"{res['load_after_run']} (other test runs share this 2-core box: latencies are an upper bound).",
        "Versions: " + package_versions(("django", "channels", "channels_redis", "celery", "uvicorn", "websockets",
                                           "psycopg")) + f"; {nginx_version()}.",
        "",
        f"Stack: nginx (README's TLS-proxy block, plain HTTP) → 2 uvicorn `web` → stand-in (`--echo-scripted`, "
        f"model steps {cfg.step_delay_ms} ms); Celery pool **{cfg.pool}** "
        + ("(Procfile: `worker` ×2 prefork 4, `supervisor` ×2 threads "
           f"{os.environ.get('SUPERVISOR_CONCURRENCY', '32')})" if cfg.pool == "new" else "(previous Procfile: `worker` ×2, prefork 4, every task)")
        + "; beat; own redis-server and PostgreSQL cluster.",
        f"Load: {cfg.calls} calls at once for {cfg.seconds:.0f} s, {cfg.call_min_s:.0f}-{cfg.call_max_s:.0f} s each, "
        f"back to back: {res['calls']} calls, {res['planned']['booking']} booking through the supervisor, "
        f"{res['planned']['barge']} barging in.",
        "",
        "| fault | at | repaired after | what |", "| --- | --- | --- | --- |",
    ]
    t0 = min((f.at for f in res["faults"]), default=0) - (min(cfg.faults.values()) if cfg.faults else 0)
    for f in res["faults"]:
        lines.append(f"| {f.name} | {f.at - t0:.0f} s | {f.repaired - f.at:.1f} s | {f.detail or f.error} |")
    rtt, rtt_in = fr["rtt"], fr["rtt_in"]
    lines += [
        "",
        "| check | result |", "| --- | --- |",
        f"| calls finalised | {db['finalised']} / {db['taken']} taken ({', '.join(f'{k} {v}' for k, v in sorted(db['statuses'].items()))}); "
        f"set-up failures {len(res['setup_failed'])} ({res['setup_failed_in_window']} in fault windows); "
        f"status callbacks refused {res['callbacks_failed']} |",
        f"| frames lost outside the fault windows | {fr['lost']} of {fr['sent']} (inside: {fr['lost_in']} of {fr['sent_in']}) |",
        f"| frame round trip outside the windows (nginx → web → stand-in echo → back) | p50 {fmt(percentile(rtt, 50))} ms, "
        f"p99 {fmt(percentile(rtt, 99))} ms, max {fmt(max(rtt) if rtt else None)} ms |",
        f"| … inside the windows | p99 {fmt(percentile(rtt_in, 99))} ms, max {fmt(max(rtt_in) if rtt_in else None)} ms |",
        f"| upstream sessions dropped → reconnects | {res['dropped_sessions']} dropped → {db['reconnect_ok']} succeeded, "
        f"{db['reconnect_failed']} failed |",
        f"| summaries | {db['summarised']} stored once for {db['finalised']} calls ({db['summary_empty']} with nothing "
        f"to summarise), {db['summary_errors']} failed"
        + (f"; the stand-in answered {res['chat_summaries']} summary requests" if res.get("chat_summaries") is not None else "") + " |",
        f"| appointments | {db['appointments']} for {db['booked_ok']} successful bookings; doubled {db['doubled']}, overlapping {db['overlaps']} |",
        f"| barge-ins over a reply being generated | {db['barge_in_calls']} calls ({res['planned']['barge']} planned); "
        f"{res['clears']} calls got Twilio `clear` |",
        f"| processes that exited on their own (restarted as a process manager would) | "
        f"{'; '.join(res['exits']) if res['exits'] else 'none'} |",
        f"| supervisor | {db['asked']} asked; steps {json.dumps(db['supervisor_steps'], sort_keys=True)} |",
        f"| **supervisor queue wait** (enqueue → task start) | n {len(waits)}, p50 {fmt(percentile(waits, 50), 0)} ms, "
        f"**p99 {fmt(percentile(waits, 99), 0)} ms**, max {fmt(max(waits) if waits else None, 0)} ms; over 0.5 s: {over} |",
        "",
        *(["Bookings that failed (samples): " + "; ".join(f"`{e[:160]}`" for e in db["booking_errors"]), ""]
          if db["booking_errors"] else []),
        ("**All invariants held.**" if not res["failures"] else "**Failed:** " + "; ".join(res["failures"])),
    ]
    issues = [f"{name}: {line}" for name, found in res["log_issues"].items() for line in found]
    if issues:
        lines += ["", "Warnings in the logs (most frequent first, per process):", ""]
        lines += [f"- `{line[:200]}`" for line in issues[:16]]
    return "\n".join(lines) + "\n"


def nginx_version() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=5).stderr
        return out.strip().replace("nginx version: ", "")
    return "nginx ?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--call-seconds", default="30-50", help="each call's length, MIN-MAX seconds")
    parser.add_argument("--pool", choices=("new", "old"), default="new")
    parser.add_argument("--faults", default=",".join(FAULTS), help="which faults, comma-separated (none: '')")
    parser.add_argument("--step-delay-ms", type=int, default=1500)
    parser.add_argument("--out", help="write/replace the section in this markdown file, e.g. docs/benchmarks.md")
    parser.add_argument("--section-suffix", default="", help="a second section of the same script, e.g. ': old pool'")
    args = parser.parse_args()
    low, _, high = args.call_seconds.partition("-")
    cfg = SoakConfig(calls=args.calls, seconds=args.seconds, call_min_s=float(low), call_max_s=float(high or low),
                     pool=args.pool, step_delay_ms=args.step_delay_ms)
    chosen = [f for f in args.faults.split(",") if f]
    cfg.faults = {k: v for k, v in default_faults(cfg.seconds).items() if k in chosen}
    command = "python bench/soak.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    res = run_soak(cfg)
    text = report(res, command)
    if args.section_suffix:
        text = text.replace(SECTION, SECTION + args.section_suffix, 1)
    print("\n" + text)
    print(f"logs: {res['dir']}")
    code = 0
    if args.out:
        code = write_section(args.out, SECTION + args.section_suffix, text, spare=Path(res["dir"]) / "section.md")
    sys.exit(1 if res["failures"] else code)


if __name__ == "__main__":
    main()
