"""An owner gets a phone number in real headless Chromium, from Twilio answered by the project's stand-in."""

from __future__ import annotations

import re

import pytest

from tests.browser import ARTIFACTS
from tests.factories import PASSWORD
from voice.offline.twilio import TwilioStandin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_gets_a_number_in_the_browser_then_releases_it(page, live_server, settings, alice, alices_business):
    alices_business.phone_number = ""
    alices_business.save()
    with TwilioStandin() as twilio:
        twilio.seed_fictional_inventory(per_area=4)
        settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = twilio.account_sid, twilio.auth_token
        settings.TWILIO_API_BASE_URL, settings.PUBLIC_BASE_URL = twilio.base_url, live_server.url

        page.goto(live_server.url + "/accounts/login/")
        page.fill("input[name=login]", alice.email)
        page.fill("input[name=password]", PASSWORD)
        page.locator("form button[type=submit]").last.click()
        page.wait_for_url(re.compile("/dashboard/"))
        page.get_by_role("link", name="Connect your number").first.click()
        page.wait_for_url(re.compile("/settings/number/"))

        page.select_option("select[name=country]", "US")
        page.fill("input[name=area_code]", "312")
        page.get_by_role("button", name="Search numbers").click()
        page.wait_for_url(re.compile(r"area_code=312"))
        page.screenshot(path=str(ARTIFACTS / "number-search.png"), full_page=True)
        page.get_by_role("button", name="Get +13125550111").click()
        page.wait_for_url(re.compile(r"/settings/number/$"))

        assert page.inner_text("#business-number") == "+13125550111"
        assert "is yours" in page.inner_text("main")
        bought = twilio.number("+13125550111")
        assert bought["voice_url"] == live_server.url + "/voice/twilio/incoming/"
        alices_business.refresh_from_db()
        assert alices_business.phone_number_sid == bought["sid"]
        page.screenshot(path=str(ARTIFACTS / "number-bought.png"), full_page=True)

        page.get_by_role("button", name="Release +13125550111").click()
        page.wait_for_url(re.compile(r"/settings/number/$"))
        assert "no longer reaches your receptionist" in page.inner_text("main")
        assert twilio.number("+13125550111") is None
        page.get_by_role("link", name="See available numbers").click()
        assert page.get_by_role("button", name="Use +14155550101").is_visible()
