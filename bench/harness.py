"""What every benchmark shares, so that each script says only what it measures:

- processes: start one in its own process group with its output in a log file, pinned to a core if asked, wait
  until it listens (TCP) or answers (HTTP), stop it (SIGTERM, then SIGKILL), read its log's warnings;
- sampling from /proc: CPU seconds and RSS of a process tree, per-core busy time, run-queue wait;
- the one percentile function (nearest rank: always a value that was measured);
- the environment lines every report starts with (machine, versions);
- the docs writer: a script's own section of docs/benchmarks.md, refused while another benchmark runs.

Scripts run as `python bench/<name>.py` and put the repository root on sys.path, so this imports as
`bench.harness` (tested in tests/test_bench_harness.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DOC_HEADER = "# Benchmarks\n\nMeasurements of the product's hot paths, with the commands that produced them.\n"
KILL_AFTER_S = 8.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_ISSUE = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback|Exception)\b")
# A leading timestamp, plain ("2026-12-07 06:00:00,123 ") or Celery's ("[2026-12-07 06:00:00,123: "), so that
# repeats of one warning collapse into one line.
_LOG_TIMESTAMP = re.compile(r"^\[?\d{4}-\d\d-\d\d[ T][\d:,.]+:? ?")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b")


# --- figures -----------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile, `p` in 0..100: always a value that was measured. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# --- the environment ---------------------------------------------------------------------------------------------


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


def machine() -> str:
    """Cores, CPU, OS and Python: the line that says which box the figures come from."""
    return (f"nproc {nproc()}, {cpu_model()}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def package_versions(names: Iterable[str | tuple[str, str]]) -> str:
    """"name version, ..." of the installed distributions; (distribution, label) pairs rename one."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        dist, label = name if isinstance(name, tuple) else (name, name)
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{label} {version(dist)}")
    return ", ".join(out)


def bench_stores(database: str, redis_db: int) -> tuple[str, str]:
    """The database name and Redis URL a benchmark drops and flushes: its defaults, or BENCH_DATABASE and
    BENCH_REDIS_DB, so that two benchmarks on one machine do not trample each other's."""
    name = os.environ.get("BENCH_DATABASE", database)
    db = os.environ.get("BENCH_REDIS_DB", str(redis_db))
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) or not db.isdigit():
        sys.exit("BENCH_DATABASE must be a plain lower-case identifier and BENCH_REDIS_DB a Redis db number")
    return name, f"redis://127.0.0.1:6379/{db}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- sampling from /proc -----------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()  # fields from #3 (state) on; comm may contain spaces and parentheses


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
    """utime+stime of pid and its live descendants (plus their reaped children), in seconds; None if it is gone."""
    total, found = 0, False
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cu- cs-
        except (OSError, ValueError, IndexError):
            continue
        found = True
    return total / CLK_TCK if found else None


def self_cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def rss_mb(pid: int) -> float | None:
    """VmRSS of pid and its live descendants, in MB."""
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


# --- processes ---------------------------------------------------------------------------------------------------


def can_pin(cores: int = 2) -> bool:
    """Whether processes can be given cores of their own: taskset exists and there are at least `cores`."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= cores


def pin_self(core: int) -> None:
    """Run this process (the load generator) on `core` only."""
    os.sched_setaffinity(0, {core})


try:  # resolved here, not in the forked child
    import ctypes

    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    _PRCTL = None
_PR_SET_PDEATHSIG, _SIGTERM = 1, int(signal.SIGTERM)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the bench dies, so no server, worker or stand-in is left behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


class Proc:
    """A subprocess in its own process group, output to a log file, pinned to `core` if given; stop() = SIGTERM,
    then SIGKILL."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path,
                 core: int | None = None) -> None:
        self.name = name
        self.log_path = log_path
        if core is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(core)] + argv  # taskset execs argv: the pid stays the server's
        self.argv = argv
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      preexec_fn=_die_with_parent)  # noqa: PLW1509 - started before any thread
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> str:
        """SIGTERM the group, SIGKILL it after KILL_AFTER_S; returns how it ended."""
        how = f"had exited ({self.popen.returncode})"
        if self.alive():
            how = "SIGTERM"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=KILL_AFTER_S)
            except subprocess.TimeoutExpired:
                how = f"SIGKILL (ignored SIGTERM for {KILL_AFTER_S:.0f} s)"
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # always sweep the group: workers/children may outlive the leader
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            how += ", did not die"
        self._log.close()
        return how

    def died(self) -> str:
        return f"{self.name} exited with {self.popen.returncode}: {self.last_line()}\n{self.log_tail()}"

    def last_line(self) -> str:
        lines = [line for line in self.log_tail(40).splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(no output)"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_tcp(port: int, proc: Proc, timeout: float) -> None:
    """Until `proc` accepts connections on 127.0.0.1:port; raises if it dies or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(proc.died())
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{proc.log_tail()}")


def wait_http(url: str, proc: Proc, timeout: float) -> None:
    """Until `url` answers 200; raises if `proc` dies or the time runs out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(proc.died())
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.15)
    raise RuntimeError(f"{proc.name}: {url} not ready within {timeout:.0f} s ({last}):\n{proc.log_tail()}")


