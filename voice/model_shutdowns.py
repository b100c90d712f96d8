"""OpenAI models with a known shutdown date, and what `manage.py check` says when one is configured.

A shut-down model fails every call at connect time, so the operator has to hear of it before then: from
`manage.py check`, which `migrate` (the Procfile's release step) and `runserver` also run.

Severity: a date still ahead is a Warning (voice.W001): the product works today, and `check --deploy
--fail-level WARNING` stops a deploy that would break on that date. A date already reached is an Error
(voice.E001): every call with that model fails, so `migrate` and `runserver` refuse to go on until the model
is changed. The dates come from public reports, not from OpenAI's API; if OpenAI moves a date and a model
really keeps working, silence the message with SILENCED_SYSTEM_CHECKS=voice.E001 (or voice.W001) and fix the
entry here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils import timezone

# The settings that name an OpenAI model, each checked against the list below.
MODEL_SETTINGS = (
    "OPENAI_REALTIME_MODEL",
    "OPENAI_SUPERVISOR_MODEL",
    "OPENAI_SUMMARY_MODEL",
    "OPENAI_TRANSCRIPTION_MODEL",
    "OPENAI_LIVE_MODEL",
    "OPENAI_DELEGATION_MODEL",
)


@dataclass(frozen=True)
class Shutdown:
    date: dt.date
    use_instead: str  # a current model of the same kind, for the operator's hint


# Where each date comes from (read Nov 2026; OpenAI's own page is developers.openai.com/api/docs/deprecations):
# - 2027-01-20, `gpt-realtime` and its snapshot: summaries of OpenAI's deprecations page (read 27 Oct 2026;
#   e.g. dev.to/max_bob/openai-api-deprecations-2026-2027-every-shutdown-date-and-recommended-replacement-gpt-4o-2ffm)
#   list "legacy audio and realtime models" shutting down on 20 Jan 2027, `gpt-realtime` among them; Retell
#   moves its customers from `gpt-realtime` to `gpt-realtime-2.1` on 19 Jan 2027
#   (docs.retellai.com/deprecation-notice/2027/01-19_model_replacements). The dated snapshot is what the
#   alias serves, so it is listed with it.
# - 2027-01-20, `gpt-realtime-mini` and its later snapshot: the same Retell notice moves it to
#   `gpt-realtime-2.1-mini` on the same day, for the same shutdown; OpenAI's exact list of ids was not seen.
# - 2026-07-23, the first mini snapshot: OpenAI's deprecations page as of April 2026 (its history at
#   spybara.com/openai/api/history/docs/en/2026-04-22-0555..2026-04-23-0556/).
# - 2026-05-07, the gpt-4o realtime previews: OpenAI's deprecations page, as summarised at
#   modelcostwatch.com/openai/deprecations/shutdown-schedule.
_REALTIME_LEGACY = Shutdown(dt.date(2027, 1, 20), use_instead="gpt-realtime-2.1")
_REALTIME_MINI_LEGACY = Shutdown(dt.date(2027, 1, 20), use_instead="gpt-realtime-2.1-mini")
_REALTIME_PREVIEW = Shutdown(dt.date(2026, 5, 7), use_instead="gpt-realtime-2.1")
_REALTIME_MINI_PREVIEW = Shutdown(dt.date(2026, 5, 7), use_instead="gpt-realtime-2.1-mini")

MODEL_SHUTDOWNS: dict[str, Shutdown] = {
    "gpt-realtime": _REALTIME_LEGACY,
    "gpt-realtime-2025-08-28": _REALTIME_LEGACY,
    "gpt-realtime-mini": _REALTIME_MINI_LEGACY,
    "gpt-realtime-mini-2025-12-15": _REALTIME_MINI_LEGACY,
    "gpt-realtime-mini-2025-10-06": Shutdown(dt.date(2026, 7, 23), use_instead="gpt-realtime-2.1-mini"),
    "gpt-4o-realtime-preview": _REALTIME_PREVIEW,
    "gpt-4o-realtime-preview-2025-06-03": _REALTIME_PREVIEW,
    "gpt-4o-realtime-preview-2024-12-17": _REALTIME_PREVIEW,
    "gpt-4o-mini-realtime-preview": _REALTIME_MINI_PREVIEW,
    "gpt-4o-mini-realtime-preview-2024-12-17": _REALTIME_MINI_PREVIEW,
}


def model_shutdown_messages(configured: dict[str, str], today: dt.date) -> list[checks.CheckMessage]:
    """One message per configured model on the shutdown list: a Warning before its date, an Error from it on."""
    messages: list[checks.CheckMessage] = []
    for setting_name, model in configured.items():
        shutdown = MODEL_SHUTDOWNS.get(model)
        if shutdown is None:
            continue
        hint = f"Set {setting_name}={shutdown.use_instead} (or another current model) and restart."
        if today >= shutdown.date:
            messages.append(checks.Error(
                f"{setting_name} is {model}, which OpenAI shut down on {shutdown.date.isoformat()}: "
                "every request with it fails.", hint=hint, id="voice.E001"))
        else:
            messages.append(checks.Warning(
                f"{setting_name} is {model}, which OpenAI shuts down on {shutdown.date.isoformat()} "
                f"({(shutdown.date - today).days} days from now); from then on every request with it fails.",
                hint=hint, id="voice.W001"))
    return messages


def check_model_shutdowns(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    configured = {name: getattr(settings, name) for name in MODEL_SETTINGS}
    return model_shutdown_messages(configured, today=timezone.now().date())
