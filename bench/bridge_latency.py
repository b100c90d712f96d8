#!/usr/bin/env python
"""Media bridge latency: what our Twilio media path adds on top of the network and the OpenAI stand-in.

    .venv/bin/python bench/bridge_latency.py [--scenarios steady,cold,burst] [--calls 1,10,50,100] [--seconds 10]
        [--cold-calls 100] [--burst-calls 50,100] [--arrival 2] [--call-seconds 20]
        [--servers uvicorn,daphne,relay,direct] [--out docs/benchmarks.md] [--quick]

It plays Twilio calls at Twilio's real rate (one 160-byte μ-law frame every 20 ms per call) against the local
Realtime stand-in in echo mode, and times every frame's round trip: load generator → server → stand-in → server
→ load generator. Three scenarios:

- steady: for every server kind and N, a warm process; N calls set up and probed, then all stream at once;
- cold:   a fresh process (uvicorn, relay), no warm-up; the first calls arrive evenly over --arrival seconds
          from the moment it takes traffic, each streaming straight after `start` (as Twilio does);
- burst:  the same on a warm process (one warm-up call first).

Cold and burst also time each call's set-up (webhook, or the relay's connect, → its first echoed frame). Server
kinds:

- uvicorn: our product as the Procfile runs it (receptionist.asgi), one process pinned to core 0;
- daphne:  the same application under daphne;
- relay:   a bare `websockets` relay written here (no Django): Twilio `media` → `input_audio_buffer.append`,
           deltas → Twilio `media` + `mark`; the practical floor for a Python bridge;
- direct:  no server; the load generator speaks the OpenAI protocol to the stand-in (network + stand-in baseline).

"Added" latency is a server's RTT percentile minus the direct run's at the same call count. The stand-in and the
load generator share core 1 (when `taskset` exists), so on a 2-core machine compare ratios, not absolutes.
Everything listens on 127.0.0.1 only; every loop is bounded by a count or a deadline. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The repository root, so `bench.benchlib` and the product's apps import both when this runs as a script and
# when it is imported as `bench.<name>` (a bench's own Celery worker does that).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.benchlib import update_doc  # noqa: E402

try:  # websockets' C masking helper; a pure-Python fallback keeps the bench standalone
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    def apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        return (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PY = sys.executable
SECTION = "## Media bridge latency (bench/bridge_latency.py)"
# Overridable so a second bench (a helper's, say) can run beside the default one without sharing its database.
BENCH_DB = os.environ.get("BENCH_DATABASE", "receptionist_bench")
BENCH_REDIS_DB = os.environ.get("BENCH_REDIS_DB", "9")
if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", BENCH_DB) or not BENCH_REDIS_DB.isdigit():
    sys.exit("BENCH_DATABASE must be a plain lower-case identifier and BENCH_REDIS_DB a Redis db number")
BUSINESS_NUMBER = "+15550100777"
MODEL = "gpt-realtime"

FRAME_BYTES = 160            # 20 ms of μ-law at 8 kHz
FRAME_S = 0.020
TAG = struct.Struct(">BHI")  # magic, call index, frame sequence: the first 7 of 160 bytes, rest 0xFF (μ-law silence)
MAGIC_FRAME, MAGIC_PROBE = 0xB5, 0xB6
FILL = b"\xff" * (FRAME_BYTES - TAG.size)
PAYLOAD_CHARS = 4 * math.ceil(FRAME_BYTES / 3)  # 216
TAG_CHARS = 12                                  # base64 of the first 9 bytes covers the 7-byte tag

SETUP_CONCURRENCY = 10       # calls being set up at once (webhook + socket + start + probe)
SETUP_TIMEOUT_S = 30.0       # per call
PROBE_EVERY_S = 0.1
DIRECT_NOTE = "¹ direct: no server; CPU and RSS are the stand-in's."
ARRIVAL_KINDS = ("uvicorn", "relay")  # cold/burst: our product and the floor, side by side
READY_POLL_S = 0.01          # cold start: how often a starting server is asked whether it takes traffic
STOP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 40.0
KILL_AFTER_S = 8.0
FINALIZE_TIMEOUT_S = 15.0
LOG_ISSUE = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback|Exception)\b")


# --- small helpers ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> str:
    try:
        return subprocess.run(["nproc", "--all"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return str(os.cpu_count())


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # fields from #3 (state) on; comm may contain spaces


def process_tree(pid: int) -> list[int]:
    """pid and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo and len(tree) < 10_000:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float | None:
    """utime+stime of pid and its live descendants (plus reaped children), in seconds."""
    total, found = 0, False
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except OSError:
            continue
        found = True
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime
    return total / CLK_TCK if found else None


def rss_mb(pid: int) -> float | None:
    total, found = 0.0, False
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
                    found = True
        except OSError:
            continue
    return total if found else None


def core_ticks() -> dict[int, list[int]]:
    """Per core jiffies from /proc/stat: [processes (user+nice+system), irq+softirq, steal, total]."""
    cores = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            t = [int(v) for v in values[:8]] + [0] * max(0, 8 - len(values))
            cores[int(name[3:])] = [t[0] + t[1] + t[2], t[5] + t[6], t[7], sum(t[:8])]
    return cores


def runqueue_wait_s(pid: int) -> float | None:
    """Seconds the process's threads spent runnable but waiting for a CPU (/proc/PID/task/*/schedstat)."""
    total, found = 0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[1])
            found = True
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9 if found else None


def self_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


# --- processes --------------------------------------------------------------------------------------------------


