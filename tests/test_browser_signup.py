"""A newcomer signs up and finishes onboarding through the real pages, in real headless Chromium."""

import re

import pytest
from django.core import mail
from django.db import connections

from accounts.models import Business, OpeningHours
from tests.browser import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_new_owner_signs_up_verifies_and_completes_onboarding(page, live_server, settings):
    settings.PUBLIC_BASE_URL = live_server.url
    page.goto(live_server.url + "/")
    page.get_by_role("link", name=re.compile("start free", re.I)).first.click()
    page.fill("input[name=email]", "maria@clinic.example")
    page.fill("input[name=password1]", "a-long-and-unusual-passphrase")
    page.fill("input[name=password2]", "a-long-and-unusual-passphrase")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile("/accounts/confirm-email/"))

    link = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[-1].body).group(0)
    link = re.sub(r"^https?://[^/]+", live_server.url, link)
    page.goto(link)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile("/onboarding/"))

    page.fill("input[name=name]", "Maria's Clinic")
    page.select_option("select[name=time_zone]", "Europe/Madrid")
    assert page.locator("input[name=phone_number]").count() == 0  # numbers come from Twilio, not typing
    page.fill("input[name=greeting]", "Hola, Maria's Clinic, ¿en qué puedo ayudarle?")
    page.get_by_role("button", name="Save and continue").click()
    page.wait_for_url(re.compile("/dashboard/"))
    page.screenshot(path=str(ARTIFACTS / "signup-onboarding-dashboard.png"), full_page=True)

    assert "Maria's Clinic" in page.content()
    business = Business.objects.get(name="Maria's Clinic")
    assert (business.name, business.time_zone) == ("Maria's Clinic", "Europe/Madrid")
    assert OpeningHours.objects.filter(business=business).count() == 5  # the default Monday-Friday template
    # Under Playwright's loop the ORM calls above got a connection of their own context; close it here.
    connections.close_all()
