"""The setup checklist in real headless Chromium: a fresh business sees every item to do; a business whose number
came through the portal (and points here), with hours, services and a test call, sees those ticked."""

from __future__ import annotations

import pytest

from tests.browser import ARTIFACTS
from tests.factories import make_business, make_call, make_hours, make_service, make_transcript, make_user
from tests.test_browser_dashboard import sign_in
from voice import numbers
from voice.offline.twilio import TwilioStandin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def checklist(page) -> dict[str, bool]:
    """Each item's label and whether the page shows it ticked (its class and the words a screen reader hears)."""
    items = {}
    for li in page.locator("#checklist-title ~ ul.checklist > li").all():
        label = li.locator("a").first.inner_text()
        ticked = "is-done" in (li.get_attribute("class") or "")
        assert li.locator(".sr-only").inner_text() == ("(done)" if ticked else "(to do)")
        items[label] = ticked
    return items


def test_a_fresh_business_sees_every_setup_item_to_do(page, live_server):
    owner = make_user("fresh@example.com")
    make_business(owner=owner, name="Fresh Florist")
    sign_in(page, live_server.url, owner.email)

    assert checklist(page) == {"Get your phone number": False, "Set your opening hours": False,
                               "List your services": False, "Make a test call": False,
                               "Answer common questions": False, "Add a transfer number": False}
    page.get_by_role("link", name="Get your phone number").click()
    page.wait_for_url("**/settings/number/")
    page.screenshot(path=str(ARTIFACTS / "checklist-fresh-number-page.png"), full_page=True)


def test_a_set_up_business_sees_its_number_hours_services_and_test_call_ticked(page, live_server, settings):
    owner = make_user("ready@example.com")
    business = make_business(owner=owner, name="Ready Dental")
    make_hours(business, 0)
    make_service(business, "Cleaning")
    call = make_call(business, channel="browser", from_number="Owner", status="completed")
    make_transcript(call, [("agent", "Ready Dental, how can I help?", 0)])
    with TwilioStandin() as twilio:
        twilio.seed_fictional_inventory(per_area=2)
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = twilio.account_sid, twilio.auth_token
        settings.TWILIO_API_BASE_URL, settings.PUBLIC_BASE_URL = twilio.base_url, live_server.url
        numbers.number_buy(business=business, phone_number="+12125550110")  # the portal's own purchase

        sign_in(page, live_server.url, owner.email)
        page.screenshot(path=str(ARTIFACTS / "checklist-set-up.png"), full_page=True)
        assert checklist(page) == {"Connect your phone number": True, "Set your opening hours": True,
                                   "List your services": True, "Make a test call": True,
                                   "Answer common questions": False, "Add a transfer number": False}
        assert "Answering +12125550110" in page.inner_text("main")