class Proc:
    """A subprocess in its own process group, output to a log file, killed reliably."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, core: int | None) -> None:
        self.name = name
        self.log_path = log_path
        if core is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(core)] + argv  # taskset execs argv: the pid stays the server's
        self.argv = argv
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> str:
        """SIGTERM the group, SIGKILL it after KILL_AFTER_S; returns how it ended."""
        how = "already exited"
        if self.alive():
            how = "SIGTERM"
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=KILL_AFTER_S)
            except subprocess.TimeoutExpired:
                how = f"SIGKILL (ignored SIGTERM for {KILL_AFTER_S:.0f} s)"
        try:  # always sweep the group: workers/children may outlive the leader
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            how += ", did not die"
        self._log.close()
        return how

    def last_line(self) -> str:
        lines = [line for line in self.log_tail(40).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_tcp(port: int, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {proc.last_line()}\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{proc.log_tail()}")


def wait_http(url: str, proc: Proc, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {proc.last_line()}\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.15)
    raise RuntimeError(f"{proc.name}: {url} not ready within {timeout:.0f} s ({last}):\n{proc.log_tail()}")


# --- setup: database, business, environment ---------------------------------------------------------------------


def bench_env(*, server_port: int, standin_port: int, auth_token: str, account_sid: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
    env.update({
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{BENCH_REDIS_DB}",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{server_port}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "TWILIO_ACCOUNT_SID": account_sid,
        "TWILIO_AUTH_TOKEN": auth_token,
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{standin_port}/v1/realtime",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def setup_database(env: dict[str, str], log_dir: Path) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    steps = [
        # As the Procfile's release step does: bytecode for our code, so a fresh server process does not compile
        # it from source (this machine sets PYTHONDONTWRITEBYTECODE).
        ("compileall", [PY, "-m", "compileall", "-q", "-j", "0", "accounts", "billing", "calls", "receptionist",
                        "voice"]),
        ("migrate", [PY, "manage.py", "migrate", "--noinput"]),
        ("business", [PY, "manage.py", "shell", "-c",
                      "from django.utils import timezone; from accounts.models import Business; "
                      "from billing.models import BillingAccount; "
                      f"b = Business.objects.create(name='Bench Dental', phone_number='{BUSINESS_NUMBER}', "
                      "onboarded_at=timezone.now()); "
                      # A metered subscription: the free trial's minutes would run out after a few hundred
                      # bench calls, and billing would then refuse them.
                      "BillingAccount.objects.create(business=b, status='active', trial_minutes=0, "
                      "plan_key='bench', current_period_start=timezone.now())"]),
    ]
    for name, argv in steps:
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        (log_dir / f"setup-{name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[1:3])} failed ({result.returncode}):\n{result.stderr[-2000:]}")


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


# --- the load generator -----------------------------------------------------------------------------------------


def frame_payload(magic: int, call: int, seq: int) -> str:
    return base64.b64encode(TAG.pack(magic, call & 0xFFFF, seq) + FILL).decode()


def read_tag(payload: Any) -> tuple[int, int, int] | None:
    if not isinstance(payload, str) or len(payload) != PAYLOAD_CHARS:
        return None
    try:
        return TAG.unpack_from(base64.b64decode(payload[:TAG_CHARS]))
    except (ValueError, struct.error):
        return None


async def http_request(url: str, *, body: bytes = b"", headers: dict[str, str] | None = None,
                       timeout: float = 15.0) -> tuple[int, str]:
    """One HTTP/1.1 request to loopback on the load generator's own event loop (POST when there is a body):
    a thread pool would queue the webhooks of a burst in the load generator itself and hide the server's delay."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "http" or parsed.hostname not in {"127.0.0.1", "localhost"}:
        raise RuntimeError(f"the load generator only speaks http:// to loopback, not {url}")
    port = parsed.port or 80
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    lines = [f"{'POST' if body else 'GET'} {path} HTTP/1.1", f"Host: {parsed.hostname}:{port}", "Connection: close"]
    lines += [f"Content-Length: {len(body)}"] if body else []
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return await reader.read(-1)  # Connection: close, so the answer ends at EOF
        finally:
            writer.close()

    raw = await asyncio.wait_for(exchange(), timeout)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        raise RuntimeError(f"not an HTTP answer: {status_line[:80]!r}")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    if "chunked" in fields.get("transfer-encoding", ""):
        chunks, rest = [], payload
        for _ in range(10_000):
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        payload = b"".join(chunks)
    return int(parts[1]), payload.decode("utf-8", "replace")


@dataclass
class Target:
    kind: str            # uvicorn | daphne | relay | direct
    base_url: str = ""   # our server: http://127.0.0.1:P (PUBLIC_BASE_URL)
    ws_url: str = ""     # relay: its media URL; direct: the stand-in's realtime URL
    auth_token: str = ""
    account_sid: str = ""


@dataclass
class CallResult:
    index: int
    frames: int
    call_sid: str = ""
    stream_sid: str = ""
    sent: int = 0
    received: int = 0
    rtts: list[float] = field(default_factory=list)
    recv_at: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    duplicates: int = 0
    misrouted: int = 0
    foreign: int = 0      # media we could not read a tag from
    marks: int = 0
    probes: int = 0
    error: str = ""       # setup failed
    closed_early: str = ""
    # cold/burst arrivals (perf_counter times; 0 = did not happen)
    arrival_lag: float = 0.0  # how late the load generator started this call after its scheduled arrival
    setup_start: float = 0.0  # webhook sent (relay: socket connect)
    webhook_done: float = 0.0  # TwiML read (our server only)
    start_sent: float = 0.0   # socket open, `connected` + `start` sent
    first_echo: float = 0.0   # the first of this call's frames came back: the stream flows
    streamed: bool = False    # `start` was sent, so the server owes us a finalised call

    def __post_init__(self) -> None:
        self.send_t = [0.0] * self.frames
        self.got = bytearray(self.frames)


