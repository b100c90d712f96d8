"""The operator's admin for billing: usage records and Polar's webhook events are what happened, read-only; a
webhook event can be neither added nor deleted by hand (it is what keeps a redelivery from applying twice); a
billing account's Polar state is Polar's."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone

from accounts.models import Business
from billing.models import BillingAccount, PolarWebhookEvent, UsageRecord
from billing.services.account import account_for_business
from calls.models import Call
from tests.admin_forms import admin_form_data
from tests.factories import make_call


def make_usage_record(business: Business, minutes: int = 3) -> UsageRecord:
    call = make_call(business, status="completed", duration_seconds=minutes * 60)
    return UsageRecord.objects.create(business=business, call=call, external_id=f"call_{call.id}",
                                      seconds=minutes * 60, minutes=minutes, occurred_at=timezone.now(),
                                      status=UsageRecord.Status.SENT, attempts=1, reported_at=timezone.now())


def make_webhook_event(business: Business | None = None) -> PolarWebhookEvent:
    return PolarWebhookEvent.objects.create(webhook_id="msg_2x7Yq0oXvTzE", type="subscription.active",
                                            payload={"type": "subscription.active", "data": {"status": "active"}},
                                            business=business, outcome="applied")


def test_a_usage_record_cannot_be_changed_by_hand(admin_client, alices_business):
    record = make_usage_record(alices_business, minutes=3)

    response = admin_client.post(reverse("admin:billing_usagerecord_change", args=[record.id]), {
        "minutes": "0", "seconds": "0", "status": "pending", "attempts": "0"})

    assert response.status_code == 403
    record.refresh_from_db()
    assert (record.minutes, record.status) == (3, "sent")


def test_a_usage_record_cannot_be_added_by_hand(admin_client, db):
    assert admin_client.get(reverse("admin:billing_usagerecord_add")).status_code == 403


def test_a_webhook_event_cannot_be_changed_by_hand(admin_client, alices_business):
    event = make_webhook_event(alices_business)

    response = admin_client.post(reverse("admin:billing_polarwebhookevent_change", args=[event.id]), {
        "webhook_id": "msg_other", "type": "order.paid", "payload": "{}", "outcome": "ignored"})

    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.webhook_id, event.outcome) == ("msg_2x7Yq0oXvTzE", "applied")


def test_a_webhook_event_cannot_be_added_by_hand(admin_client, db):
    listing = admin_client.get(reverse("admin:billing_polarwebhookevent_changelist")).content.decode()

    assert reverse("admin:billing_polarwebhookevent_add") not in listing
    assert admin_client.get(reverse("admin:billing_polarwebhookevent_add")).status_code == 403


def test_a_webhook_event_cannot_be_deleted_by_hand(admin_client, alices_business):
    event = make_webhook_event(alices_business)

    response = admin_client.post(reverse("admin:billing_polarwebhookevent_delete", args=[event.id]), {"post": "yes"})

    assert response.status_code == 403 and PolarWebhookEvent.objects.filter(pk=event.pk).exists()


def test_webhook_events_cannot_be_deleted_in_bulk_from_the_list(admin_client, alices_business):
    event = make_webhook_event(alices_business)

    admin_client.post(reverse("admin:billing_polarwebhookevent_changelist"), {
        "action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})

    assert PolarWebhookEvent.objects.filter(pk=event.pk).exists()


def test_a_billing_accounts_polar_state_cannot_be_changed_by_hand(admin_client, alices_business):
    account = account_for_business(alices_business)
    url = reverse("admin:billing_billingaccount_change", args=[account.id])
    data = admin_form_data(admin_client.get(url))
    data.update(status="active", plan_key="pro", included_minutes="100000",
                current_period_end_0="2099-01-01", current_period_end_1="00:00:00")

    assert admin_client.post(url, data).status_code == 302

    account.refresh_from_db()
    assert (account.status, account.plan_key, account.included_minutes, account.current_period_end) == (
        "free_trial", "", 0, None)


def test_an_operator_can_still_grant_trial_minutes(admin_client, alices_business):
    account = account_for_business(alices_business)
    url = reverse("admin:billing_billingaccount_change", args=[account.id])
    data = admin_form_data(admin_client.get(url))
    data["trial_minutes"] = "120"

    assert admin_client.post(url, data).status_code == 302

    assert BillingAccount.objects.get(pk=account.pk).trial_minutes == 120


def test_an_operator_can_still_delete_a_business_with_usage_and_webhook_events(admin_client, alices_business):
    make_usage_record(alices_business)
    event = make_webhook_event(alices_business)

    response = admin_client.post(reverse("admin:accounts_business_delete", args=[alices_business.id]),
                                 {"post": "yes"})

    assert response.status_code == 302
    assert not Business.objects.filter(pk=alices_business.pk).exists()
    assert not Call.objects.filter(business_id=alices_business.pk).exists()
    event.refresh_from_db()
    assert event.business_id is None  # what Polar sent is kept; only its link to the business goes
