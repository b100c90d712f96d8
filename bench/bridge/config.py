"""The media bridge benchmark's settings: where things run and how long to wait for them."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.harness import bench_stores

BIN = Path(sys.executable).parent
PY = sys.executable
SECTION = "## Media bridge latency (bench/bridge_latency.py)"
# Overridable (BENCH_DATABASE, BENCH_REDIS_DB) so a second bench can run beside this one without sharing its stores.
BENCH_DB, REDIS_URL = bench_stores("receptionist_bench", 9)
BUSINESS_NUMBER = "+15550100777"          # the business whose calls GPT-Realtime answers (voice_engine="realtime")
LIVE_BUSINESS_NUMBER = "+15550100778"     # the one GPT-Live answers (voice_engine="live")
BUSINESS_NUMBERS = {"realtime": BUSINESS_NUMBER, "live": LIVE_BUSINESS_NUMBER}
ENGINES = ("realtime", "live")
MODEL = "gpt-realtime"
LIVE_MODEL = "gpt-live-1.1"               # settings.OPENAI_LIVE_MODEL's default, for the direct and relay legs

SETUP_CONCURRENCY = 10       # calls being set up at once (webhook + socket + start + probe)
SETUP_TIMEOUT_S = 30.0       # per call
PROBE_EVERY_S = 0.1
DIRECT_NOTE = "¹ direct: no server; CPU and RSS are the stand-in's."
ARRIVAL_KINDS = ("uvicorn", "relay")  # cold/burst: our product and the floor, side by side
READY_POLL_S = 0.01          # cold start: how often a starting server is asked whether it takes traffic
STOP_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 40.0
FINALIZE_TIMEOUT_S = 15.0