def log_issues(path: Path, limit: int = 8) -> list[str]:
    """Distinct warning/error lines of a log, most frequent first, with counts; a traceback is reported by its
    exception line."""
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
            key = _UUID.sub("<uuid>", _LOG_TIMESTAMP.sub("", line.strip()))
            i += 1
        else:
            i += 1
            continue
        key = key[:240]
        seen[key] = seen.get(key, 0) + 1
    return [f"{n}× {line}" for line, n in sorted(seen.items(), key=lambda kv: -kv[1])[:limit]]


# --- the bench database ------------------------------------------------------------------------------------------

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres password=postgres dbname=postgres"


def run_step(name: str, argv: list[str], env: dict[str, str], log_dir: Path | None = None,
             timeout: float = 300) -> None:
    """One set-up command run from the repository root; its output goes to log_dir/setup-<name>.log. Raises if it
    fails."""
    result = subprocess.run(argv, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if log_dir is not None:
        (log_dir / f"setup-{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stderr[-2000:]}")


def recreate_database(name: str, env: dict[str, str], log_dir: Path | None = None) -> None:
    """Drop and create the bench database `name` (a plain identifier, see bench_stores), then migrate it."""
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    run_step("migrate", [sys.executable, "manage.py", "migrate", "--noinput"], env, log_dir)


# --- the docs writer ---------------------------------------------------------------------------------------------


def _parent_pid(pid: str) -> int:
    return int(_stat_fields(int(pid))[1])


def other_benchmarks() -> list[str]:
    """Other benchmarks running now (Python running a bench/*.py script; this process and its children
    excepted): they would share the CPUs and may write docs/benchmarks.md too."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            args = [a.decode(errors="replace") for a in Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0") if a]
            if _parent_pid(entry) == me:
                continue
        except (OSError, ValueError, IndexError):
            continue
        if not args or "python" not in Path(args[0]).name:
            continue
        if any(a.endswith(".py") and Path(a).parent.name == "bench" and Path(a).stem != "harness" for a in args[1:3]):
            found.append(f"{entry}: {' '.join(args)[:120]}")
    return found


def write_section(out: str, heading: str, section: str, spare: Path | None = None) -> int:
    """Put `section` into `out` (relative to the repository) unless another benchmark is running; an exit code.
    When it is refused, the section is kept in `spare` if given, so a long run's figures are not lost."""
    running = other_benchmarks()
    if running:
        print(f"not writing {out}: other benchmarks are running:\n" + "\n".join(running), file=sys.stderr)
        if spare is not None:
            spare.write_text(section)
            print(f"the section is in {spare}", file=sys.stderr)
        return 1
    path = Path(out) if os.path.isabs(out) else REPO / out
    update_doc(path, heading, section)
    print(f"wrote the section to {path}")
    return 0


def update_doc(path: Path, heading: str, section: str) -> None:
    """Replace the section under `heading` (up to the next `## ` heading) or append it; other sections are left
    as they are. Written to a temporary file and renamed, so a reader never sees half a file."""
    text = path.read_text() if path.exists() else DOC_HEADER
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    body = section.rstrip("\n") + "\n"
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + body + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
