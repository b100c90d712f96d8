"""What a business owner sees of the account pages, billing and the favicon, in real headless Chromium."""

import logging
import re

import pytest
from django.db import connections

from accounts.models import Business
from tests.browser import ARTIFACTS, chromium_page
from tests.factories import PASSWORD, make_business, make_call, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLANS = [{"key": "starter", "name": "Starter", "product_id": "prod_starter", "included_minutes": 300,
          "hard_cap": True, "price": "$49/month"},
         {"key": "pro", "name": "Pro", "product_id": "prod_pro", "included_minutes": 1000, "hard_cap": False,
          "price": "$149/month"}]
PRIMARY = "rgb(15, 118, 110)"  # --primary in static/css/app.css


def sign_in(page, base_url: str, email: str) -> None:
    page.goto(base_url + "/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile("/(dashboard|onboarding)/"))


def horizontal_overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_billing_page_never_scrolls_sideways(live_server, settings, alice, alices_business, width):
    settings.BILLING_PLANS = PLANS
    make_call(alices_business, status="completed", duration_seconds=61)
    with chromium_page(viewport={"width": width, "height": 900}) as page:
        sign_in(page, live_server.url, alice.email)
        page.goto(live_server.url + "/billing/")
        assert page.locator(".usage-chart li").count() > 0  # the chart and its hidden labels are on the page
        assert page.get_by_text("$149/month").is_visible()
        page.screenshot(path=str(ARTIFACTS / f"billing-{width}.png"), full_page=True)
        assert horizontal_overflow(page) == 0


@pytest.mark.parametrize("path,heading", [("/accounts/login/", "Sign in"),
                                          ("/accounts/signup/", "Create your account")])
def test_sign_in_and_sign_up_use_the_apps_layout(page, live_server, path, heading):
    page.goto(live_server.url + path)
    assert page.locator("header.site-header .brand").is_visible()
    assert page.locator("footer.site-footer").is_visible()
    card = page.locator("main .auth-card")
    assert card.get_by_role("heading", level=1).inner_text() == heading
    # Labels sit above their inputs, as on every other form of the app, and the button is the app's.
    email = card.get_by_label("Email address")
    label_box, input_box = card.locator("label[for]").first.bounding_box(), email.bounding_box()
    assert label_box["y"] + label_box["height"] <= input_box["y"]
    button = card.locator("button[type=submit]")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == PRIMARY
    page.screenshot(path=str(ARTIFACTS / f"account{path.rstrip('/').replace('/', '-')}.png"), full_page=True)


def test_a_new_owner_gets_the_browsers_time_zone_at_sign_up(live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    with chromium_page(timezone_id="Asia/Tokyo") as page:
        page.goto(live_server.url + "/accounts/signup/")
        page.fill("input[name=email]", "kenji@clinic.example")
        page.fill("input[name=password1]", "a-long-and-unusual-passphrase")
        page.fill("input[name=password2]", "a-long-and-unusual-passphrase")
        page.get_by_role("button", name="Create account").click()
        page.wait_for_url(re.compile("/accounts/confirm-email/"))
        assert Business.objects.get(notification_email="kenji@clinic.example").time_zone == "Asia/Tokyo"
        connections.close_all()


def test_onboarding_preselects_the_browsers_time_zone(live_server):
    owner = make_user("ana@clinic.example")
    make_business(owner=owner, name="Ana's Clinic", time_zone="UTC", onboarded=False)
    with chromium_page(timezone_id="America/Sao_Paulo") as page:
        sign_in(page, live_server.url, owner.email)
        page.goto(live_server.url + "/onboarding/")
        assert page.locator("select[name=time_zone]").input_value() == "America/Sao_Paulo"


def test_the_favicon_is_served_and_no_page_asks_for_a_missing_file(page, live_server, alice, alices_business, caplog):
    failed: list[str] = []
    page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.status} {response.url}"))
    caplog.set_level(logging.WARNING, logger="django.request")
    sign_in(page, live_server.url, alice.email)
    for path in ("/dashboard/", "/billing/", "/settings/faq/"):
        page.goto(live_server.url + path)
        icon = page.locator("link[rel=icon]").first.get_attribute("href")
        assert page.request.get(live_server.url + icon).status == 200
    # Pages without our <link rel="icon"> (the admin, error pages) make browsers ask for /favicon.ico.
    favicon = page.request.get(live_server.url + "/favicon.ico")
    assert (favicon.status, favicon.headers["content-type"]) == (200, "image/x-icon")
    assert failed == []
    assert [r.getMessage() for r in caplog.records if r.name == "django.request"] == []
