"""The media bridge benchmark's settings: where things run and how long to wait for them."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

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

SETUP_CONCURRENCY = 10       # calls being set up at once (webhook + socket + start + probe)
SETUP_TIMEOUT_S = 30.0       # per call
PROBE_EVERY_S = 0.1
DIRECT_NOTE = "¹ direct: no server; CPU and RSS are the stand-in's."
ARRIVAL_KINDS = ("uvicorn", "relay")  # cold/burst: our product and the floor, side by side
READY_POLL_S = 0.01          # cold start: how often a starting server is asked whether it takes traffic
STOP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 40.0
FINALIZE_TIMEOUT_S = 15.0