class LeanWebSocket(asyncio.Protocol):
    """A small RFC 6455 client for the load generator, so that it costs far less per message than the servers
    it measures: text messages are handed to `on_text` synchronously from data_received, sends are plain
    transport writes. Frames are masked with a fresh random key each, as a browser or Twilio would."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    MAX_MESSAGE = 2**20

    def __init__(self, on_text: Any) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future | None = None
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.error = ""
        self._key = ""
        self._buf = bytearray()
        self._handshaken = False
        self._fragments: list[bytes] = []
        self._close_sent = False
        self._batch: list[bytes] | None = None  # writes made while handling one read go out in one syscall

    @classmethod
    async def connect(cls, url: str, on_text: Any, headers: dict[str, str] | None = None,
                      timeout: float = 10.0) -> "LeanWebSocket":
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme != "ws" or parsed.hostname not in {"127.0.0.1", "localhost"}:
            raise RuntimeError(f"the load generator only speaks ws:// to loopback, not {url}")
        loop = asyncio.get_running_loop()
        ws = cls(on_text)
        ws.opened = loop.create_future()
        port = parsed.port or 80
        await asyncio.wait_for(loop.create_connection(lambda: ws, "127.0.0.1", port), timeout)
        ws._key = base64.b64encode(secrets.token_bytes(16)).decode()
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        lines = [f"GET {path} HTTP/1.1", f"Host: {parsed.hostname}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {ws._key}", "Sec-WebSocket-Version: 13"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        ws.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await asyncio.wait_for(asyncio.shield(ws.opened), timeout)
        except BaseException:
            ws.transport.abort()
            raise
        return ws

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.error:
            self.error = repr(exc)
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake {self.error}".strip()))
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        self._batch = []
        try:
            self._received(data)
        finally:
            batch, self._batch = self._batch, None
            if batch and self.transport is not None and not self.transport.is_closing():
                self.transport.write(b"".join(batch))

    def _received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail("oversized handshake response")
                return
            head = bytes(buf[:end]).decode("latin-1")
            del buf[:end + 4]
            status, _, rest = head.partition("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in rest.split("\r\n"))}
            accept = base64.b64encode(hashlib.sha1((self._key + self.GUID).encode()).digest()).decode()
            if status.split(" ")[1:2] != ["101"] or fields.get("sec-websocket-accept") != accept:
                self._fail(f"handshake refused: {status}")
                return
            self._handshaken = True
            self.opened.set_result(True)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            masked = b1 & 0x80
            if masked:
                head += 4
            if length > self.MAX_MESSAGE:
                self._fail("oversized frame")
                return
            if size - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            if masked:  # servers must not mask; tolerate it anyway
                payload = apply_mask(payload, bytes(buf[pos + head - 4:pos + head]))
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload)
            if self.transport is None or self.transport.is_closing():
                break
        if pos:
            del buf[:pos]

    # -- frames --

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x0 or (opcode in (0x1, 0x2) and not fin):  # fragmented message
            self._fragments.append(payload)
            if not fin:
                return
            payload, self._fragments = b"".join(self._fragments), []
            opcode = 0x1
        if opcode == 0x1:
            self.on_text(payload.decode("utf-8", "replace"))
        elif opcode == 0x2:
            self.on_text(None)
        elif opcode == 0x9:
            self._write(0xA, payload)
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = payload[2:].decode("utf-8", "replace")
            if not self._close_sent:
                self._write(0x8, payload[:2])
                self._close_sent = True
            self.transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError(f"socket closed (code {self.close_code})")
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        mask = secrets.token_bytes(4)
        if self._batch is not None:
            self._batch.append(head + mask + apply_mask(payload, mask))
        else:
            self.transport.write(head + mask + apply_mask(payload, mask))

    def _fail(self, why: str) -> None:
        self.error = why
        if self.opened is not None and not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    # -- API --

    def send(self, text: str) -> None:
        self._write(0x1, text.encode())

    async def close(self, timeout: float) -> None:
        if self.transport is None:
            return
        if not self._close_sent and not self.transport.is_closing():
            self._close_sent = True
            self._write(0x8, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except asyncio.TimeoutError:
            self.transport.abort()


class LoadCall:
    """One simulated call: Twilio (uvicorn/daphne/relay) or OpenAI protocol (direct)."""

    def __init__(self, target: Target, index: int, frames: int) -> None:
        self.target = target
        self.twilio = target.kind != "direct"
        self.r = CallResult(index=index, frames=frames)
        self.r.call_sid = "CA" + secrets.token_hex(16)
        self.r.stream_sid = "MZ" + secrets.token_hex(16)
        self.ws: LeanWebSocket | None = None
        self.seq = 0           # Twilio sequenceNumber of the next message we send
        self.chunk = 0
        self.probe_back = asyncio.Event()
        self.stopping = False
        self._index = index & 0xFFFF
        self._webhook_request: tuple[str, bytes, dict[str, str]] | None = None
        if self.twilio:
            self._head = '{"event":"media","sequenceNumber":"%d","media":{"track":"inbound","chunk":"%d",' \
                         '"timestamp":"%d","payload":"%s"},"streamSid":"' + self.r.stream_sid + '"}'
            self._mark = '{"event":"mark","sequenceNumber":"%d","streamSid":"' + self.r.stream_sid + \
                         '","mark":{"name":%s}}'
        else:
            self._head = '{"type":"input_audio_buffer.append","audio":"%s"}'

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed.is_set()

    # -- setup --

    def prepare_webhook(self) -> None:
        """Sign the incoming-call webhook ahead of time, so the load generator's own work (and its first import of
        the validator) stays out of the set-up time."""
        from twilio.request_validator import RequestValidator

        url = self.target.base_url + "/voice/twilio/incoming/"
        # Each call from a caller of its own, as calls arriving together are (one shared number would make every
        # call update the same customer row).
        caller = f"+1555011{self.r.index % 10000:04d}"
        params = {"CallSid": self.r.call_sid, "AccountSid": self.target.account_sid, "From": caller,
                  "To": BUSINESS_NUMBER, "Caller": caller, "Called": BUSINESS_NUMBER,
                  "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}
        signature = RequestValidator(self.target.auth_token).compute_signature(url, params)
        self._webhook_request = (url, urllib.parse.urlencode(params).encode(), {
            "X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"})

    async def _webhook(self) -> tuple[str, dict[str, str]]:
        """The signed incoming-call webhook, as Twilio sends it; returns the TwiML's stream URL and parameters."""
        if self._webhook_request is None:
            self.prepare_webhook()
        url, form, headers = self._webhook_request
        status, body = await http_request(url, body=form, headers=headers)
        if status != 200:
            raise RuntimeError(f"webhook answered HTTP {status}: {body[:200]}")
        root = ET.fromstring(body)
        stream = root.find("./Connect/Stream")
        if stream is None or not stream.get("url"):
            raise RuntimeError(f"webhook answered without <Connect><Stream>: {body[:200]}")
        parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
        return stream.get("url", ""), parameters

    async def _open_stream(self) -> None:
        """Twilio's side of a call up to its first media frame: webhook (not for the relay), socket, `connected`,
        `start`. The OpenAI protocol (direct) only opens the socket."""
        if not self.twilio:
            # The OpenAI leg, with the stand-in's required bearer header (as voice/session.py sends it).
            self.ws = await LeanWebSocket.connect(f"{self.target.ws_url}?model={MODEL}", self._on_text,
                                                  headers={"Authorization": "Bearer sk-bench"})
            return
        if self.target.kind == "relay":
            url, params = self.target.ws_url, {"call_id": "0", "token": "relay"}
        else:
            url, params = await self._webhook()
            self.r.webhook_done = time.perf_counter()
        # Twilio's leg: no compression offered, no client pings during a short call.
        self.ws = await LeanWebSocket.connect(url, self._on_text)
        self.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        self.seq = 1
        self.ws.send(json.dumps({
            "event": "start", "sequenceNumber": str(self.seq), "streamSid": self.r.stream_sid,
            "start": {"accountSid": self.target.account_sid, "streamSid": self.r.stream_sid,
                      "callSid": self.r.call_sid, "tracks": ["inbound"],
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                      "customParameters": params}}))
        self.r.streamed = True
        self.r.start_sent = time.perf_counter()

    async def setup(self, probe_deadline: float) -> None:
        """Steady state: open the stream, then probe until one frame makes the whole round trip."""
        await self._open_stream()
        while time.monotonic() < probe_deadline:
            if not self.open:
                raise RuntimeError(f"socket closed during setup: {self._closed_why()}")
            self._send_frame(MAGIC_PROBE, self.r.probes)
            self.r.probes += 1
            try:
                await asyncio.wait_for(self.probe_back.wait(), PROBE_EVERY_S)
                return
            except asyncio.TimeoutError:
                continue
        raise RuntimeError(f"no probe frame came back within {SETUP_TIMEOUT_S:.0f} s")

    async def arrive(self, at: float, drain_s: float) -> None:
        """Cold start and burst: arrive at `at` (perf_counter) like a Twilio call and stream media right after
        `start`, without waiting for anything; set-up time runs from the webhook to this call's first echo."""
        r = self.r
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        r.setup_start = time.perf_counter()
        r.arrival_lag = r.setup_start - at
        try:
            await asyncio.wait_for(self._open_stream(), SETUP_TIMEOUT_S)
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"[:300]
            await self.close()
            return
        await self.media(time.perf_counter(), drain_s)
        if not r.first_echo:
            r.error = "no frame came back during the call" + (f" ({r.closed_early})" if r.closed_early else "")

    def _closed_why(self) -> str:
        ws = self.ws
        if ws is None:
            return "never opened"
        return f"code {ws.close_code} {ws.close_reason}".strip() + (f" ({ws.error})" if ws.error else "")

    def _send_frame(self, magic: int, seq: int) -> None:
        payload = frame_payload(magic, self.r.index, seq)
        if self.twilio:
            self.seq += 1
            self.chunk += 1
            self.ws.send(self._head % (self.seq, self.chunk, (self.chunk - 1) * 20, payload))
        else:
            self.ws.send(self._head % payload)

    # -- the call --

    def _on_text(self, raw: str | None) -> None:
        """Every server message, straight from data_received: time it, echo marks."""
        now = time.perf_counter()
        r = self.r
        if raw is None:
            r.foreign += 1
            return
        try:
            message = json.loads(raw)
        except ValueError:
            r.foreign += 1
            return
        if self.twilio:
            event = message.get("event")
            if event == "mark":
                r.marks += 1
                if not self.stopping and self.open:
                    self.seq += 1  # Twilio echoes the mark once the audio before it has played
                    self.ws.send(self._mark % (self.seq, json.dumps((message.get("mark") or {}).get("name", ""))))
                return
            if event != "media":
                return
            payload = (message.get("media") or {}).get("payload")
        else:
            if message.get("type") != "response.output_audio.delta":
                return
            payload = message.get("delta")
        tag = read_tag(payload)
        if tag is None or tag[0] not in (MAGIC_FRAME, MAGIC_PROBE):
            r.foreign += 1
            return
        magic, call, seq = tag
        if call != self._index:
            r.misrouted += 1
        elif magic == MAGIC_PROBE:
            self.probe_back.set()
        elif seq >= r.frames or r.send_t[seq] == 0.0:
            r.foreign += 1
        elif r.got[seq]:
            r.duplicates += 1
        else:
            if not r.first_echo:
                r.first_echo = now
            r.got[seq] = 1
            r.received += 1
            r.rtts.append(now - r.send_t[seq])
            r.recv_at.append(now)

    async def media(self, start_at: float, drain_s: float) -> None:
        """Send every frame on a drift-free 20 ms schedule from start_at, then drain, stop and close."""
        r = self.r
        loop = asyncio.get_running_loop()
        finished = loop.create_future()
        perf = time.perf_counter

        def tick(seq: int) -> None:
            if finished.done():
                return
            if seq >= r.frames or not self.open:
                finished.set_result(None)
                return
            target = start_at + seq * FRAME_S
            now = perf()
            if now < target - 0.001:  # timers are ~1 ms coarse: send within 1 ms of the frame's time
                loop.call_later(target - now, tick, seq)
                return
            r.lags.append(max(0.0, now - target))
            r.send_t[seq] = now
            try:
                self._send_frame(MAGIC_FRAME, seq)
            except Exception as exc:
                r.send_t[seq] = 0.0
                r.closed_early = r.closed_early or f"send failed: {exc}"
                finished.set_result(None)
                return
            r.sent += 1
            loop.call_later(max(0.0, start_at + (seq + 1) * FRAME_S - perf()), tick, seq + 1)

        loop.call_later(max(0.0, start_at - perf()), tick, 0)
        try:
            await finished
        finally:
            if not finished.done():
                finished.set_result(None)
        drain_until = perf() + drain_s
        while r.received < r.sent and perf() < drain_until and self.open:
            await asyncio.sleep(0.01)
        if not self.open and not r.closed_early:
            r.closed_early = f"closed by the server: {self._closed_why()}"
        await self.close()

    async def close(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.ws is None:
            return
        try:
            if self.twilio and self.open:
                self.seq += 1
                self.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(self.seq),
                                         "streamSid": self.r.stream_sid,
                                         "stop": {"accountSid": self.target.account_sid,
                                                  "callSid": self.r.call_sid}}))
            await self.ws.close(STOP_TIMEOUT_S)
        except Exception:
            if self.ws.transport is not None:
                self.ws.transport.abort()


