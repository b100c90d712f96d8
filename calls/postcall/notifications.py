"""The notification email about a call: wanted or not, its subject and body, sent at most once."""

from __future__ import annotations

import logging
import smtplib
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Business
from calls.models import Call, CallNotification, Message, NotificationSettings
from calls.outcomes import outcome_label
from calls.postcall.queueing import enqueue, retry_countdown
from calls.selectors.caller_names import caller_name_of, caller_note
from calls.selectors.local_time import say_local

log = logging.getLogger(__name__)


def dashboard_call_url(call: Call) -> str:
    return settings.PUBLIC_BASE_URL + reverse("call_detail", kwargs={"call_id": call.id})


def email_mode(business: Business) -> str:
    settings_row = NotificationSettings.objects.filter(business=business).first()
    return settings_row.email_mode if settings_row else NotificationSettings.EmailMode.ALL


def _email_wanted(call: Call) -> tuple[bool, str]:
    mode = email_mode(call.business)
    if mode == NotificationSettings.EmailMode.OFF:
        return False, "notifications are off"
    if not call.business.notification_email:
        return False, "the business has no notification email"
    if mode == NotificationSettings.EmailMode.FOLLOW_UP and call.follow_up_needed is False:
        return False, "no follow-up needed"  # unknown (no summary) still notifies
    return True, ""


def header_text(value: str, limit: int) -> str:
    """Text fit for an email header: control and line-break characters become spaces, runs of spaces one, at
    most `limit` characters. Parts of our subjects come from the model (the caller's name) and from tenants."""
    cleaned = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in value or "")
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1].rstrip() + "…"


def call_email_subject(call: Call, caller: str | None = None) -> str:
    """The subject; `caller` is the caller's one name (calls.selectors.caller_names), read when not given."""
    caller = header_text(caller if caller is not None else caller_name_of(call), 80)
    outcome = header_text(outcome_label(call.outcome), 32)
    subject = f"{header_text(call.business.name, 80)}: call from {caller or 'an unknown caller'} ({outcome})"
    if call.follow_up_needed:
        subject = "Follow-up needed — " + subject
    return subject[:200]


def call_notification_send(*, call_id: int) -> str:
    """Send the call's email at most once. Returns the notification's status.

    Once claimed, the notification always leaves SENDING: SENT, SKIPPED, back to QUEUED (with a backoff) for a
    retry of a transient mail-server error, or FAILED with the error for anything else or after
    EMAIL_MAX_RETRIES retries.
    """
    from calls.tasks import send_call_email

    now = timezone.now()
    claimed = CallNotification.objects.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now), call_id=call_id,
                                              status=CallNotification.Status.QUEUED).update(
        status=CallNotification.Status.SENDING, attempts=F("attempts") + 1)
    if not claimed:
        return "not_queued"  # done, skipped, waiting for its backoff, or another worker has it
    try:
        call = Call.objects.select_related("business").get(id=call_id)
        wanted, why = _email_wanted(call)
        if not wanted:
            CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.SKIPPED,
                                                                    error=why)
            return CallNotification.Status.SKIPPED
        recipient = call.business.notification_email
        caller = caller_name_of(call)
        # The time is written out here, not with `|date` in the template: an email is rendered outside any
        # request, where the active time zone is the server's, and `|date` would convert the local time back.
        context = {"call": call, "business": call.business, "url": dashboard_call_url(call),
                   "outcome": outcome_label(call.outcome), "caller": caller, "caller_note": caller_note(call, caller),
                   "started": say_local(call.started_at, call.business, "en"),
                   "voicemails": list(Message.objects.filter(call=call).exclude(recording_sid="").order_by("id"))}
        body = render_to_string("calls/email/call_summary.txt", context)
        send_mail(call_email_subject(call, caller), body, settings.DEFAULT_FROM_EMAIL, [recipient],
                  fail_silently=False)
    except (smtplib.SMTPException, OSError) as exc:
        # Nothing was accepted: back in the queue for a retry after a backoff, or failed after the last one.
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        attempts = CallNotification.objects.values_list("attempts", flat=True).get(call_id=call_id)
        if attempts > settings.EMAIL_MAX_RETRIES:
            CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.FAILED,
                                                                    error=error)
            return CallNotification.Status.FAILED
        countdown = retry_countdown(attempts - 1)
        log.warning("Email about call %s failed (%s); retry in %.0f s", call_id, error, countdown)
        CallNotification.objects.filter(call_id=call_id).update(
            status=CallNotification.Status.QUEUED, error=error, retry_at=timezone.now() + timedelta(seconds=countdown))
        enqueue(send_call_email, call_id, countdown=countdown)
        return CallNotification.Status.QUEUED
    except Exception as exc:
        # Not the mail server's passing trouble (a bad header or address, a template error): retrying would fail
        # the same way, so the notification ends here with the reason recorded.
        log.exception("Email about call %s failed", call_id)
        CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.FAILED,
                                                                error=f"{exc.__class__.__name__}: {exc}"[:2000])
        return CallNotification.Status.FAILED
    CallNotification.objects.filter(call_id=call_id).update(status=CallNotification.Status.SENT, recipient=recipient,
                                                            sent_at=timezone.now(), error="")
    return CallNotification.Status.SENT
