"""The billing page, checkout and customer portal: owners only, always for the member's own business."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from django.core.cache import cache
from django.utils import timezone

from billing.models import BillingAccount, UsageRecord
from billing.services.account import account_for_business
from billing.tests import polar_payloads as p
from billing.tests.conftest import PRO_PRODUCT, STARTER_PRODUCT
from tests.factories import make_business, make_call, make_user

CHECKOUT_ID = "4f3e2d1c-0b9a-4877-8665-5443322110ff"
CUSTOMER_ID = "a3f4d1c2-1111-4c5e-9a8b-1234567890ab"


@pytest.fixture
def products(polar_api):
    return polar_api.get("/v1/products/").mock(return_value=httpx.Response(200, json=p.product_list(
        [(STARTER_PRODUCT, "Starter", 4900, "25"), (PRO_PRODUCT, "Pro", 14900, None)])))


def checkout_route(polar_api, business):
    return polar_api.post("/v1/checkouts/").mock(return_value=httpx.Response(201, json=p.checkout(
        checkout_id=CHECKOUT_ID, product_id=STARTER_PRODUCT, external_customer_id=str(business.uuid))))


def test_owner_checkout_creates_a_polar_checkout_for_the_business_and_redirects(client, alice, alices_business,
                                                                                polar_api):
    route = checkout_route(polar_api, alices_business)
    client.force_login(alice)
    response = client.post("/billing/checkout/", {"plan": "starter"}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 302
    assert response["Location"] == f"https://sandbox.polar.sh/checkout/polar_c_{CHECKOUT_ID[:8]}"
    sent = json.loads(route.calls.last.request.content)
    assert sent["products"] == [STARTER_PRODUCT]
    assert sent["external_customer_id"] == str(alices_business.uuid)  # never an email
    assert sent["customer_email"] == "alice@example.com"
    assert sent["success_url"] == "https://rx.example.com/billing/success/?checkout_id={CHECKOUT_ID}"
    assert sent["customer_ip_address"] == "203.0.113.7"
    assert sent["metadata"] == {"business_id": str(alices_business.id), "plan": "starter"}


def test_a_known_polar_customer_checks_out_by_customer_id(client, alice, alices_business, polar_api):
    route = checkout_route(polar_api, alices_business)
    account = account_for_business(alices_business)
    BillingAccount.objects.filter(pk=account.pk).update(polar_customer_id=CUSTOMER_ID)
    client.force_login(alice)
    client.post("/billing/checkout/", {"plan": "pro"})
    sent = json.loads(route.calls.last.request.content)
    assert sent["customer_id"] == CUSTOMER_ID and "external_customer_id" not in sent
    assert sent["products"] == [PRO_PRODUCT]


def test_checkout_of_an_unknown_plan_or_when_polar_fails_shows_a_message(client, alice, alices_business, polar_api,
                                                                        products):
    polar_api.post("/v1/checkouts/").mock(return_value=httpx.Response(500))
    client.force_login(alice)
    for plan in ("gold", "starter"):
        response = client.post("/billing/checkout/", {"plan": plan}, follow=True)
        assert response.redirect_chain[-1][0] == "/billing/"
    messages = [str(m) for m in response.context["messages"]]
    assert any("could not open the checkout" in m for m in messages)


def test_staff_cannot_buy_or_open_the_portal(client, bob, alices_business, polar_api):
    client.force_login(bob)
    assert client.post("/billing/checkout/", {"plan": "starter"}).status_code == 403
    assert client.post("/billing/portal/").status_code == 403
    assert len(polar_api.calls) == 0


def test_anonymous_visitors_are_sent_to_login(client, db):
    for url in ("/billing/", "/billing/success/"):
        assert client.get(url)["Location"].startswith("/accounts/login/")
    assert client.post("/billing/checkout/", {"plan": "starter"})["Location"].startswith("/accounts/login/")


def test_checkout_and_portal_are_post_only(client, alice, alices_business):
    client.force_login(alice)
    assert client.get("/billing/checkout/").status_code == 405
    assert client.get("/billing/portal/").status_code == 405


def test_without_a_polar_token_checkout_and_portal_are_off(client, alice, alices_business, settings):
    settings.POLAR_ACCESS_TOKEN = ""
    client.force_login(alice)
    assert client.post("/billing/checkout/", {"plan": "starter"}).status_code == 404
    assert client.post("/billing/portal/").status_code == 404
    assert client.get("/billing/").status_code == 200  # prices fall back to settings


def test_portal_opens_a_fresh_customer_session(client, alice, alices_business, polar_api):
    account = account_for_business(alices_business)
    BillingAccount.objects.filter(pk=account.pk).update(status="active", polar_customer_id=CUSTOMER_ID)
    route = polar_api.post("/v1/customer-sessions/").mock(return_value=httpx.Response(201, json=p.customer_session(
        customer_id=CUSTOMER_ID, external_id=str(alices_business.uuid))))
    client.force_login(alice)
    response = client.post("/billing/portal/")
    assert response["Location"] == "https://sandbox.polar.sh/acme/portal?customer_session_token=polar_cst_test"
    assert json.loads(route.calls.last.request.content) == {"customer_id": CUSTOMER_ID,
                                                           "return_url": "https://rx.example.com/billing/"}


def test_portal_before_subscribing_points_to_the_plans(client, alice, alices_business, products):
    client.force_login(alice)
    response = client.post("/billing/portal/", follow=True)
    assert response.redirect_chain[-1][0] == "/billing/"
    assert "Choose a plan first" in response.content.decode()


def test_billing_page_shows_plan_usage_and_polar_prices(client, alice, alices_business, products):
    account = account_for_business(alices_business)
    now = timezone.now()
    BillingAccount.objects.filter(pk=account.pk).update(
        status="active", plan_key="starter", included_minutes=100, hard_cap=True,
        current_period_start=now - dt.timedelta(days=3), current_period_end=now + dt.timedelta(days=27))
    call = make_call(alices_business, status="completed", finalized_at=now, ended_at=now, duration_seconds=300)
    UsageRecord.objects.create(business=alices_business, call=call, external_id=f"call_{call.id}", seconds=300,
                               minutes=5, occurred_at=now - dt.timedelta(hours=1), status="sent")
    client.force_login(alice)
    page = client.get("/billing/").content.decode()
    assert "5 of 100" in page
    assert "$49.00 / month" in page and "$0.25 per extra minute" in page and "$149.00 / month" in page
    assert "Manage billing" in page and "Choose Pro" in page and "Your current plan" in page
    assert "usage-chart" in page
    client.get("/billing/")
    assert products.call_count == 1  # prices are cached


def test_prices_fall_back_to_settings_when_polar_is_down(client, alice, alices_business, polar_api):
    polar_api.get("/v1/products/").mock(side_effect=httpx.ConnectError("down"))
    client.force_login(alice)
    page = client.get("/billing/").content.decode()
    assert "$49/month" in page and "$149/month" in page
    assert "Free trial" in page and "0 of 30" in page


def test_staff_see_the_page_without_buy_buttons(client, bob, alices_business, products):
    client.force_login(bob)
    page = client.get("/billing/").content.decode()
    assert "Choose Starter" not in page and "Manage billing" not in page
    assert "Only the business's owners can change the plan" in page


def test_success_page_does_not_grant_anything(client, alice, alices_business, products):
    client.force_login(alice)
    response = client.get(f"/billing/success/?checkout_id={CHECKOUT_ID}", follow=True)
    assert "as soon as Polar confirms" in response.content.decode()
    assert account_for_business(alices_business).status == "free_trial"


def test_checkout_is_always_for_the_members_own_business(client, alices_business, charlie, polar_api):
    charlies_business = make_business(owner=make_user("dave@example.com"), name="Dave")  # noise
    route = polar_api.post("/v1/checkouts/").mock(return_value=httpx.Response(201, json=p.checkout(
        checkout_id=CHECKOUT_ID, product_id=STARTER_PRODUCT, external_customer_id=None)))
    client.force_login(charlie)
    client.post("/billing/checkout/", {"plan": "starter", "business": alices_business.id})
    sent = json.loads(route.calls.last.request.content)
    assert sent["external_customer_id"] == str(charlie.memberships.get().business.uuid)
    assert sent["external_customer_id"] not in (str(alices_business.uuid), str(charlies_business.uuid))


def test_billing_page_shows_only_the_members_business(client, alices_business, charlie, products):
    account = account_for_business(alices_business)
    BillingAccount.objects.filter(pk=account.pk).update(status="past_due", plan_key="pro")
    client.force_login(charlie)
    page = client.get("/billing/").content.decode()
    assert "Alice Dental" not in page and "Past due" not in page and "Free trial" in page


@pytest.fixture(autouse=True)
def _clear_price_cache():
    cache.clear()
    yield


def test_without_plans_owners_read_a_plain_state_not_operator_instructions(client, alice, alices_business, settings):
    settings.BILLING_PLANS = []
    client.force_login(alice)
    page = client.get("/billing/").content.decode()
    assert "No paid plans are offered yet" in page
    assert "30 minutes left" in page
    assert "BILLING_PLANS" not in page and "README" not in page


def test_the_free_trial_is_named_once(client, alice, alices_business, polar_api):
    polar_api.get("/v1/products/").mock(side_effect=httpx.ConnectError("down"))
    client.force_login(alice)
    page = client.get("/billing/").content.decode()
    assert page.count("Free trial") == 1


def test_the_operators_admin_says_what_to_configure_when_there_are_no_plans(admin_client, settings):
    settings.BILLING_PLANS = []
    page = admin_client.get("/admin/billing/billingaccount/").content.decode()
    assert "No plans are configured" in page and "BILLING_PLANS" in page
