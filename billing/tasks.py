"""Celery tasks of billing: ids in, one service call each."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from billing.polar_client import PolarUnavailable
from billing.services import gate, usage

log = logging.getLogger(__name__)
MAX_RETRIES = 6


# Celery's own backoff options (10, 20, 40 ... s), read below: the task calls retry itself because Polar's
# Retry-After and the broker's countdown limit come first. Jitter stays off, so the delays are the ones they
# were (spreading retries out is a behaviour change of its own).
@shared_task(name="billing.report_usage", bind=True, acks_late=True, max_retries=MAX_RETRIES, ignore_result=True,
             retry_backoff=10, retry_backoff_max=600, retry_jitter=False)
def report_usage(self, record_id: int) -> str:
    """Report one call's minutes to Polar. Network errors, 5xx and 429 are retried with backoff (honouring
    Retry-After); after the last retry the record is marked failed, the error logged and raised, and the sweep
    re-sends it later with the same external_id, until BILLING_USAGE_MAX_ATTEMPTS. A record Polar refuses (any
    other 4xx) is given up at once with the reason (`usage.usage_report`)."""
    try:
        return usage.usage_report(record_id=record_id)
    except PolarUnavailable as exc:
        if self.request.retries >= self.max_retries:
            usage.usage_mark_failed(record_id=record_id, error=str(exc))
            log.error("Usage record %s could not reach Polar after %s retries: %s", record_id, self.max_retries, exc)
            raise
        countdown = exc.retry_after if exc.retry_after is not None else get_exponential_backoff_interval(
            factor=self.retry_backoff, retries=self.request.retries, maximum=self.retry_backoff_max,
            full_jitter=self.retry_jitter)
        if countdown > settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS:
            # Redis hands a waiting task out again once the visibility timeout passes, so a long wait would run
            # it several times over: leave it to the sweep, which resends the record later.
            usage.usage_mark_failed(record_id=record_id, error=f"{exc} (retrying later: Polar asked to wait "
                                                                  f"{countdown} s)")
            return "deferred_to_sweep"
        raise self.retry(exc=exc, countdown=countdown)


@shared_task(name="billing.sweep_unreported_usage", ignore_result=True)
def sweep_unreported_usage() -> dict[str, int]:
    return usage.usage_sweep()


@shared_task(name="billing.notify_calls_blocked", acks_late=True, ignore_result=True)
def notify_calls_blocked(business_id: int, reason: str) -> None:
    gate.calls_blocked_notify(business_id=business_id, reason=reason)
