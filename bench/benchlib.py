"""What every benchmark script shares: percentiles, spotting another benchmark running, writing its section of
docs/benchmarks.md. Scripts run as `python bench/<name>.py`, so this module is imported as `benchlib`."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DOC_HEADER = "# Benchmarks\n\nMeasurements of the product's hot paths, with the commands that produced them.\n"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, `q` in 0..1 (the numpy default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def nearest_rank(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, `p` in 0..100: always a value that was measured. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _parent_pid(pid: str) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces and parentheses.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
        if any(a.endswith(".py") and Path(a).parent.name == "bench" and Path(a).stem != "benchlib" for a in args[1:3]):
            found.append(f"{entry}: {' '.join(args)[:120]}")
    return found


def write_section(out: str, heading: str, section: str) -> int:
    """Put `section` into `out` (relative to the repository) unless another benchmark is running; an exit code."""
    running = other_benchmarks()
    if running:
        print(f"not writing {out}: other benchmarks are running:\n" + "\n".join(running), file=sys.stderr)
        return 1
    update_doc(Path(out) if os.path.isabs(out) else BENCH_DIR.parent / out, heading, section)
    print(f"wrote the section to {out}")
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
