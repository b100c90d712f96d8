"""The scale-out soak's short version (bench/soak.py): five calls through nginx, two web processes, the Procfile's
workers, beat, Redis and PostgreSQL of its own, with one of each fault injected mid-call, and the soak's invariants.

About 70 s on two cores. It needs nginx (scripts/test.sh installs Debian's nginx-light), redis-server and the
PostgreSQL server binaries (as the rest of the suite does).
"""

from __future__ import annotations

import shutil

import pytest

from bench.soak import FAULTS, SoakConfig, report, run_soak

pytestmark = pytest.mark.e2e


def test_soak_short_every_call_survives_a_worker_kill_a_redis_and_a_postgres_restart_and_an_upstream_drop():
    # Each call: a question at 4.5 s, a barge-in (calls 1, 3) or a second question, a booking through the
    # supervisor at 17 s (calls 2, 3, 4), which answers after three 0.5 s model steps. The faults come while they
    # talk: the worker and supervisor processes at 6 s, Redis at 11 s, PostgreSQL at 15 s, the upstream drop
    # (every 2nd live session) at 20 s; the calls end at 30 s.
    cfg = SoakConfig(calls=5, seconds=30, call_min_s=30, call_max_s=30, arrival_s=1, one_round=True,
                     booking_share=0, barge_share=0, step_delay_ms=500, drop_share=0.5, settle_s=40,
                     faults={"worker": 6, "redis": 11, "postgres": 15, "upstream": 20})
    res = run_soak(cfg, log=print, plans=[(False, False), (True, False), (False, True), (True, True), (False, True)])
    text = report(res, "tests/test_soak.py")
    assert not res["failures"], text + f"\nlogs: {res['dir']}"
    db = res["db"]
    assert [f.name for f in res["faults"]] == list(FAULTS) and all(not f.error for f in res["faults"]), text
    assert db["taken"] == db["finalised"] == 5 and res["calls"] == 5, text
    assert res["dropped_sessions"] >= 2 and db["reconnect_ok"] >= res["dropped_sessions"], text
    assert db["appointments"] == db["booked_ok"] >= 1 and db["doubled"] == 0, text
    assert db["asked"] == 3 and len(db["queue_waits"]) == 3, text  # every request's queue wait was recorded
    # Asked after the Redis restart: every answer still reached its call (the calls' listeners outlived it).
    assert db["supervisor_steps"].get("deadline_missed", 0) == 0, text
    assert db["barge_in_calls"] >= 2 and res["frames"]["sent"] > 0, text
    shutil.rmtree(res["dir"], ignore_errors=True)