@dataclass
class RunResult:
    kind: str
    calls: int
    seconds: float
    scenario: str = "steady"            # steady | cold | burst
    arrival_s: float = 0.0              # cold/burst: the calls arrive evenly over this many seconds
    setup_p50: float | None = None      # cold/burst, ms: webhook (relay: connect) → the call's first echo
    setup_p99: float | None = None
    setup_max: float | None = None
    not_forwarded: int = 0              # cold/burst: frames sent before the call's first echo that never came back
    arrival_lag_max: float | None = None  # ms the load generator started a call after its scheduled arrival
    started_to_ready: float | None = None  # cold: s from starting the process to it accepting
    streamed: int = 0                   # cold/burst: calls that got as far as `start` (the server owes a record)
    # cold/burst, ms p50 / p99 of the set-up's parts: webhook answered, socket opened, `start` → first echo
    setup_parts: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    frames_sent: int = 0
    frames_received: int = 0
    rtt_p50: float | None = None
    rtt_p99: float | None = None
    rtt_max: float | None = None
    lag_p99: float | None = None
    duplicates: int = 0
    misrouted: int = 0
    foreign: int = 0
    marks: int = 0
    setup_failed: list[str] = field(default_factory=list)
    closed_early: list[str] = field(default_factory=list)
    cpu_pct: float | None = None        # of one core, over the steady-state window
    rss_idle: float | None = None
    rss_steady: float | None = None
    measured: str = "server"            # whose CPU/RSS: server or stand-in
    loadgen_cpu_pct: float | None = None
    core_busy: dict[int, float] = field(default_factory=dict)  # % of each core used by processes (everyone's)
    core_irq: dict[int, float] = field(default_factory=dict)   # % in irq/softirq (mostly our loopback traffic)
    core_steal: dict[int, float] = field(default_factory=dict)  # % stolen by the hypervisor
    runqueue_pct: float | None = None   # measured process: % of the window spent waiting for a CPU
    standin_cpu_pct: float | None = None
    window_s: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    window_echoed_pct: float | None = None  # frames echoed in the CPU window / frames due in it (100 = keeping up)
    log_issues: list[str] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    stop_how: str = ""
    finalize_s: float | None = None     # our server: seconds after the last close until all calls were finalised
    error: str = ""
    added_p50: float | None = None
    added_p99: float | None = None

    @property
    def lost(self) -> int:
        return self.frames_sent - self.frames_received - self.not_forwarded

    @property
    def cpu_per_call(self) -> float | None:
        return None if self.cpu_pct is None or not self.calls else self.cpu_pct / self.calls

    @property
    def rss_per_call(self) -> float | None:
        if self.rss_idle is None or self.rss_steady is None or not self.calls:
            return None
        return (self.rss_steady - self.rss_idle) / self.calls


@dataclass
class Snapshot:
    """CPU counters at one moment: the measured process tree, the stand-in, the load generator, cores, run queue."""
    t: float
    measured: float | None
    standin: float | None
    loadgen: float
    cores: dict[int, list[int]]
    runqueue: float | None

    @classmethod
    def take(cls, measured_pid: int, standin_pid: int) -> "Snapshot":
        return cls(time.perf_counter(), cpu_seconds(measured_pid), cpu_seconds(standin_pid), self_cpu_seconds(),
                   core_ticks(), runqueue_wait_s(measured_pid))

    def fill(self, result: RunResult, before: "Snapshot") -> None:
        """Put the usage between `before` and this snapshot into result, as % of one core over that window."""
        span = self.t - before.t
        if span <= 0:
            return
        for core in before.cores.keys() & self.cores.keys():
            d = [b - a for a, b in zip(before.cores[core], self.cores[core])]
            if d[3] > 0:
                result.core_busy[core] = 100 * d[0] / d[3]
                result.core_irq[core] = 100 * d[1] / d[3]
                result.core_steal[core] = 100 * d[2] / d[3]
        if before.runqueue is not None and self.runqueue is not None:
            result.runqueue_pct = 100 * (self.runqueue - before.runqueue) / span
        result.window_s = span
        result.window = (before.t, self.t)
        if before.measured is not None and self.measured is not None:
            result.cpu_pct = 100 * (self.measured - before.measured) / span
        if before.standin is not None and self.standin is not None:
            result.standin_cpu_pct = 100 * (self.standin - before.standin) / span
        result.loadgen_cpu_pct = 100 * (self.loadgen - before.loadgen) / span


