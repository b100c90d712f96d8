"""Whether a business's number reaches us: recorded from Twilio's own answer when the number is bought, claimed,
checked again or reconnected, so pages never ask Twilio on a page load. Twilio is the stand-in, reached through
the real SDK."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import add_member, make_user
from voice import numbers, twilio_api
from voice.tests.test_numbers import PUBLIC, claim_as, numberless, twilio  # noqa: F401  (fixtures)


def buy(client, user, phone_number: str = "+12125550111"):
    client.force_login(user)
    return client.post(reverse("number_search") + "?country=US&area_code=212", {"phone_number": phone_number})


def repoint_at_twilio(sid: str, voice_url: str = "https://elsewhere.example/voice") -> None:
    """Someone changes the number in the Twilio console."""
    twilio_api.rest_client().incoming_phone_numbers(sid).update(voice_url=voice_url)


def test_a_bought_number_is_recorded_as_reaching_us(client, alice, numberless, twilio):
    buy(client, alice)
    numberless.refresh_from_db()
    assert numberless.number_reaches_us and numberless.phone_number_webhooks_base == PUBLIC
    assert numberless.phone_number_checked_at is not None


def test_a_claimed_number_is_recorded_as_reaching_us(client, alice, numberless, twilio):
    claim_as(client, alice, twilio.number("+14155550101")["sid"])
    numberless.refresh_from_db()
    assert numberless.number_reaches_us


def test_the_number_page_reads_what_was_recorded_without_asking_twilio(client, alice, numberless, twilio):
    buy(client, alice)
    before = len(twilio.requests)
    page = client.get(reverse("settings_number")).content.decode()
    assert "Connected: Twilio sends this number" in page
    assert len(twilio.requests) == before


def test_checking_again_finds_a_number_repointed_in_the_twilio_console(client, alice, numberless, twilio):
    buy(client, alice)
    numberless.refresh_from_db()
    repoint_at_twilio(numberless.phone_number_sid)

    response = client.post(reverse("number_check"), follow=True)

    numberless.refresh_from_db()
    assert not numberless.number_reaches_us and numberless.phone_number_webhooks_base == ""
    page = response.content.decode()
    assert "does not send this number" in page and "Connect it to this server" in page


def test_a_number_whose_status_callback_goes_elsewhere_does_not_count_as_reaching_us(client, alice, numberless,
                                                                                     twilio):
    buy(client, alice)
    numberless.refresh_from_db()
    twilio_api.rest_client().incoming_phone_numbers(numberless.phone_number_sid).update(
        status_callback="https://elsewhere.example/status")
    assert numbers.number_check(business=numberless) is False


def test_checking_again_notices_this_server_moved_and_reconnecting_points_the_number_here(
        client, alice, numberless, twilio, settings):
    buy(client, alice)
    settings.PUBLIC_BASE_URL = "https://new.example.com"
    numberless.refresh_from_db()
    assert not numberless.number_reaches_us  # recorded for the old address

    client.post(reverse("number_reconnect"))

    numberless.refresh_from_db()
    assert numberless.number_reaches_us
    assert twilio.number("+12125550111")["voice_url"] == "https://new.example.com/voice/twilio/incoming/"


def test_a_number_gone_from_the_account_is_recorded_as_not_reaching_us(client, alice, numberless, twilio):
    buy(client, alice)
    numberless.refresh_from_db()
    twilio_api.release_number(numberless.phone_number_sid)  # removed in the Twilio console

    response = client.post(reverse("number_check"), follow=True)

    numberless.refresh_from_db()
    assert not numberless.number_reaches_us
    assert "no longer in this service" in response.content.decode()


def test_a_typed_in_number_cannot_be_checked_and_says_why(client, alice, alices_business, twilio):
    client.force_login(alice)
    response = client.post(reverse("number_check"), follow=True)
    assert "entered by the people who run this service" in response.content.decode()
    assert not twilio.number_requests("GET")


def test_releasing_forgets_what_twilio_said(client, alice, numberless, twilio):
    buy(client, alice)
    client.post(reverse("number_release"))
    numberless.refresh_from_db()
    assert (numberless.phone_number_checked_at, numberless.phone_number_webhooks_base) == (None, "")


def test_staff_may_check_but_not_reconnect(client, alice, numberless, twilio):
    buy(client, alice)
    numberless.refresh_from_db()
    repoint_at_twilio(numberless.phone_number_sid)
    staff = make_user("staff@example.com")
    add_member(numberless, staff)
    client.force_login(staff)

    assert client.post(reverse("number_check")).status_code == 302
    assert client.post(reverse("number_reconnect")).status_code in (403, 404)
    assert twilio.number("+12125550111")["voice_url"] == "https://elsewhere.example/voice"


@pytest.mark.parametrize("name", ["number_check", "number_reconnect"])
def test_checking_and_reconnecting_are_post_only(client, alice, numberless, twilio, name):
    client.force_login(alice)
    assert client.get(reverse(name)).status_code == 405
