"""What the hand-offs run against: the bench database and Redis db, Django in the bench process, the calls, the
stand-in and the Celery worker being ready."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from pathlib import Path

from bench.harness import REPO, Proc, recreate_database
from bench.harness import package_versions as _package_versions
from bench.supervisor.config import BENCH_DB, BUSINESS_NUMBER, CALLER_NUMBER, REDIS_URL


def bench_env(*, standin_port: int, redis: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG", "CELERY_"))}
    for name in ("REDIS_URL", "OPENAI_BASE_URL", "DB_CONN_MAX_AGE"):
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "receptionist.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{BENCH_DB}",
        "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{standin_port}/v1",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    })
    if redis:
        env["REDIS_URL"] = REDIS_URL
    return env


def setup_database(env: dict[str, str], log_dir: Path) -> None:
    recreate_database(BENCH_DB, env, log_dir)


def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()


def server_versions() -> str:
    import psycopg
    import redis

    out = []
    with contextlib.suppress(Exception):
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        out.append(f"Redis {client.info('server').get('redis_version')}")
        client.close()
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with contextlib.suppress(Exception), psycopg.connect(admin, connect_timeout=5) as conn:
        out.append(f"PostgreSQL {conn.execute('SHOW server_version').fetchone()[0].split()[0]}")
    return ", ".join(out)


def package_versions() -> str:
    return _package_versions((("celery", "celery"), ("kombu", "kombu"), ("redis", "redis-py"),
                              ("channels_redis", "channels_redis"), ("channels", "channels"), ("asgiref", "asgiref"),
                              ("django", "django"), ("openai", "openai"), ("httpx", "httpx"), ("psycopg", "psycopg")))


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()


def create_calls(labels: list[str]) -> dict[str, int]:
    """One business and one in-progress call per label (the events of each phase stay apart)."""
    from django.utils import timezone

    from accounts.models import Business
    from calls.models import Call

    business = Business.objects.create(name="Bench Dental", phone_number=BUSINESS_NUMBER,
                                       onboarded_at=timezone.now())
    ids = {}
    for label in labels:
        now = timezone.now()
        call = Call.objects.create(business=business, status=Call.Status.IN_PROGRESS, from_number=CALLER_NUMBER,
                                   to_number=BUSINESS_NUMBER, twilio_call_sid=f"CA{secrets.token_hex(16)}",
                                   started_at=now, answered_at=now, stream_started_at=now)
        ids[label] = call.id
    return ids


def wait_worker_ready(worker: Proc, timeout: float) -> float:
    from receptionist.celery import app

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not worker.alive():
            raise RuntimeError(f"the Celery worker exited with {worker.popen.returncode}:\n{worker.log_tail()}")
        with contextlib.suppress(Exception):
            if app.control.ping(timeout=0.5):
                return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError(f"the Celery worker did not answer a ping within {timeout:.0f} s:\n{worker.log_tail()}")