async def play_calls(target: Target, count: int, seconds: float, drain_s: float, measured_pid: int,
                     standin_pid: int, result: RunResult | None) -> list[CallResult]:
    """Set up `count` calls, then stream `seconds` of audio on all at once; samples CPU/RSS in steady state."""
    frames = max(1, int(round(seconds / FRAME_S)))
    calls = [LoadCall(target, i, frames) for i in range(count)]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def set_up(call: LoadCall) -> None:
        async with gate:
            try:
                await asyncio.wait_for(call.setup(time.monotonic() + SETUP_TIMEOUT_S), SETUP_TIMEOUT_S + 5)
            except Exception as exc:
                call.r.error = f"{type(exc).__name__}: {exc}"[:300]
                await call.close()

    await asyncio.gather(*(set_up(call) for call in calls))
    ready = [call for call in calls if not call.r.error]
    await asyncio.sleep(0.3)  # let late probe echoes and the setup bursts settle

    start = time.perf_counter() + 0.2
    # Calls are spread evenly over one 20 ms period, as independent callers would be.
    tasks = [asyncio.create_task(call.media(start + i * FRAME_S / max(1, len(ready)), drain_s))
             for i, call in enumerate(ready)]

    async def sample() -> None:
        if result is None:
            return
        warm = min(1.0, seconds / 5)
        await asyncio.sleep(max(0.0, start + warm - time.perf_counter()))
        before = Snapshot.take(measured_pid, standin_pid)
        await asyncio.sleep(max(0.0, start + seconds - time.perf_counter()))
        Snapshot.take(measured_pid, standin_pid).fill(result, before)
        result.rss_steady = rss_mb(measured_pid)

    sampler = asyncio.create_task(sample())
    # Bounded: the media phase lasts `seconds` plus the drain; the rest is slack for a struggling box.
    pending: set[asyncio.Task] = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=seconds + drain_s + STOP_TIMEOUT_S + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*(call.close() for call in calls if call.ws is not None and not call.stopping),
                         return_exceptions=True)
    try:
        await asyncio.wait_for(sampler, 10)
    except Exception:
        pass  # a missing sample shows up as n/a
    return [call.r for call in calls]


def summarise(result: RunResult, calls: list[CallResult]) -> None:
    rtts: list[float] = []
    lags: list[float] = []
    for call in calls:
        result.frames_sent += call.sent
        result.frames_received += call.received
        result.duplicates += call.duplicates
        result.misrouted += call.misrouted
        result.foreign += call.foreign
        result.marks += call.marks
        rtts.extend(call.rtts)
        lags.extend(call.lags)
        if call.error:
            result.setup_failed.append(f"call {call.index}: {call.error}")
        if call.closed_early:
            result.closed_early.append(f"call {call.index}: {call.closed_early}")
    t0, t1 = result.window
    if result.scenario == "steady" and t1 > t0:
        echoed = sum(1 for call in calls for at in call.recv_at if t0 <= at < t1)
        due = sum(1 for call in calls if not call.error) * (t1 - t0) / FRAME_S
        result.window_echoed_pct = 100 * echoed / due if due else None
    elif result.scenario != "steady":
        result.streamed = sum(1 for call in calls if call.streamed)
        setups, arrival_lags = [], []
        for call in calls:
            if call.setup_start:
                arrival_lags.append(call.arrival_lag)
            if call.first_echo:
                setups.append(call.first_echo - call.setup_start)
            # A call that never echoed never finished its set-up: all its unanswered frames count here too (and
            # the call as a set-up failure).
            cut = call.first_echo or math.inf
            result.not_forwarded += sum(1 for seq in range(call.frames)
                                        if call.send_t[seq] and not call.got[seq] and call.send_t[seq] < cut)
        setups.sort()
        if setups:
            result.setup_p50, result.setup_p99 = pct(setups, 50) * 1000, pct(setups, 99) * 1000
            result.setup_max = setups[-1] * 1000
        if arrival_lags:
            result.arrival_lag_max = max(arrival_lags) * 1000
        parts = {
            "webhook": [c.webhook_done - c.setup_start for c in calls if c.webhook_done],
            "socket": [c.start_sent - (c.webhook_done or c.setup_start) for c in calls if c.start_sent],
            "flow": [c.first_echo - c.start_sent for c in calls if c.first_echo and c.start_sent],
        }
        for name, values in parts.items():
            values.sort()
            if values:
                result.setup_parts[name] = (pct(values, 50) * 1000, pct(values, 99) * 1000)
    rtts.sort()
    lags.sort()
    if rtts:
        result.rtt_p50, result.rtt_p99, result.rtt_max = pct(rtts, 50) * 1000, pct(rtts, 99) * 1000, rtts[-1] * 1000
    if lags:
        result.lag_p99 = pct(lags, 99) * 1000


# --- the bare relay (subprocess mode of this script) ------------------------------------------------------------


def relay_main(port: int, upstream: str) -> None:
    """A minimal Twilio ⇄ Realtime relay on plain `websockets`: the floor for a Python bridge. No Django."""
    import uvloop
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def pump(up: Any, ws: Any, stream_sid: str) -> None:
        media = '{"event":"media","streamSid":"' + stream_sid + '","media":{"payload":"'
        mark = '{"event":"mark","streamSid":"' + stream_sid + '","mark":{"name":"'
        sent = 0
        async for raw in up:
            event = json.loads(raw)
            if event.get("type") == "response.output_audio.delta":
                sent += 1
                await ws.send(media + event["delta"] + '"}}')
                await ws.send(mark + event["item_id"] + ":" + str(sent) + '"}}')

    async def handler(ws: Any) -> None:
        up, reader = None, None
        try:
            async for raw in ws:
                frame = json.loads(raw)
                event = frame.get("event")
                if event == "media":
                    if up is not None:
                        await up.send('{"type":"input_audio_buffer.append","audio":"' + frame["media"]["payload"] + '"}')
                elif event == "start":
                    up = await connect(f"{upstream}?model={MODEL}", additional_headers={"Authorization": "Bearer sk-bench"},
                                       open_timeout=8, max_size=16 * 2**20, ping_interval=20, ping_timeout=20)
                    reader = asyncio.create_task(pump(up, ws, frame["start"]["streamSid"]))
                elif event == "stop":
                    break
        except ConnectionClosed:
            pass
        finally:
            if reader is not None:
                reader.cancel()
            if up is not None:
                await up.close()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=2**16) as server:
            await server.serve_forever()

    uvloop.run(main())


def fallback_standin_main(port: int) -> None:
    """FALLBACK ONLY (--builtin-standin): a tiny echo stand-in, NOT voice/offline/realtime/. Results say so."""
    import uvloop
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def handler(ws: Any) -> None:
        if not ws.request.headers.get("Authorization", "").startswith("Bearer "):
            await ws.close(4401, "missing bearer")
            return
        try:
            async for raw in ws:
                event = json.loads(raw)
                if event.get("type") == "input_audio_buffer.append":
                    await ws.send(json.dumps({"type": "response.output_audio.delta", "event_id": "evt_echo",
                                              "response_id": "resp_echo", "item_id": "item_echo", "output_index": 0,
                                              "content_index": 0, "delta": event["audio"]}))
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=16 * 2**20) as server:
            await server.serve_forever()

    uvloop.run(main())


# --- one run per (server kind, call count) ----------------------------------------------------------------------


def server_argv(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":  # the Procfile's `web` line, on loopback
        return [str(BIN / "uvicorn"), "receptionist.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--proxy-headers",
                "--forwarded-allow-ips=127.0.0.1", "--timeout-graceful-shutdown", "20", "--log-level", "warning"]
    if kind == "daphne":
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "receptionist.asgi:application"]
    raise ValueError(kind)


