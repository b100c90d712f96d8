"""`manage.py check` tells the operator about a configured OpenAI model before OpenAI shuts it down."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks

from voice.model_shutdowns import MODEL_SETTINGS, MODEL_SHUTDOWNS, model_shutdown_messages

ROOT = Path(__file__).resolve().parents[2]
BEFORE_THE_SHUTDOWN = dt.date(2026, 12, 7)
AFTER_THE_SHUTDOWN = dt.date(2027, 1, 21)


def settings_defaults(*names: str) -> list[str]:
    """The settings as a fresh process reads them with none of the model variables set."""
    env = {k: v for k, v in os.environ.items() if k not in MODEL_SETTINGS and k != "REALTIME_PRICES_JSON"}
    code = ("import django; django.setup(); from django.conf import settings; import json;"
            f"print(json.dumps([getattr(settings, n) for n in {list(names)!r}]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**env, "DEBUG": "true", "DJANGO_SETTINGS_MODULE": "receptionist.settings"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in MODEL_SETTINGS and k != "SILENCED_SYSTEM_CHECKS"}
    return subprocess.run([sys.executable, "manage.py", "check", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "DEBUG": "true", **env})


def test_the_check_warns_about_gpt_realtime_naming_its_shutdown_date():
    messages = model_shutdown_messages({"OPENAI_REALTIME_MODEL": "gpt-realtime"}, today=BEFORE_THE_SHUTDOWN)
    assert [(type(m), m.id) for m in messages] == [(checks.Warning, "voice.W001")]
    assert "OPENAI_REALTIME_MODEL is gpt-realtime" in messages[0].msg and "2027-01-20" in messages[0].msg
    assert "OPENAI_REALTIME_MODEL=gpt-realtime-2.1" in messages[0].hint


def test_from_the_shutdown_date_on_the_check_is_an_error():
    messages = model_shutdown_messages({"OPENAI_REALTIME_MODEL": "gpt-realtime"}, today=AFTER_THE_SHUTDOWN)
    assert [(type(m), m.id) for m in messages] == [(checks.Error, "voice.E001")]
    assert "shut down on 2027-01-20" in messages[0].msg


@pytest.mark.parametrize("setting_name", MODEL_SETTINGS)
def test_every_model_setting_is_checked(setting_name):
    messages = model_shutdown_messages({setting_name: "gpt-4o-realtime-preview"}, today=BEFORE_THE_SHUTDOWN)
    assert [m.id for m in messages] == ["voice.E001"] and setting_name in messages[0].msg


def test_manage_py_check_names_the_configured_model_and_its_date():
    result = run_check("--fail-level", "WARNING", OPENAI_REALTIME_MODEL="gpt-realtime")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "OPENAI_REALTIME_MODEL is gpt-realtime" in output and "2027-01-20" in output


def test_manage_py_check_is_silent_for_the_default_models():
    result = run_check("--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_default_realtime_model_is_current_and_priced():
    model, prices = settings_defaults("OPENAI_REALTIME_MODEL", "REALTIME_PRICES")
    assert model not in MODEL_SHUTDOWNS
    assert model in prices  # its own row, not the fallback
    assert prices["default"] == prices[model]


def test_every_default_model_is_off_the_shutdown_list():
    assert not set(settings_defaults(*MODEL_SETTINGS)) & set(MODEL_SHUTDOWNS)


def test_the_current_realtime_models_are_priced_and_the_listed_ones_stay_priced():
    (prices,) = settings_defaults("REALTIME_PRICES")
    current = {"gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini"}
    assert current <= prices.keys()
    # USD per million tokens, from OpenAI's model pages (openai-realtime.md §8.1)
    assert prices["gpt-realtime-2.1"] == {"text_in": 4.0, "text_cached": 0.4, "text_out": 24.0,
                                          "audio_in": 32.0, "audio_cached": 0.4, "audio_out": 64.0}
    assert prices["gpt-realtime-2.1-mini"] == {"text_in": 0.6, "text_cached": 0.06, "text_out": 2.4,
                                               "audio_in": 10.0, "audio_cached": 0.3, "audio_out": 20.0}
    # A shut-down model's past calls keep their cost.
    assert {"gpt-realtime", "gpt-realtime-mini"} <= prices.keys()
