"""Periodic work (CELERY_BEAT_SCHEDULE: the usage sweep, the reaper, …) runs on one machine too: `make run`
without Redis runs it in `manage.py run_periodic_tasks`, with Redis in Celery beat inside its worker."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from billing.models import UsageRecord
from calls.models import Call
from tests.factories import make_business, make_call, make_user
from voice.tests.conftest import _database_url_for_subprocess, free_port, kill_group

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def one_machine_env(**extra: str) -> dict[str, str]:
    """A machine with the test database, no Redis (unless given), no Polar credentials, every periodic task due
    each second; OpenAI and Twilio keys set so `make run` starts no stand-ins."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8",
            "DATABASE_URL": _database_url_for_subprocess(), "DEBUG": "true", "LOG_LEVEL": "INFO",
            "OPENAI_API_KEY": "sk-test-periodic", "TWILIO_ACCOUNT_SID": "AC" + "c" * 32,
            "TWILIO_AUTH_TOKEN": "periodic-test-token", "BILLING_USAGE_SWEEP_SECONDS": "1",
            "REAPER_INTERVAL_SECONDS": "1", **extra}


def finished_call_without_usage(business) -> Call:
    """A phone call finalised 10 minutes ago whose usage nobody recorded (its hook failed, say)."""
    ended = timezone.now() - dt.timedelta(minutes=10)
    return make_call(business, channel="twilio", status="completed", started_at=ended - dt.timedelta(seconds=90),
                     answered_at=ended - dt.timedelta(seconds=90), stream_started_at=ended - dt.timedelta(seconds=90),
                     ended_at=ended, finalized_at=ended, duration_seconds=90, twilio_duration_seconds=90)


def ringing_forever(business) -> Call:
    return make_call(business, status="ringing", started_at=timezone.now() - dt.timedelta(minutes=30))


def wait_until(condition, process: subprocess.Popen, log: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"it exited with {process.returncode} before {what}:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    pytest.fail(f"not within {timeout} s: {what}\n{log.read_text(errors='replace')}")


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM as a process manager would send it, then make sure nothing of the group outlives the test."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    finally:
        kill_group(process)


def assert_the_schedule_keeps_running(business, process: subprocess.Popen, log: Path) -> None:
    """The sweep records a finished call's usage and the reaper ends a stuck call; later, the sweep runs again."""
    first, stuck = finished_call_without_usage(business), ringing_forever(business)
    wait_until(lambda: UsageRecord.objects.filter(call=first).exists(), process, log, "the sweep recorded usage")
    wait_until(lambda: Call.objects.filter(id=stuck.id, finalized_at__isnull=False).exists(), process, log,
               "the reaper finalised the stuck call")
    later = finished_call_without_usage(business)
    wait_until(lambda: UsageRecord.objects.filter(call=later).exists(), process, log, "the sweep ran again")
    record = UsageRecord.objects.get(call=first)
    assert (record.seconds, record.minutes, record.status) == (90, 2, "pending")  # no Polar credentials here
    assert Call.objects.get(id=stuck.id).end_reason == "reaped_never_connected"


def test_run_periodic_tasks_runs_the_beat_schedule_on_its_intervals_and_stops_on_sigterm(transactional_db, tmp_path):
    business = make_business(owner=make_user("owner@periodic.example"), name="Periodic Dental")
    log = tmp_path / "periodic.log"
    process = start([sys.executable, "manage.py", "run_periodic_tasks"], one_machine_env(), log)
    try:
        assert_the_schedule_keeps_running(business, process, log)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text(errors="replace")
        assert "billing-sweep-unreported-usage" in log.read_text() and "calls.reap_stuck_calls" in log.read_text()
    finally:
        kill_group(process)


def test_make_run_without_redis_runs_the_periodic_work(transactional_db, tmp_path):
    business = make_business(owner=make_user("owner@periodic.example"), name="Periodic Dental")
    log = tmp_path / "run.log"
    process = start(["bash", "scripts/run.sh"], one_machine_env(PORT=str(free_port())), log)
    try:
        assert_the_schedule_keeps_running(business, process, log)
    finally:
        stop(process)


def test_make_run_with_redis_runs_celery_beat_in_its_worker(transactional_db, tmp_path):
    import redis

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.fail("This test runs `make run` on Redis: set REDIS_URL (make test does).")
    e2e_redis = redis_url.rsplit("/", 1)[0] + "/" + os.environ.get("TEST_E2E_REDIS_DB", "5")
    redis.Redis.from_url(e2e_redis).flushdb()
    business = make_business(owner=make_user("owner@periodic.example"), name="Periodic Dental")
    log = tmp_path / "run.log"
    process = start(["bash", "scripts/run.sh"], one_machine_env(PORT=str(free_port()), REDIS_URL=e2e_redis), log)
    try:
        assert_the_schedule_keeps_running(business, process, log)
        assert "beat: Starting" in log.read_text(errors="replace")
    finally:
        stop(process)
