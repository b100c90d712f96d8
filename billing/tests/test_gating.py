"""can_take_call and the incoming-call webhook: refused calls get the fallback and are still logged."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.core import mail
from django.utils import timezone
from twilio.request_validator import RequestValidator

from billing.models import BillingAccount, UsageRecord
from billing.services.account import account_for_business
from billing.services.gate import can_take_call
from billing.tests.conftest import PRO_PRODUCT, STARTER_PRODUCT
from calls.models import Call
from tests.factories import make_business, make_call

# The incoming-call webhook does its database work on a pool thread, with a connection of its own: it sees only
# committed rows, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "gating-twilio-token"


@pytest.fixture(autouse=True)
def twilio(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN


def ring(client, business, sid="CA" + "3" * 32):
    params = {"CallSid": sid, "CallStatus": "ringing", "From": "+12025550143", "To": business.phone_number}
    signature = RequestValidator(TOKEN).compute_signature("https://rx.example.com/voice/twilio/incoming/", params)
    return client.post("/voice/twilio/incoming/", params, HTTP_X_TWILIO_SIGNATURE=signature)


def use_minutes(business, minutes, *, when=None):
    when = when or timezone.now() - dt.timedelta(hours=1)
    call = make_call(business, status="completed", finalized_at=when, ended_at=when, duration_seconds=minutes * 60)
    UsageRecord.objects.create(business=business, call=call, external_id=f"call_{call.id}", seconds=minutes * 60,
                               minutes=minutes, occurred_at=when, status="sent")


def subscribe(business, *, status="active", product=STARTER_PRODUCT, cancel_at_period_end=False, period_end=None,
              included=100, hard_cap=True):
    account = account_for_business(business)
    now = timezone.now()
    BillingAccount.objects.filter(pk=account.pk).update(
        status=status, plan_key="starter", polar_product_id=product, included_minutes=included, hard_cap=hard_cap,
        current_period_start=now - dt.timedelta(days=10), current_period_end=period_end or now + dt.timedelta(days=20),
        cancel_at_period_end=cancel_at_period_end, polar_subscription_id="sub_1")


def assert_fallback(response, *, transfer_to=""):
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.find("Connect") is None
    assert root.find("Say").text
    if transfer_to:
        assert root.find("Dial/Number").text == transfer_to and root.find("Hangup") is None
    else:
        assert root.find("Hangup") is not None and root.find("Dial") is None


def test_a_business_without_billing_state_is_on_its_free_trial(alices_business):
    assert not BillingAccount.objects.exists()
    assert can_take_call(alices_business).allowed
    account = BillingAccount.objects.get(business=alices_business)
    assert (account.status, account.trial_minutes) == ("free_trial", 30)


def test_trial_calls_are_answered(client, alices_business):
    use_minutes(alices_business, 29)
    response = ring(client, alices_business)
    assert ET.fromstring(response.content).find("Connect/Stream") is not None


def test_trial_exhausted_hangs_up_politely_and_logs_the_call(client, alices_business):
    use_minutes(alices_business, 30)
    response = ring(client, alices_business)
    assert_fallback(response)
    call = Call.objects.get(twilio_call_sid="CA" + "3" * 32)
    assert (call.status, call.end_reason, call.finalized_at is not None) == ("failed", "billing_trial_exhausted", True)


def test_refused_call_is_forwarded_to_the_transfer_number(client, alices_business):
    alices_business.transfer_number = "+14155550999"
    alices_business.save()
    use_minutes(alices_business, 31)
    assert_fallback(ring(client, alices_business), transfer_to="+14155550999")


def test_canceled_at_period_end_is_allowed_until_then(client, alices_business):
    subscribe(alices_business, cancel_at_period_end=True)
    assert ET.fromstring(ring(client, alices_business).content).find("Connect/Stream") is not None
    subscribe(alices_business, cancel_at_period_end=True, period_end=timezone.now() - dt.timedelta(minutes=1))
    assert_fallback(ring(client, alices_business, sid="CA" + "4" * 32))
    assert Call.objects.get(twilio_call_sid="CA" + "4" * 32).end_reason == "billing_subscription_ended"


@pytest.mark.parametrize(("status", "reason"), [("revoked", "subscription_inactive"), ("past_due", "past_due"),
                                                ("canceled", "subscription_inactive"), ("unpaid", "subscription_inactive")])
def test_inactive_subscriptions_are_refused(client, alices_business, status, reason):
    subscribe(alices_business, status=status)
    assert_fallback(ring(client, alices_business))
    assert Call.objects.get().end_reason == f"billing_{reason}"


def test_hard_cap_counts_only_this_period(client, alices_business):
    subscribe(alices_business)
    use_minutes(alices_business, 500, when=timezone.now() - dt.timedelta(days=15))  # last period
    use_minutes(alices_business, 99)
    assert can_take_call(alices_business).allowed
    use_minutes(alices_business, 1)
    assert can_take_call(alices_business).reason == "minutes_exhausted"


def test_metered_plan_without_cap_keeps_answering(alices_business):
    subscribe(alices_business, product=PRO_PRODUCT, included=500, hard_cap=False)
    use_minutes(alices_business, 900)
    assert can_take_call(alices_business).allowed


def test_owners_get_one_email_and_a_dashboard_banner(client, alice, bob, alices_business,
                                                     django_capture_on_commit_callbacks):
    use_minutes(alices_business, 30)
    with django_capture_on_commit_callbacks(execute=True):
        ring(client, alices_business, sid="CA" + "5" * 32)
        ring(client, alices_business, sid="CA" + "6" * 32)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["alice@example.com"]  # owners only, not staff
    assert "not answering calls" in mail.outbox[0].subject
    client.force_login(alice)
    page = client.get("/dashboard/").content.decode()
    assert "Your receptionist is not answering calls" in page and "free trial minutes are used up" in page


def test_the_email_rearms_once_calls_are_answered_again(client, alices_business, alice,
                                                        django_capture_on_commit_callbacks):
    use_minutes(alices_business, 30)
    with django_capture_on_commit_callbacks(execute=True):
        ring(client, alices_business, sid="CA" + "5" * 32)
    subscribe(alices_business)
    ring(client, alices_business, sid="CA" + "6" * 32)
    client.force_login(alice)
    assert "not answering calls" not in client.get("/dashboard/").content.decode()
    BillingAccount.objects.filter(business=alices_business).update(status="past_due")
    with django_capture_on_commit_callbacks(execute=True):
        ring(client, alices_business, sid="CA" + "7" * 32)
    assert len(mail.outbox) == 2


def test_other_businesses_are_unaffected(client, alices_business):
    other = make_business(name="Other", phone_number="+12025550111")
    use_minutes(alices_business, 30)
    assert not can_take_call(alices_business).allowed and can_take_call(other).allowed


def test_the_gate_counts_the_minutes_live_calls_have_started(client, alices_business):
    """29 of 30 trial minutes used and a call already connected: that call is in the last minute, so a second
    call at the same time is refused rather than both running into minutes the trial doesn't have."""
    use_minutes(alices_business, 29)
    make_call(alices_business, status="in_progress", stream_started_at=timezone.now() - dt.timedelta(seconds=20))
    assert can_take_call(alices_business).reason == "trial_exhausted"
    assert_fallback(ring(client, alices_business))


def test_on_a_plan_test_calls_do_not_spend_the_included_minutes(alices_business):
    subscribe(alices_business, included=100, hard_cap=True)
    use_minutes(alices_business, 99)
    now = timezone.now()
    test_call = make_call(alices_business, channel="browser", status="completed", stream_started_at=now,
                          ended_at=now, finalized_at=now, duration_seconds=300)
    UsageRecord.objects.create(business=alices_business, call=test_call, external_id=f"call_{test_call.id}",
                               seconds=300, minutes=5, occurred_at=now, status="not_billable")
    assert can_take_call(alices_business).allowed


def test_a_call_twilio_reported_over_counts_its_length_not_the_time_since(alices_business):
    """Its process died before finalising it, but Twilio's status callback said how long it lasted."""
    use_minutes(alices_business, 28)
    make_call(alices_business, status="in_progress", stream_started_at=timezone.now() - dt.timedelta(hours=2),
              duration_seconds=60)
    assert can_take_call(alices_business).allowed  # 28 + 1 of 30
    use_minutes(alices_business, 1)
    assert can_take_call(alices_business).reason == "trial_exhausted"