def log_issues(path: Path, limit: int = 8) -> list[str]:
    """Distinct warning/error lines of a log, with counts; a traceback is reported by its exception line."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines) and i < 1_000_000:
        line = lines[i]
        if line.startswith("Traceback (most recent call last)"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j].strip()):
                j += 1
            key = "Traceback: " + (lines[j] if j < len(lines) else "(truncated)")
            i = j + 1
        elif LOG_ISSUE.search(line):
            key = re.sub(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ ", "", line)  # drop the timestamp so repeats collapse
            i += 1
        else:
            i += 1
            continue
        key = key[:240]
        seen[key] = seen.get(key, 0) + 1
    return [f"{count}× {line}" for line, count in list(seen.items())[:limit]]


def start_server(kind: str, ctx: dict[str, Any], log_path: Path) -> tuple[Proc, Target, int]:
    """A fresh server process pinned to core 0 (not waited for), the target the calls use, and its port."""
    port = free_port()
    env = bench_env(server_port=port, standin_port=ctx["standin_port"], auth_token=ctx["auth_token"],
                    account_sid=ctx["account_sid"])
    if kind == "relay":
        argv = [PY, str(Path(__file__).resolve()), "--_relay", str(port), ctx["standin_url"]]
        target = Target(kind, ws_url=f"ws://127.0.0.1:{port}/ws/twilio/media/", account_sid=ctx["account_sid"])
    else:
        argv = server_argv(kind, port)
        target = Target(kind, base_url=f"http://127.0.0.1:{port}", auth_token=ctx["auth_token"],
                        account_sid=ctx["account_sid"])
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


def warm_up(target: Target, measured: int, standin: Proc, args: argparse.Namespace) -> None:
    """One call through every code path (views, session, websockets client), as a process that has served."""
    warm = run_async(play_calls(target, 1, 0.5, args.drain, measured, standin.pid, None))
    if warm[0].error or warm[0].received == 0:
        raise RuntimeError(f"warm-up call failed: {warm[0].error or warm[0].closed_early or 'no frames back'}")
    time.sleep(0.5)


def finish_run(result: RunResult, kind: str, proc: Proc | None, log_path: Path, sids: list[str] | None) -> None:
    """Stop the server, scan its log, and read back the calls it wrote."""
    if proc is not None:
        result.stop_how = proc.stop()
        result.log_issues = log_issues(log_path)
    if kind in ("uvicorn", "daphne") and sids is not None:
        try:
            result.db = db_call_summary(sids)
        except Exception as exc:
            result.db = {f"db check failed: {exc}": 0}


def run_one(kind: str, count: int, args: argparse.Namespace, ctx: dict[str, Any]) -> RunResult:
    """Steady state: warm process, calls set up SETUP_CONCURRENCY at a time and probed, then all stream at once."""
    result = RunResult(kind=kind, calls=count, seconds=args.seconds)
    standin: Proc = ctx["standin"]
    proc: Proc | None = None
    sids: list[str] | None = None
    log_path = ctx["log_dir"] / f"{kind}-n{count}.log"
    try:
        if kind == "direct":
            target = Target(kind, ws_url=ctx["standin_url"])
            measured = standin.pid
            result.measured = "stand-in"
        else:
            proc, target, port = start_server(kind, ctx, log_path)
            wait_ready(kind, port, proc)
            measured = proc.pid
        warm_up(target, measured, standin, args)
        result.rss_idle = rss_mb(measured)
        calls = run_async(play_calls(target, count, args.seconds, args.drain, measured, standin.pid, result))
        summarise(result, calls)
        if kind in ("uvicorn", "daphne"):
            sids = [c.call_sid for c in calls if not c.error]
            # Let the server finish writing the calls before it is stopped (bounded).
            result.finalize_s = db_wait_finalized(sids, FINALIZE_TIMEOUT_S)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        finish_run(result, kind, proc, log_path, sids)
    return result


async def arrive_calls(target: Target, count: int, args: argparse.Namespace, measured_pid: int, standin_pid: int,
                       result: RunResult, ready: Callable[[], Awaitable[None]] | None = None) -> list[CallResult]:
    """`count` calls arriving evenly over args.arrival seconds, each streaming from its `start` on; `ready()` is
    awaited first and the first call arrives the moment it returns. CPU is sampled over the run."""
    frames = max(1, int(round(args.call_seconds / FRAME_S)))
    calls = [LoadCall(target, i, frames) for i in range(count)]
    if target.kind in ("uvicorn", "daphne"):
        for call in calls:
            call.prepare_webhook()
    if ready is not None:
        await ready()
    before = Snapshot.take(measured_pid, standin_pid)
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(call.arrive(t0 + i * args.arrival / count, args.drain))
             for i, call in enumerate(calls)]
    # Bounded: arrivals, a set-up that may time out, the call, its drain and close, and slack for a struggling box.
    _, pending = await asyncio.wait(tasks, timeout=args.arrival + SETUP_TIMEOUT_S + args.call_seconds + args.drain
                                    + STOP_TIMEOUT_S + 30)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.gather(*(call.close() for call in calls if call.ws is not None and not call.stopping),
                         return_exceptions=True)
    Snapshot.take(measured_pid, standin_pid).fill(result, before)
    return [call.r for call in calls]


def run_arrivals(scenario: str, kind: str, count: int, args: argparse.Namespace, ctx: dict[str, Any]) -> RunResult:
    """Cold start (a fresh process, no warm-up) or burst (a fresh process after one warm-up call): `count` calls
    arriving evenly over args.arrival seconds."""
    result = RunResult(kind=kind, calls=count, seconds=args.call_seconds, scenario=scenario, arrival_s=args.arrival)
    standin: Proc = ctx["standin"]
    proc: Proc | None = None
    sids: list[str] | None = None
    log_path = ctx["log_dir"] / f"{kind}-{scenario}-n{count}.log"
    try:
        started = time.perf_counter()
        proc, target, port = start_server(kind, ctx, log_path)
        if scenario == "cold":
            async def ready() -> None:
                await wait_accepting(kind, port, proc)
                result.started_to_ready = time.perf_counter() - started

            calls = run_async(arrive_calls(target, count, args, proc.pid, standin.pid, result, ready))
        else:
            wait_ready(kind, port, proc)
            warm_up(target, proc.pid, standin, args)
            calls = run_async(arrive_calls(target, count, args, proc.pid, standin.pid, result))
        summarise(result, calls)
        if kind in ("uvicorn", "daphne"):
            sids = [c.call_sid for c in calls if c.streamed]
            result.finalize_s = db_wait_finalized(sids, FINALIZE_TIMEOUT_S)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        finish_run(result, kind, proc, log_path, sids)
    return result


def run_async(coro: Any) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# --- reporting --------------------------------------------------------------------------------------------------


def results_table(results: list[RunResult]) -> str:
    head = ("| server | calls | frames sent | frames lost | RTT p50 / p99 (ms) | added p50 / p99 (ms) | server CPU % "
            "| CPU per call (% of a core) | RSS per call (MB) |")
    rows = [head, "|" + "---|" * 9]
    for r in results:
        if r.error and not r.frames_sent:
            rows.append(f"| {r.kind} | {r.calls} | — | — | failed: {r.error.splitlines()[0][:120]} | | | | |")
            continue
        star = "¹" if r.measured == "stand-in" else ""
        lost = f"{r.lost}" + (f" ({100 * r.lost / r.frames_sent:.1f} %)" if r.lost and r.frames_sent else "")
        calls = f"{r.calls}" + (f" ({len(r.setup_failed)} failed)" if r.setup_failed else "")
        rows.append(
            f"| {r.kind} | {calls} | {r.frames_sent} | {lost} | {fmt(r.rtt_p50, 2)} / {fmt(r.rtt_p99, 2)} "
            f"| {'—' if r.kind == 'direct' else fmt(r.added_p50, 2) + ' / ' + fmt(r.added_p99, 2)} "
            f"| {fmt(r.cpu_pct)}{star} | {fmt(r.cpu_per_call, 2)}{star} | {fmt(r.rss_per_call, 3)}{star} |")
    return "\n".join(rows)


def client_table(results: list[RunResult]) -> str:
    rows = ["| server | calls | setup failed / closed early | dup / misrouted / unreadable | marks echoed "
            "| RTT max (ms) | send lag p99 (ms) | load gen CPU % | stand-in CPU % | core 0 / core 1 used by processes % "
            "| run-queue wait % | echoed in window % | server log lines ≥ WARNING | calls in DB (status/reason) |",
            "|" + "---|" * 14]
    for r in results:
        issues = sum(int(line.split("×", 1)[0]) for line in r.log_issues) if r.log_issues else 0
        db = ", ".join(f"{k}: {v}" for k, v in sorted(r.db.items())) or "—"
        rows.append(f"| {r.kind} | {r.calls} | {len(r.setup_failed)} / {len(r.closed_early)} "
                    f"| {r.duplicates} / {r.misrouted} / {r.foreign} | {r.marks} | {fmt(r.rtt_max, 1)} "
                    f"| {fmt(r.lag_p99, 2)} | {fmt(r.loadgen_cpu_pct)} | {fmt(r.standin_cpu_pct)} "
                    f"| {' / '.join(fmt(r.core_busy.get(c), 0) for c in (0, 1))} | {fmt(r.runqueue_pct)} "
                    f"| {fmt(r.window_echoed_pct, 0)} "
                    f"| {issues if r.kind in ('uvicorn', 'daphne', 'relay') else '—'} | {db} |")
    return "\n".join(rows)


def goal_check(results: list[RunResult], calls: int = 50) -> str:
    by = {(r.kind, r.calls): r for r in results}
    uv, relay = by.get(("uvicorn", calls)), by.get(("relay", calls))
    if uv is None or uv.error and not uv.frames_sent:
        return f"Goal check ({calls} calls): not measured (no uvicorn run at {calls} calls)."
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
    return f"Goal check ({calls} calls, uvicorn): " + "; ".join(parts) + "."


def arrivals_table(results: list[RunResult]) -> str:
    rows = ["| scenario | server | calls (over s) | set-up p50 / p99 / max (ms) | set-up failures "
            "| frame RTT p50 / p99 / max (ms) | frames sent | echoed | not forwarded during set-up | lost "
            "| server CPU % |", "|" + "---|" * 11]
    for r in results:
        calls = f"{r.calls} ({r.arrival_s:g} s)"
        if r.error and not r.frames_sent:
            rows.append(f"| {r.scenario} | {r.kind} | {calls} | failed: {r.error.splitlines()[0][:120]} "
                        "| | | | | | | |")
            continue
        rows.append(f"| {r.scenario} | {r.kind} | {calls} | {fmt(r.setup_p50)} / {fmt(r.setup_p99)} / "
                    f"{fmt(r.setup_max)} | {len(r.setup_failed)} | {fmt(r.rtt_p50, 2)} / {fmt(r.rtt_p99, 2)} / "
                    f"{fmt(r.rtt_max)} | {r.frames_sent} | {r.frames_received} | {r.not_forwarded} | {r.lost} "
                    f"| {fmt(r.cpu_pct)} |")
    return "\n".join(rows)


def arrivals_client_table(results: list[RunResult]) -> str:
    rows = ["| scenario | server | calls | taking traffic after start (s) | set-up parts p50 / p99 (ms): webhook; "
            "socket open; start → first echo | arrival lag max (ms) "
            "| send lag p99 (ms) | closed early | dup / misrouted / unreadable | load gen CPU % | stand-in CPU % "
            "| core 0 / core 1 used by processes % | run-queue wait % | server log lines ≥ WARNING "
            "| calls in DB (status/reason) |", "|" + "---|" * 15]
    for r in results:
        issues = sum(int(line.split("×", 1)[0]) for line in r.log_issues) if r.log_issues else 0
        db = ", ".join(f"{k}: {v}" for k, v in sorted(r.db.items())) or "—"
        parts = "; ".join(" / ".join(fmt(v) for v in r.setup_parts[name]) if name in r.setup_parts else "—"
                          for name in ("webhook", "socket", "flow"))
        rows.append(f"| {r.scenario} | {r.kind} | {r.calls} | {fmt(r.started_to_ready, 2)} | {parts} "
                    f"| {fmt(r.arrival_lag_max, 1)} | {fmt(r.lag_p99, 2)} | {len(r.closed_early)} "
                    f"| {r.duplicates} / {r.misrouted} / {r.foreign} | {fmt(r.loadgen_cpu_pct)} "
                    f"| {fmt(r.standin_cpu_pct)} | {' / '.join(fmt(r.core_busy.get(c), 0) for c in (0, 1))} "
                    f"| {fmt(r.runqueue_pct)} | {issues} | {db} |")
    return "\n".join(rows)


def issue13_goals(results: list[RunResult]) -> list[str]:
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
        label = f"{r.kind} × {r.calls}" if r.scenario == "steady" else f"{r.scenario}: {r.kind} × {r.calls}"
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
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("django", "uvicorn", "daphne", "websockets", "channels"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


# --- main -------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="1,10,50,100", help="steady state: comma-separated concurrent call counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio seconds per call (steady state)")
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
                        help="use this script's tiny FALLBACK echo stand-in instead of `manage.py realtime_standin`")
    parser.add_argument("--_relay", nargs=2, metavar=("PORT", "UPSTREAM"), help=argparse.SUPPRESS)
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
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in args.scenario_list if s not in {"steady", "cold", "burst"}]
    if bad or not args.scenario_list:
        parser.error(f"--scenarios takes steady, cold and/or burst, not {', '.join(bad) or 'nothing'}")
    if not 0.5 <= args.seconds <= 300 or not 0 <= args.drain <= 30:
        parser.error("--seconds must be 0.5–300 and --drain 0–30")
    if not 0.5 <= args.call_seconds <= 300 or not 0 <= args.arrival <= 60:
        parser.error("--call-seconds must be 0.5–300 and --arrival 0–60")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args._relay:
        relay_main(int(args._relay[0]), args._relay[1])
        return 0
    if args._standin:
        fallback_standin_main(int(args._standin))
        return 0

    started = dt.datetime.now(dt.timezone.utc)
    command = "python bench/bridge_latency.py" + "".join(" " + shlex.quote(a) for a in argv)
    machine = f"nproc {nproc()}, {cpu_model()}, {platform.system()} {platform.release()}, " \
              f"Python {platform.python_version()}; {versions()}"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    log_dir = Path(tempfile.mkdtemp(prefix="bridge_latency-"))
    print(f"{command}\n{started:%Y-%m-%d %H:%M} UTC; {machine}; {bytecode_note()}; load average {load}\n"
          f"logs: {log_dir}", flush=True)

    ctx: dict[str, Any] = {"log_dir": log_dir, "pin": pin,
                           "auth_token": "bench-" + secrets.token_hex(16), "account_sid": "AC" + secrets.token_hex(16)}
    standin_port = free_port()
    ctx["standin_port"] = standin_port
    ctx["standin_url"] = f"ws://127.0.0.1:{standin_port}/v1/realtime"
    env = bench_env(server_port=8000, standin_port=standin_port, auth_token=ctx["auth_token"],
                    account_sid=ctx["account_sid"])
    standin: Proc | None = None
    results: list[RunResult] = []
    try:
        if any(k in ("uvicorn", "daphne") for k in args.server_kinds):
            t = time.monotonic()
            setup_database(env, log_dir)
            print(f"database {BENCH_DB} created and migrated, business {BUSINESS_NUMBER} added "
                  f"({time.monotonic() - t:.1f} s)", flush=True)
        if args.builtin_standin:
            argv_standin = [PY, str(Path(__file__).resolve()), "--_standin", str(standin_port)]
            standin_label = "FALLBACK echo stand-in built into bench/bridge_latency.py (not voice/offline/realtime/)"
        else:
            argv_standin = [PY, "manage.py", "realtime_standin", "--host", "127.0.0.1", "--port", str(standin_port),
                            "--echo"]
            standin_label = "`manage.py realtime_standin --echo` (voice/offline/realtime/)"
        standin = Proc("stand-in", argv_standin, env, log_dir / "standin.log", core=1 if pin else None)
        ctx["standin"] = standin
        wait_tcp(standin_port, standin, READY_TIMEOUT_S)
        if pin:
            os.sched_setaffinity(0, {1})  # the load generator shares core 1 with the stand-in
        print(f"stand-in: {standin_label} on port {standin_port}; pinning: "
              f"{'server core 0, stand-in + load generator core 1' if pin else 'none'}", flush=True)

        # direct first: the other kinds' "added" latency is relative to it
        order = sorted(args.server_kinds, key=lambda k: k != "direct") if "steady" in args.scenario_list else []
        for kind in order:
            for count in args.call_counts:
                t = time.monotonic()
                result = run_one(kind, count, args, ctx)
                results.append(result)
                print(f"  {kind:8s} {count:4d} calls: sent {result.frames_sent}, lost {result.lost}, "
                      f"RTT p50/p99 {fmt(result.rtt_p50, 2)}/{fmt(result.rtt_p99, 2)} ms, "
                      f"{result.measured} CPU {fmt(result.cpu_pct)} %"
                      f"{'  ERROR ' + result.error.splitlines()[0][:200] if result.error else ''}"
                      f"  ({time.monotonic() - t:.0f} s)", flush=True)
                if not standin.alive():
                    raise RuntimeError(f"the stand-in died:\n{standin.log_tail()}")
        # Cold start and burst: our server and the bare relay, alternating so that a change in the box's load
        # affects both alike.
        for scenario, scenario_counts in (("cold", args.cold_counts), ("burst", args.burst_counts)):
            if scenario not in args.scenario_list:
                continue
            for count in scenario_counts:
                for kind in ARRIVAL_KINDS:
                    if kind not in args.server_kinds:
                        continue
                    t = time.monotonic()
                    result = run_arrivals(scenario, kind, count, args, ctx)
                    results.append(result)
                    print(f"  {scenario:5s} {kind:8s} {count:4d} calls over {args.arrival:g} s: set-up p50/p99 "
                          f"{fmt(result.setup_p50)}/{fmt(result.setup_p99)} ms, RTT p99/max "
                          f"{fmt(result.rtt_p99, 1)}/{fmt(result.rtt_max, 1)} ms, sent {result.frames_sent}, "
                          f"not forwarded {result.not_forwarded}, lost {result.lost}, "
                          f"failed {len(result.setup_failed)}, CPU {fmt(result.cpu_pct)} %"
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

    steady = [r for r in results if r.scenario == "steady"]
    arrivals = [r for r in results if r.scenario != "steady"]
    direct = {r.calls: r for r in steady if r.kind == "direct" and r.rtt_p50 is not None}
    for r in steady:
        base = direct.get(r.calls)
        if r.kind != "direct" and base is not None and r.rtt_p50 is not None:
            r.added_p50 = r.rtt_p50 - base.rtt_p50
            r.added_p99 = r.rtt_p99 - base.rtt_p99
    kind_rank = {"uvicorn": 0, "daphne": 1, "relay": 2, "direct": 3}
    steady.sort(key=lambda r: (r.calls, kind_rank[r.kind]))
    arrivals.sort(key=lambda r: (r.scenario != "cold", r.calls, kind_rank[r.kind]))
    goals = issue13_goals(results)
    direct_note = f"\n{DIRECT_NOTE}\n" if direct else ""  # the ¹ marks only appear on direct rows
    notes = oddities(steady + arrivals, ctx)
    finished = dt.datetime.now(dt.timezone.utc)
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

    if args.out:
        out = Path(args.out)
        out = out if out.is_absolute() else REPO / out
        section = f"""{SECTION}

