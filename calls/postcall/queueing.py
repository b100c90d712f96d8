"""Queueing post-call work: `enqueue` (broker, or the background executor without one), the retry backoff,
and the sweep that queues again whatever should have run by now (see the package's docstring)."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from calls.background import embedded_runner
from calls.models import Call, CallNotification, WebhookDelivery

log = logging.getLogger(__name__)


class TransientError(Exception):
    """Worth retrying later: the model, the mail server or the network failed for now."""


def retry_countdown(retries: int) -> float:
    """Celery's exponential backoff (base * 2**retries, capped) with a little jitter on top. Not Celery's full
    jitter: that can shrink a long backoff to nothing, and one past the broker's countdown limit must stay long
    enough to be left to the sweep."""
    delay = get_exponential_backoff_interval(factor=settings.POSTCALL_RETRY_BASE_SECONDS, retries=retries,
                                             maximum=settings.POSTCALL_RETRY_MAX_SECONDS)
    return delay * (1 + secrets.randbelow(100) / 1000)


def enqueue(task: Any, *args: Any, countdown: float = 0.0) -> bool:
    """Queue a post-call task; never raises. False if the broker refused it (logged; the sweep queues it again).

    A countdown beyond POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS is not given to the broker (Redis would hand the
    waiting task out again after its visibility timeout): the claim that expires then is what the sweep sees.
    Without a broker the task runs on the background executor, after `countdown`.
    """
    from celery import current_app

    if current_app.conf.task_always_eager:
        embedded_runner().submit(task, *args, delay=countdown)
        return True
    if countdown > settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS:
        return True
    try:
        task.apply_async(args=list(args), countdown=countdown or None)
    except Exception:
        log.exception("Could not queue %s%r; the post-call sweep will queue it again", task.name, args)
        return False
    return True


def postcall_enqueue(call_id: int) -> None:
    """Queue the post-call work once the current transaction commits (call from `call_finalize`).

    Robust: a broker that is down never fails the commit's caller (a Twilio webhook, a call session); the
    post-call sweep finds the call without a summary and queues it again."""
    from calls.tasks import summarize_call

    def queue_postcall_work() -> None:
        enqueue(summarize_call, call_id)

    transaction.on_commit(queue_postcall_work, robust=True)


# --- the post-call sweep ----------------------------------------------------------------------------------

SWEEP_BATCH = 200


def postcall_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Queue again the post-call work that should have happened by now and has no live claim: summaries of
    finalised calls (and the notifications of summarised calls that have none), queued emails, pending
    webhooks. Safe to run any number of times: each task claims its work by compare-and-set."""
    from calls.tasks import deliver_webhook, send_call_email, summarize_call

    now = now or timezone.now()
    settled_before = now - timedelta(seconds=settings.POSTCALL_SWEEP_GRACE_SECONDS)
    oldest = now - timedelta(hours=settings.POSTCALL_SWEEP_MAX_AGE_HOURS)
    unclaimed = Q(summary_claimed_until__isnull=True) | Q(summary_claimed_until__lte=now)
    unsummarised = list(Call.objects.filter(unclaimed, summarized_at__isnull=True, finalized_at__lt=settled_before,
                                            finalized_at__gte=oldest)
                        .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    unnotified = list(Call.objects.filter(summarized_at__lt=settled_before, finalized_at__gte=oldest,
                                          notification__isnull=True)
                      .order_by("finalized_at").values_list("id", flat=True)[:SWEEP_BATCH])
    emails = list(CallNotification.objects.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now),
                                                  status=CallNotification.Status.QUEUED,
                                                  created_at__lt=settled_before, call__finalized_at__gte=oldest)
                  .order_by("created_at").values_list("call_id", flat=True)[:SWEEP_BATCH])
    webhooks = list(WebhookDelivery.objects.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lte=now),
                                                   status=WebhookDelivery.Status.PENDING,
                                                   created_at__lt=settled_before, created_at__gte=oldest)
                    .order_by("created_at").values_list("id", flat=True)[:SWEEP_BATCH])
    for call_id in unsummarised + unnotified:
        enqueue(summarize_call, call_id)
    for call_id in emails:
        enqueue(send_call_email, call_id)
    for delivery_id in webhooks:
        enqueue(deliver_webhook, delivery_id)
    counts = {"summaries": len(unsummarised), "notifications": len(unnotified), "emails": len(emails),
              "webhooks": len(webhooks)}
    if any(counts.values()):
        log.warning("Post-call sweep queued again: %s", counts)
    return counts
