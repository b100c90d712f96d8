"""The reaper: calls left ringing or in progress long after they could be are finalised as interrupted."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from calls.models import Call
from calls.services.lifecycle import call_finalize

log = logging.getLogger(__name__)


def calls_reap_stuck(*, now: datetime | None = None) -> list[int]:
    """Finalise calls still ringing/in progress long after they could be; returns their ids.

    A ringing call whose media stream never started after REAPER_RINGING_MINUTES, or a call in progress with
    no recorded activity (events) for REAPER_IDLE_MINUTES or answered more than CALL_MAX_SECONDS (+ grace) ago.
    Live calls write events every turn, so they are never idle that long.
    """
    now = now or timezone.now()
    reaped = []
    live = Call.objects.filter(status__in=[Call.Status.RINGING, Call.Status.IN_PROGRESS], finalized_at__isnull=True)
    ringing = live.filter(stream_started_at__isnull=True,
                          started_at__lt=now - timedelta(minutes=settings.REAPER_RINGING_MINUTES))
    for call in ringing:
        if _reap(call, now=now, last_activity=call.started_at, reason="reaped_never_connected",
                 error="Reaped: the media stream never started."):
            reaped.append(call.id)
    idle_before = now - timedelta(minutes=settings.REAPER_IDLE_MINUTES)
    capped_before = now - timedelta(seconds=settings.CALL_MAX_SECONDS + settings.REAPER_GRACE_SECONDS)
    for call in live.filter(stream_started_at__isnull=False).annotate(last_event=Max("events__created_at")):
        last = max(filter(None, [call.last_event, call.answered_at, call.stream_started_at, call.started_at]))
        begin = call.answered_at or call.stream_started_at or call.started_at
        if begin < capped_before:
            reason, error = "reaped_over_cap", "Reaped: still open past the call length cap."
        elif last < idle_before:
            reason, error = "reaped_idle", f"Reaped: no activity since {last.isoformat()}."
        else:
            continue
        if _reap(call, now=now, last_activity=last, reason=reason, error=error):
            reaped.append(call.id)
    return reaped


def _reap(call: Call, *, now: datetime, last_activity: datetime, reason: str, error: str) -> bool:
    with transaction.atomic():
        Call.objects.filter(id=call.id, finalized_at__isnull=True, ended_at__isnull=True).update(
            ended_at=min(last_activity, now))
        done = call_finalize(call_id=call.id, status=Call.Status.INTERRUPTED, end_reason=reason, error=error)
    if done:
        log.warning("Call %s reaped (%s)", call.id, reason)
    return done
