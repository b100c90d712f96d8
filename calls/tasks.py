"""Celery tasks of the calls app: the work after a call. Ids in, one service call; see calls/postcall.py for
the delivery semantics of each side effect."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from calls import postcall
from calls.models import Call

log = logging.getLogger(__name__)


@shared_task(name="calls.summarize_call", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def summarize_call(self, call_id: int) -> None:
    """Summarise a finished call (retried with backoff on transient model errors, then marked with the error),
    then queue its notifications. A duplicate or redelivered task finds the summary stored and only re-queues
    the notifications, which are claimed once each."""
    if not Call.objects.filter(id=call_id).exists():
        return  # deleted meanwhile
    try:
        postcall.call_summarize(call_id=call_id)
    except postcall.TransientError as exc:
        if self.request.retries < settings.SUMMARY_MAX_RETRIES:
            log.warning("Summary of call %s failed (%s); retry %s", call_id, exc, self.request.retries + 1)
            raise self.retry(countdown=postcall.retry_countdown(self.request.retries))
        postcall.call_summary_failed(call_id=call_id, error=str(exc))
    postcall.call_dispatch_notifications(call_id=call_id)


@shared_task(name="calls.send_call_email", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def send_call_email(self, call_id: int) -> None:
    """Email the business about the call, at most once (compare-and-set claim); transient SMTP errors retry."""
    try:
        postcall.call_notification_send(call_id=call_id)
    except postcall.TransientError as exc:
        if self.request.retries < settings.EMAIL_MAX_RETRIES:
            raise self.retry(countdown=postcall.retry_countdown(self.request.retries))
        postcall.call_notification_failed(call_id=call_id, error=str(exc))


@shared_task(name="calls.deliver_webhook", bind=True, acks_late=True, ignore_result=True, max_retries=None)
def deliver_webhook(self, delivery_id: int) -> None:
    """One attempt of a `call.completed` webhook (at least once, same webhook-id); schedules the next one."""
    again = postcall.webhook_deliver(delivery_id=delivery_id)
    if again:
        raise self.retry(countdown=postcall.retry_countdown(self.request.retries))


@shared_task(name="calls.reap_stuck_calls", acks_late=True, ignore_result=True)
def reap_stuck_calls() -> None:
    """Celery beat: finalise calls left ringing or in progress (their post-call work is queued on commit)."""
    postcall.calls_reap_stuck()
