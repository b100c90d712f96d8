"""The supervisor hand-off benchmark's settings: its database and Redis db, the conversation it hands off, limits."""

from __future__ import annotations

import re
import sys

from bench.harness import bench_stores

PY = sys.executable
SECTION = "## Supervisor hand-off (bench/supervisor_dispatch.py)"
# Overridable (BENCH_DATABASE, BENCH_REDIS_DB) so a second bench can run beside this one without sharing its stores.
BENCH_DB, REDIS_URL = bench_stores("receptionist_bench_supervisor", 8)
BUSINESS_NUMBER = "+15550100888"
CALLER_NUMBER = "+15550100999"
STANDIN_SCRIPT = {"supervisor": [{"default": True, "steps": [{"say": "Done."}]}]}
CONVERSATION = [
    {"speaker": "agent", "text": "Thanks for calling Bench Dental, how can I help?"},
    {"speaker": "caller", "text": "Hi, I'd like to book a cleaning."},
    {"speaker": "agent", "text": "Sure, which day works for you?"},
    {"speaker": "caller", "text": "Tomorrow morning, if you have anything."},
]
REQUEST = "The caller wants a cleaning tomorrow morning. Is there a free slot? [bench {label} #{index}]"
MARK = re.compile(r"\[bench (\w+) #(\d+)\]")

HANDOFF_TIMEOUT_S = 10.0        # per hand-off; the session's own deadline is 8 s
MAX_CONSECUTIVE_FAILURES = 5    # then the run is aborted
READY_TIMEOUT_S = 40.0
CHILD_TIMEOUT_S = 900.0
MAX_RUNTIME_S = 1800            # the whole bench; SIGALRM then unwinds through the cleanup
GOAL_P50_MS, GOAL_P99_MS = 10.0, 30.0
EMPTY_TASK = "bench.empty_supervisor"   # the control task, registered only in the bench's processes (control.py)
EMPTY_TASK_ENV = "BENCH_SUPERVISOR_EMPTY_TASK"
