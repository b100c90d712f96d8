"""POST /billing/webhooks/polar/: verified with the SDK, stored once, applied in order."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from billing.models import BillingAccount, PolarWebhookEvent
from billing.services.account import account_for_business
from billing.tests import polar_payloads as p
from billing.tests.conftest import PRO_PRODUCT, STARTER_PRODUCT, sign

SUB_ID = "e2f1a3b4-0c5d-4e6f-8a9b-112233445566"
CUSTOMER_ID = "a3f4d1c2-1111-4c5e-9a8b-1234567890ab"


def sub_event(business, event_type="subscription.active", *, status="active", modified_at=p.NOW, sub_id=SUB_ID,
              product_id=STARTER_PRODUCT, **kwargs):
    return p.event(event_type, p.subscription(subscription_id=sub_id, external_id=str(business.uuid),
                                              product_id=product_id, status=status, modified_at=modified_at, **kwargs),
                   timestamp=modified_at)


def account(business) -> BillingAccount:
    return BillingAccount.objects.get(business=business)


@pytest.mark.parametrize("event_type", ["subscription.created", "subscription.active", "subscription.updated",
                                        "subscription.uncanceled"])
def test_subscription_events_set_plan_status_and_period(deliver, alices_business, event_type):
    response = deliver(sub_event(alices_business, event_type))
    assert response.status_code == 202
    acc = account(alices_business)
    assert (acc.status, acc.plan_key, acc.included_minutes, acc.hard_cap) == ("active", "starter", 100, True)
    assert acc.polar_subscription_id == SUB_ID and acc.polar_customer_id == CUSTOMER_ID
    assert acc.current_period_end == p.NOW - dt.timedelta(days=1) + dt.timedelta(days=30)
    assert not acc.cancel_at_period_end
    assert PolarWebhookEvent.objects.get().outcome == "applied"


def test_canceled_keeps_access_until_period_end(deliver, alices_business):
    deliver(sub_event(alices_business))
    deliver(sub_event(alices_business, "subscription.canceled", cancel_at_period_end=True,
                      modified_at=p.NOW + dt.timedelta(hours=1)))
    acc = account(alices_business)
    assert acc.status == "active" and acc.cancel_at_period_end


def test_revoked_ends_access(deliver, alices_business):
    deliver(sub_event(alices_business))
    deliver(sub_event(alices_business, "subscription.revoked", status="canceled",
                      modified_at=p.NOW + dt.timedelta(hours=1), ended_at=p.NOW + dt.timedelta(hours=1)))
    assert account(alices_business).status == "revoked"


def test_past_due(deliver, alices_business):
    deliver(sub_event(alices_business))
    deliver(sub_event(alices_business, "subscription.past_due", status="past_due",
                      modified_at=p.NOW + dt.timedelta(days=30)))
    assert account(alices_business).status == "past_due"


def test_plan_change_updates_included_minutes(deliver, alices_business):
    deliver(sub_event(alices_business))
    deliver(sub_event(alices_business, "subscription.updated", product_id=PRO_PRODUCT,
                      modified_at=p.NOW + dt.timedelta(minutes=5)))
    acc = account(alices_business)
    assert (acc.plan_key, acc.included_minutes, acc.hard_cap) == ("pro", 500, False)


def test_order_paid_links_the_polar_customer(deliver, alices_business):
    body = p.event("order.paid", p.order(order_id="0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
                                         external_id=str(alices_business.uuid), product_id=STARTER_PRODUCT,
                                         subscription_id=SUB_ID))
    assert deliver(body).status_code == 202
    acc = account(alices_business)
    assert acc.polar_customer_id == CUSTOMER_ID and acc.last_paid_at == p.NOW


def test_customer_state_changed_snapshot(deliver, alices_business):
    state = p.customer_state(external_id=str(alices_business.uuid), subscriptions=[{
        "id": SUB_ID, "status": "granted", "product_id": PRO_PRODUCT, "current_period_start": p.iso(p.NOW),
        "current_period_end": p.iso(p.NOW + dt.timedelta(days=30)), "cancel_at_period_end": True}])
    assert deliver(p.event("customer.state_changed", state)).status_code == 202
    acc = account(alices_business)
    assert (acc.status, acc.plan_key, acc.cancel_at_period_end, acc.polar_customer_id) == ("active", "pro", True,
                                                                                          CUSTOMER_ID)
    # A later snapshot without subscriptions: access has ended.
    empty = p.customer_state(external_id=str(alices_business.uuid), subscriptions=[])
    deliver(p.event("customer.state_changed", empty, timestamp=p.NOW + dt.timedelta(days=31)))
    assert account(alices_business).status == "revoked"


def test_out_of_order_delivery_does_not_roll_state_back(deliver, alices_business):
    deliver(sub_event(alices_business, "subscription.revoked", status="canceled", modified_at=p.NOW))
    # The older "active" arrives late.
    deliver(sub_event(alices_business, "subscription.updated", modified_at=p.NOW - dt.timedelta(minutes=10)))
    assert account(alices_business).status == "revoked"
    assert PolarWebhookEvent.objects.filter(outcome="stale").count() == 1


def test_an_old_subscription_ending_does_not_touch_the_current_one(deliver, alices_business):
    deliver(sub_event(alices_business, modified_at=p.NOW))
    deliver(sub_event(alices_business, "subscription.revoked", status="canceled", sub_id="11111111-2222-4333-8444-555555555555",
                      modified_at=p.NOW + dt.timedelta(minutes=1)))
    assert account(alices_business).status == "active"


def test_duplicate_delivery_is_acknowledged_and_applied_once(client, alices_business):
    account_for_business(alices_business)
    body = json.dumps(sub_event(alices_business))
    headers = sign(body, msg_id="msg_dup")
    first = client.post("/billing/webhooks/polar/", data=body, content_type="application/json", **headers)
    BillingAccount.objects.filter(business=alices_business).update(status="past_due")  # changed since
    second = client.post("/billing/webhooks/polar/", data=body, content_type="application/json", **headers)
    assert (first.status_code, second.status_code) == (202, 202)
    assert PolarWebhookEvent.objects.count() == 1
    assert account(alices_business).status == "past_due"  # the redelivery had no second effect


def test_forged_signature_is_refused_and_changes_nothing(deliver, alices_business):
    response = deliver(sub_event(alices_business), secret="whsec_someone-else")
    assert response.status_code == 403
    assert not PolarWebhookEvent.objects.exists() and not BillingAccount.objects.exists()


def test_stale_timestamp_is_refused(deliver, alices_business):
    response = deliver(sub_event(alices_business), at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    assert response.status_code == 403 and not PolarWebhookEvent.objects.exists()


def test_tampered_body_is_refused(client, alices_business):
    body = json.dumps(sub_event(alices_business))
    headers = sign(body)
    response = client.post("/billing/webhooks/polar/", data=body.replace("active", "trialing"),
                           content_type="application/json", **headers)
    assert response.status_code == 403


def test_unsigned_is_refused(client, alices_business):
    response = client.post("/billing/webhooks/polar/", data=json.dumps(sub_event(alices_business)),
                           content_type="application/json")
    assert response.status_code == 403


def test_malformed_payload_is_400(deliver, alices_business):
    event = sub_event(alices_business)
    del event["data"]["current_period_end"]
    assert deliver(event).status_code == 400
    assert not PolarWebhookEvent.objects.exists()


def test_not_json_is_400(client, db):
    body = "not json"
    response = client.post("/billing/webhooks/polar/", data=body, content_type="application/json", **sign(body))
    assert response.status_code == 400


def test_unknown_event_type_is_acknowledged(deliver, db):
    assert deliver({"type": "widget.exploded", "timestamp": p.iso(p.NOW), "data": {}}).status_code == 202


def test_known_but_unhandled_type_is_stored_and_ignored(deliver, alices_business):
    customer = p.customer(external_id=str(alices_business.uuid), customer_id=CUSTOMER_ID)
    assert deliver(p.event("customer.updated", customer)).status_code == 202
    assert PolarWebhookEvent.objects.get().outcome == "ignored"
    assert not BillingAccount.objects.exists()


def test_event_for_an_unknown_business_is_acknowledged(deliver, db):
    event = p.event("subscription.active", p.subscription(subscription_id=SUB_ID, product_id=STARTER_PRODUCT,
                                                          external_id="00000000-0000-4000-8000-000000000000"))
    assert deliver(event).status_code == 202
    assert PolarWebhookEvent.objects.get().outcome == "unknown_business"


def test_webhook_is_off_without_a_secret(deliver, settings, db):
    settings.POLAR_WEBHOOK_SECRET = ""
    assert deliver({"type": "x"}).status_code == 404


def test_get_is_not_allowed(client, db):
    assert client.get("/billing/webhooks/polar/").status_code == 405
