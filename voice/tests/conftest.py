"""Fixtures for voice tests: the OpenAI and Twilio stand-ins, and a real ASGI server in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.browser import ARTIFACTS
from tests.factories import make_business, make_user
from voice.offline.realtime import RealtimeStandin
from voice.offline.twilio import TwilioStandin

ROOT = Path(__file__).resolve().parents[2]
AUTH_TOKEN = "e2e-twilio-auth-token"
ACCOUNT_SID = "AC" + "e" * 32
BUSINESS_NUMBER = "+14155550100"
TRANSFER_NUMBER = "+14155552671"

HARBOR_SCRIPT = {
    "greeting": "Thanks for calling Harbor Dental, how can I help?",
    "turns": [
        {"caller": "What are your opening hours?", "agent": "We're open eight to five, Monday to Friday."},
        {"caller": "That's all, thank you.", "agent": "You're welcome, have a nice day!"},
    ],
    "default_agent": "Sorry, could you say that again?",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def standin():
    server = RealtimeStandin(script=HARBOR_SCRIPT, port=0, speed=3.0)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def twilio_standin():
    server = TwilioStandin(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    server.start_in_thread()
    yield server
    server.stop()


@pytest.fixture
def voice_settings(settings, standin, twilio_standin):
    settings.OPENAI_REALTIME_URL = standin.url
    settings.OPENAI_LIVE_URL = standin.url.replace("/v1/realtime", "/v1/live/sessions")
    settings.OPENAI_API_KEY = "sk-test-standin"
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_API_BASE_URL = twilio_standin.base_url
    return settings


@pytest.fixture
def harbor(transactional_db):
    owner = make_user("owner@harbor.example")
    return make_business(owner=owner, name="Harbor Dental", phone_number=BUSINESS_NUMBER,
                         transfer_number=TRANSFER_NUMBER, time_zone="America/Los_Angeles")


@dataclass
class LiveAsgi:
    kind: str
    base_url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _database_url_for_subprocess() -> str:
    cfg = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.fail("End-to-end tests share the test database with a server process: run them on PostgreSQL "
                    "(make test sets DATABASE_URL).")
    password = f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else ""
    return f"postgres://{cfg['USER']}{password}@{cfg['HOST'] or '127.0.0.1'}:{cfg['PORT'] or 5432}/{cfg['NAME']}"


def subprocess_env(*, standin: RealtimeStandin, twilio_standin: TwilioStandin, base_url: str, extra_env=None) -> dict:
    """The environment of the server and worker processes: the test database, the stand-ins, Redis."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.fail("End-to-end tests run the server and worker on Redis: set REDIS_URL (make test does).")
    e2e_db = os.environ.get("TEST_E2E_REDIS_DB", "5")
    return {
        **os.environ,
        # A database of its own on the Redis server, so flushing it never touches anything else
        # (TEST_E2E_REDIS_DB lets two test runs share one Redis server).
        "REDIS_URL": (redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url) + "/" + e2e_db,
        "DEBUG": "false", "SECRET_KEY": os.environ["SECRET_KEY"], "DATABASE_URL": _database_url_for_subprocess(),
        "PUBLIC_BASE_URL": base_url, "ALLOWED_HOSTS": "127.0.0.1,localhost", "STATIC_MANIFEST": "false",
        "OPENAI_API_KEY": "sk-test-standin", "OPENAI_REALTIME_URL": standin.url,
        "OPENAI_LIVE_URL": standin.url.replace("/v1/realtime", "/v1/live/sessions"),
        "OPENAI_BASE_URL": standin.base_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio_standin.base_url, "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    }


def start_asgi_server(kind: str, *, standin: RealtimeStandin, twilio_standin: TwilioStandin, extra_env=None,
                      extra_args=()) -> LiveAsgi:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url=base_url, extra_env=extra_env)
    if kind == "daphne":
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "receptionist.asgi:application"]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "receptionist.asgi:application", "--host", "127.0.0.1", "--port",
               str(port), "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio",
               "--ws-per-message-deflate", "false", *extra_args]
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"asgi-{kind}-{port}.log"
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{kind} exited at start:\n{log_path.read_text()}")
        try:
            if httpx.get(base_url + "/healthz/", timeout=1).status_code == 200:
                return LiveAsgi(kind, base_url, process, log_path)
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_process(process)
    pytest.fail(f"{kind} did not answer within 30 s:\n{log_path.read_text()}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the whole process group: a leader that exited may leave workers and servers behind."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def start_celery_worker(env: dict) -> LiveAsgi:
    """A real Celery worker on the Redis broker, in its own process."""
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # no tasks left over from another run
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"celery-worker-{free_port()}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads", "--concurrency", "4",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited at start:\n{log_path.read_text()}")
        if " ready." in log_path.read_text(errors="replace"):
            return LiveAsgi("celery", "", process, log_path)
        time.sleep(0.2)
    stop_process(process)
    pytest.fail(f"the Celery worker was not ready within 40 s:\n{log_path.read_text()}")


@contextlib.contextmanager
def server_and_worker(kind: str, *, standin: RealtimeStandin, twilio_standin: TwilioStandin, extra_env=None):
    """An ASGI server (`kind`) and a real Celery worker sharing Redis, stopped when the block ends."""
    server = start_asgi_server(kind, standin=standin, twilio_standin=twilio_standin, extra_env=extra_env)
    try:
        worker = start_celery_worker(subprocess_env(standin=standin, twilio_standin=twilio_standin,
                                                    base_url=server.base_url, extra_env=extra_env))
        try:
            yield server, worker
        finally:
            stop_process(worker.process)
    finally:
        stop_process(server.process)


@pytest.fixture(params=["daphne"])
def live_asgi(request, harbor, standin, twilio_standin):
    server = start_asgi_server(request.param, standin=standin, twilio_standin=twilio_standin)
    yield server
    stop_process(server.process)