What our media path adds to every 20 ms audio frame, in steady state and when calls arrive together. Every
simulated Twilio call sends one tagged 160-byte μ-law frame every 20 ms through the server to the local OpenAI
Realtime stand-in in echo mode, which sends each frame straight back as a `response.output_audio.delta`; the
server forwards it to the caller as Twilio `media` + `mark`, and the load generator echoes every `mark` as Twilio
would. RTT is per frame, send to echo.

- Command: `{command}` (from the repository root, with `.venv/bin/python`)
- Date: {started:%Y-%m-%d %H:%M} UTC; took {(finished - started).total_seconds():.0f} s; load average at start {load}
- Machine: {machine}; {bytecode_note()}
- Stand-in: {standin_label}
- Servers: **uvicorn** = the Procfile's `web` command (uvloop, httptools, `--ws websockets-sansio`) serving
  `receptionist.asgi`; **daphne** = `daphne receptionist.asgi:application`; both with DEBUG=false, PostgreSQL
  (`{BENCH_DB}`) and `REDIS_URL` (the real channels-redis/cache config). **relay** = a bare `websockets` relay
  inside the bench (no Django): the practical floor for Python. **direct** = no server; the load generator speaks
  the Realtime protocol to the stand-in (the network + stand-in baseline). One fresh server process per row.
