"""What the calls run against: the bench database and environment, and starting a server (not waiting for it)
or waiting until it takes traffic."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import Any

from bench.bridge.calls import Target
from bench.bridge.config import BENCH_DB, BIN, BUSINESS_NUMBERS, PY, READY_POLL_S, READY_TIMEOUT_S, REDIS_URL
from bench.bridge.wire import http_request
from bench.harness import REPO, Proc, free_port, recreate_database, run_step, wait_http, wait_tcp

SCRIPT = REPO / "bench" / "bridge_latency.py"  # runs the relay as a subprocess (`--_relay PORT UPSTREAM`)


def upstream_url(standin_port: int, engine: str) -> str:
    """The stand-in's WebSocket for a voice engine: Realtime (clients add ?model=) or GPT-Live."""
    return f"ws://127.0.0.1:{standin_port}" + ("/v1/live/sessions" if engine == "live" else "/v1/realtime")


def bench_env(*, server_port: int, standin_port: int, auth_token: str, account_sid: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
    env.update({
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "REDIS_URL": REDIS_URL,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{server_port}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "TWILIO_ACCOUNT_SID": account_sid,
        "TWILIO_AUTH_TOKEN": auth_token,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_REALTIME_URL": upstream_url(standin_port, "realtime"),
        "OPENAI_LIVE_URL": upstream_url(standin_port, "live"),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def setup_database(env: dict[str, str], log_dir: Path) -> None:
    recreate_database(BENCH_DB, env, log_dir)
    # As the Procfile's release step does: bytecode for our code, so a fresh server process does not compile it
    # from source (this machine sets PYTHONDONTWRITEBYTECODE).
    run_step("compileall", [PY, "-m", "compileall", "-q", "-j", "0", "accounts", "billing", "calls", "receptionist",
                            "voice"], env, log_dir)
    # One business per voice engine, each with its own number (the call's `To` picks the engine).
    run_step("business", [PY, "manage.py", "shell", "-c",
                          "from django.utils import timezone; from accounts.models import Business; "
                          "from billing.models import BillingAccount\n"
                          f"for engine, number in {sorted(BUSINESS_NUMBERS.items())!r}:\n"
                          "    b = Business.objects.create(name='Bench Dental ' + engine, phone_number=number, "
                          "voice_engine=engine, onboarded_at=timezone.now())\n"
                          # A metered subscription: the free trial's minutes would run out after a few hundred
                          # bench calls, and billing would then refuse them.
                          "    BillingAccount.objects.create(business=b, status='active', trial_minutes=0, "
                          "plan_key='bench', current_period_start=timezone.now())"], env, log_dir)


def db_wait_finalized(call_sids: list[str], timeout: float) -> float | None:
    """Seconds until every call is finalised in the DB (the server writes that after `stop`); None on timeout."""
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={BENCH_DB}", connect_timeout=10,
                         autocommit=True) as conn:
        while time.monotonic() - t0 < timeout:
            (pending,) = conn.execute("SELECT count(*) FROM calls_call WHERE twilio_call_sid = ANY(%s) "
                                      "AND finalized_at IS NULL", (call_sids,)).fetchone()
            if pending == 0:
                return time.monotonic() - t0
            time.sleep(0.1)
    return None


def db_call_summary(call_sids: list[str]) -> dict[str, int]:
    import psycopg

    if not call_sids:
        return {}
    with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={BENCH_DB}", connect_timeout=10) as conn:
        rows = conn.execute("SELECT status, end_reason, count(*) FROM calls_call WHERE twilio_call_sid = ANY(%s) "
                            "GROUP BY 1, 2", (call_sids,)).fetchall()
    return {f"{status}/{reason or '-'}": count for status, reason, count in rows}


def server_argv(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":  # the Procfile's `web` line, on loopback
        return [str(BIN / "uvicorn"), "receptionist.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
                "--ws-per-message-deflate", "false", "--proxy-headers", "--forwarded-allow-ips=127.0.0.1", "--timeout-graceful-shutdown", "20", "--log-level", "warning"]
    if kind == "daphne":
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "receptionist.asgi:application"]
    raise ValueError(kind)


def start_server(kind: str, ctx: dict[str, Any], log_path: Path,
                 engine: str = "realtime") -> tuple[Proc, Target, int]:
    """A fresh server process pinned to core 0 (not waited for), the target the calls use, and its port. Our server
    serves both engines (the called business picks one); the relay is started for one."""
    port = free_port()
    env = bench_env(server_port=port, standin_port=ctx["standin_port"], auth_token=ctx["auth_token"],
                    account_sid=ctx["account_sid"])
    if kind == "relay":
        argv = [PY, str(SCRIPT), "--_relay", str(port), upstream_url(ctx["standin_port"], engine), engine]
        target = Target(kind, ws_url=f"ws://127.0.0.1:{port}/ws/twilio/media/", account_sid=ctx["account_sid"],
                        engine=engine)
    else:
        argv = server_argv(kind, port)
        target = Target(kind, base_url=f"http://127.0.0.1:{port}", auth_token=ctx["auth_token"],
                        account_sid=ctx["account_sid"], engine=engine)
    return Proc(kind, argv, env, log_path, core=0 if ctx["pin"] else None), target, port


def wait_ready(kind: str, port: int, proc: Proc) -> None:
    if kind == "relay":
        wait_tcp(port, proc, READY_TIMEOUT_S)
    else:
        wait_http(f"http://127.0.0.1:{port}/healthz/", proc, READY_TIMEOUT_S)


async def wait_accepting(kind: str, port: int, proc: Proc) -> None:
    """Cold start: return the moment the fresh process first takes traffic (our server: /healthz/ answers 200;
    the relay: its port accepts), polling every READY_POLL_S so the first calls are not held back."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {proc.last_line()}")
        try:
            if kind == "relay":
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
                writer.close()
                return
            status, _ = await http_request(f"http://127.0.0.1:{port}/healthz/", timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, asyncio.TimeoutError, RuntimeError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(READY_POLL_S)
    raise RuntimeError(f"{proc.name} did not take traffic within {READY_TIMEOUT_S:.0f} s ({last}):\n{proc.log_tail()}")
