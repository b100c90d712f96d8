"""The settings refuse unsafe production configurations and pass Django's deployment checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "pq8Zr-Vt3mW9xLk2Hc7Nf4Bd6Gj1Ys5Ea0Uo-Ri8Tw3Qz6Kv9Mx2Np5Lb7Hd4Jf1",
    "PUBLIC_BASE_URL": "https://receptionist.example.com",
    "ALLOWED_HOSTS": "receptionist.example.com",
    "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
}


def run_manage(*args, **env):
    # The operator's own model choices and silenced checks must not make "no issues" true by accident.
    clean = {k: v for k, v in os.environ.items()
             if k not in {"SECRET_KEY", "DEBUG", "PUBLIC_BASE_URL", "ALLOWED_HOSTS", "STATIC_MANIFEST",
                          "SILENCED_SYSTEM_CHECKS", "OPENAI_REALTIME_MODEL", "OPENAI_SUPERVISOR_MODEL",
                          "OPENAI_SUMMARY_MODEL", "OPENAI_TRANSCRIPTION_MODEL"}}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_no_warnings_in_production():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_for_a_model_on_the_shutdown_list():
    # The "no issues" above covers our own checks too: the model check runs under --deploy.
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV,
                        OPENAI_REALTIME_MODEL="gpt-realtime")
    assert result.returncode != 0
    assert "OPENAI_REALTIME_MODEL is gpt-realtime" in result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key():
    result = run_manage("check", **{**PRODUCTION_ENV, "SECRET_KEY": "short"})
    assert "SECRET_KEY must be set" in result.stderr


def test_redis_channel_layer_sets_a_socket_timeout_above_the_blocking_pop():
    code = ("from django.conf import settings; import django; django.setup();"
            "print(settings.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]['socket_timeout'],"
            " settings.CELERY_TASK_ALWAYS_EAGER, settings.CELERY_BROKER_URL)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "receptionist.settings",
                                 "REDIS_URL": "redis://127.0.0.1:6379/3"})
    assert result.stdout.split() == ["10", "False", "redis://127.0.0.1:6379/3"], result.stderr


def test_without_redis_the_product_runs_embedded():
    code = ("from django.conf import settings; import django; django.setup();"
            "print(settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_TASK_ALWAYS_EAGER,"
            " settings.DATABASES['default']['ENGINE'])")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings"})
    assert result.stdout.split() == ["channels.layers.InMemoryChannelLayer", "True", "django.db.backends.sqlite3"], result.stderr


def test_without_redis_queueing_a_task_logs_no_warning():
    # Eager Celery still opens a producer on the in-memory broker for every apply_async (a supervisor hand-off on
    # each demo booking); a broker URL without a host made kombu warn "No hostname was supplied" each time.
    code = ("import logging, django; django.setup(); logging.basicConfig(level=logging.WARNING);"
            "from receptionist.celery import app\n"
            "@app.task(name='tests.noop')\ndef noop():\n    return 'ran'\n"
            "print(noop.apply_async().get())")
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings"})
    assert result.stdout.split() == ["ran"], result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_without_postgresql_a_transaction_that_reads_then_writes_waits_for_another_writer(tmp_path):
    # A call's end (finalise, then its usage row) used to fail with "database is locked" while the post-call
    # thread wrote: SQLite refuses a read lock's upgrade at once instead of waiting.
    code = """
import threading, time, django
django.setup()
from django.db import connection, transaction
from django.core.management import call_command
call_command("migrate", "sessions", verbosity=0)
from django.contrib.sessions.models import Session
from django.utils import timezone
errors = []
def writer():
    with transaction.atomic():
        Session.objects.create(session_key="b" * 32, session_data="", expire_date=timezone.now())
        time.sleep(0.5)
def reader_then_writer():
    try:
        with transaction.atomic():
            Session.objects.count()
            time.sleep(0.2)
            Session.objects.create(session_key="a" * 32, session_data="", expire_date=timezone.now())
    except Exception as exc:
        errors.append(exc)
first = threading.Thread(target=writer)
second = threading.Thread(target=reader_then_writer)
first.start(); time.sleep(0.05); second.start(); first.join(); second.join()
print(errors or Session.objects.count())
"""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings",
                                 "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"})
    assert result.stdout.split() == ["2"], result.stdout + result.stderr


def test_env_example_documents_every_variable_the_settings_read():
    import re

    read = set(re.findall(r'env_(?:str|bool|int|list)\("([A-Z_]+)"', (ROOT / "receptionist/settings.py").read_text()))
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - documented == set()


def production_setting(expression: str, **env: str) -> str:
    code = f"from django.conf import settings; import django; django.setup(); print({expression})"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SECURE_HSTS")}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**clean, **PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "receptionist.settings", **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_hsts_preload_is_off_unless_the_operator_opts_in():
    assert production_setting("settings.SECURE_HSTS_PRELOAD, settings.SECURE_HSTS_SECONDS") == "False 31536000"
    assert production_setting("settings.SECURE_HSTS_PRELOAD", SECURE_HSTS_PRELOAD="true") == "True"


def test_check_deploy_silences_only_the_preload_warning():
    # With HSTS off, Django's other deployment warning (W004) still fails the check: nothing else is silenced.
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION_ENV, SECURE_HSTS_SECONDS="0")
    assert result.returncode != 0 and "security.W004" in result.stdout + result.stderr
    assert "security.W021" not in result.stdout + result.stderr


def test_allauth_rate_limits_are_on_and_the_made_up_setting_is_gone():
    from allauth.account import app_settings
    from django.conf import settings

    assert not hasattr(settings, "ACCOUNT_RATE_LIMITS_ENABLED")  # never an allauth setting
    assert app_settings.RATE_LIMITS["login_failed"] and app_settings.RATE_LIMITS["signup"]
