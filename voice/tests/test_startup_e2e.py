"""A fresh web process (uvicorn as the Procfile runs it) is ready before its first call: nothing a call needs is
imported after start-up, and `/healthz/` answers once the process is ready, naming any connection that fails."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import pytest

from tests.browser import ARTIFACTS
from voice.offline.realtime import Script
from voice.offline.simulator import SimulatedCallConfig, run_simulated_call
from voice.tests.conftest import (ACCOUNT_SID, AUTH_TOKEN, BUSINESS_NUMBER, HARBOR_SCRIPT, ROOT, free_port,
                                  start_asgi_server, stop_process, subprocess_env)
from voice.tests.test_call_e2e import finalized_call

pytestmark = pytest.mark.e2e


def test_a_call_on_a_fresh_process_imports_nothing_after_start_up(harbor, standin, twilio_standin):
    standin.script = Script.from_obj(HARBOR_SCRIPT)
    live = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"LOG_LATE_IMPORTS": "true"})
    try:
        call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
        config = SimulatedCallConfig(base_url=live.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID,
                                     to_number=BUSINESS_NUMBER, from_number="+12025550143", call_sid=call_sid,
                                     utterances=2, max_duration_s=40)
        report = asyncio.run(run_simulated_call(config))
        assert report.agent_audio_received_ms > 0
        assert finalized_call(call_sid).end_reason == "caller_hung_up"
    finally:
        stop_process(live.process)
    log = live.log()
    assert "Start-up: ready to take calls" in log
    # The watch is on (the start-up log says so, and every import from here on would be logged) and found nothing.
    assert "Late import after start-up" not in log, log


def test_a_process_starts_without_its_database_and_healthz_names_what_is_failing(harbor, standin, twilio_standin):
    # An outage of a shared dependency must not take every process out of the load balancer (Twilio's fallback
    # URL is served here too): the process starts and says what is failing.
    port = free_port()
    env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url=f"http://127.0.0.1:{port}",
                         extra_env={"DATABASE_URL": "postgres://postgres@127.0.0.1:9/receptionist"})
    log_path = ARTIFACTS / f"asgi-no-database-{port}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "receptionist.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        response = None
        deadline = time.monotonic() + 40
        while response is None and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz/", timeout=15)
            except httpx.HTTPError:
                time.sleep(0.2)
        assert response is not None, log_path.read_text()
        assert response.status_code == 200
        assert response.text.startswith("ok; failing: database:"), response.text
        assert "channel layer" not in response.text and "task broker" not in response.text
    finally:
        stop_process(process)


@pytest.fixture
def role_with_two_connections(harbor):
    """A PostgreSQL role that may hold only two connections at once (superusers ignore such limits)."""
    from django.db import connection

    role = f"pool_limited_{free_port()}"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 2")
        cursor.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        yield role
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


def test_a_pool_that_cannot_open_its_first_connections_in_time_still_serves_calls(
        harbor, standin, twilio_standin, role_with_two_connections):
    # psycopg's own pool.wait() closes the pool when it times out, and every query of the process failed from then
    # on: a PostgreSQL slow to start backends at a deploy left a process up, "ready", and unable to take a call.
    from django.db import connection

    cfg = connection.settings_dict
    url = f"postgres://{role_with_two_connections}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{cfg['NAME']}"
    live = start_asgi_server("uvicorn", standin=standin, twilio_standin=twilio_standin,
                             extra_env={"DATABASE_URL": url, "DB_THREADS": "4", "DB_POOL_MIN_SIZE": "4",
                                        "DB_POOL_MAX_SIZE": "4"})
    try:
        # Start-up said how far the pool got; the next check finds the database answering (it does, on two).
        assert "without database: TimeoutError: the connection pool has 2 of its first 4" in live.log(), live.log()
        call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_="+12025550143")
        config = SimulatedCallConfig(base_url=live.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID,
                                     to_number=BUSINESS_NUMBER, from_number="+12025550143", call_sid=call_sid,
                                     utterances=0, max_duration_s=20)
        standin.script = Script.from_obj(HARBOR_SCRIPT)
        report = asyncio.run(run_simulated_call(config))
        assert report.agent_audio_received_ms > 0, live.log()
        assert finalized_call(call_sid).end_reason == "caller_hung_up"
        assert httpx.get(live.base_url + "/healthz/", timeout=10).text == "ok"
    finally:
        stop_process(live.process)
    assert "cannot be reused" not in live.log()