- Load generator: one asyncio (uvloop) process with a small callback-driven WebSocket client (and HTTP client for
  the webhooks) written for the bench, so it costs less per message than the servers it measures. Per-core
  busy % (from /proc/stat) and the measured process's run-queue wait (from schedstat) show how much other load
  there was; when they are high, that run's latencies say more about the box than about the server.
- Cores: {'the server is pinned to core 0; the stand-in and the load generator share core 1' if pin else 'no pinning'}.
  On a 2-core machine that other people's test runs may share, the load generator, the stand-in and the
  server compete for 2 cores: **compare ratios between rows, not absolute numbers.**
"""
        if steady:
            section += f"""
### Steady state

N calls on a warm process (one warm-up call first), set up {SETUP_CONCURRENCY} at a time through the real signed
incoming-call webhook, stream token and `start` (uvicorn, daphne), each probed until one frame comes back; then all
stream at once on a drift-free schedule, spread evenly over the 20 ms period, for {args.seconds:g} s.
Added = a server's RTT percentile minus the direct run's at the same N. Server CPU % is utime+stime of the server
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
        section += "\n### Goals (issue 13)\n\n" + "\n".join(
            line if line.startswith("  - ") else f"- {line}" for line in goals) + "\n"
        if notes:
            section += "\nOdd things seen in this run:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
        update_doc(out, SECTION, section)
        print(f"wrote the section to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
