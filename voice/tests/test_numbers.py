"""A business gets its phone number from the operator's Twilio account, and only its own.

Twilio is the project's stand-in (voice/offline/twilio/) at the HTTP boundary, reached by our code through
the real twilio SDK; webhooks are signed with twilio's RequestValidator.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import pytest
from django.db import connections
from django.urls import reverse
from twilio.request_validator import RequestValidator

from accounts.models import Business
from calls.models import Call
from tests.factories import make_business, make_user
from voice import numbers
from voice.offline.twilio import TwilioStandin
from voice.phrases import phrase

PUBLIC = "https://rx.example.com"
OUR_WEBHOOKS = {"VoiceUrl": f"{PUBLIC}/voice/twilio/incoming/", "VoiceMethod": "POST",
                "VoiceFallbackUrl": f"{PUBLIC}/voice/twilio/fallback/", "VoiceFallbackMethod": "POST",
                "StatusCallback": f"{PUBLIC}/voice/twilio/status/", "StatusCallbackMethod": "POST"}


@pytest.fixture
def twilio(settings):
    with TwilioStandin() as standin:
        standin.seed_fictional_inventory(per_area=5)
        settings.TWILIO_ACCOUNT_SID = standin.account_sid
        settings.TWILIO_AUTH_TOKEN = standin.auth_token
        settings.TWILIO_API_BASE_URL = standin.base_url
        settings.PUBLIC_BASE_URL = PUBLIC
        yield standin


@pytest.fixture
def numberless(alices_business):
    """Alice's business before it has a number."""
    alices_business.phone_number = ""
    alices_business.save()
    return alices_business


def call_webhook(client, standin, path: str, to: str, call_sid: str = "CA" + "7" * 32, **extra):
    params = {"AccountSid": standin.account_sid, "CallSid": call_sid, "CallStatus": "ringing", "Direction": "inbound",
              "From": "+12025550188", "To": to, "ApiVersion": "2010-04-01", **extra}
    signature = RequestValidator(standin.auth_token).compute_signature(PUBLIC + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def incoming(client, standin, to: str, **extra):
    return call_webhook(client, standin, "/voice/twilio/incoming/", to, **extra)


def claim_as(client, user, sid: str):
    client.force_login(user)
    return client.post(reverse("number_existing"), {"sid": sid})


# --- get a number ----------------------------------------------------------------------------------------------

def test_an_owner_searches_twilios_numbers_by_country_and_area_code(client, alice, numberless, twilio):
    client.force_login(alice)
    page = client.get(reverse("number_search"), {"country": "US", "area_code": "212"}).content.decode()
    assert "+12125550110" in page and "New York" in page
    assert "+14155550110" not in page  # another area code
    [search] = [r for r in twilio.requests if "AvailablePhoneNumbers" in r.path]
    assert search.path.endswith(f"/Accounts/{twilio.account_sid}/AvailablePhoneNumbers/US/Local.json")
    assert (search.query["AreaCode"], search.query["VoiceEnabled"]) == ("212", "true")


def test_an_area_code_outside_the_us_and_canada_is_a_form_error(client, alice, numberless, twilio, settings):
    settings.TWILIO_NUMBER_COUNTRIES = ["US", "GB"]
    client.force_login(alice)
    page = client.get(reverse("number_search"), {"country": "GB", "area_code": "020"}).content.decode()
    assert "only narrow the search for US and Canadian numbers" in page
    assert not twilio.requests


@pytest.mark.django_db(transaction=True)  # the webhook reads on a pool thread: committed rows only
def test_buying_a_number_points_its_webhooks_at_us_and_routes_its_calls(client, alice, numberless, twilio):
    client.force_login(alice)
    response = client.post(reverse("number_search") + "?country=US&area_code=212", {"phone_number": "+12125550111"})
    assert response.status_code == 302 and response["Location"] == reverse("settings_number")

    [purchase] = twilio.number_requests("POST")
    assert purchase.path == f"/2010-04-01/Accounts/{twilio.account_sid}/IncomingPhoneNumbers.json"
    assert purchase.form == {"PhoneNumber": "+12125550111", **OUR_WEBHOOKS}
    bought = twilio.number("+12125550111")
    numberless.refresh_from_db()
    assert (numberless.phone_number, numberless.phone_number_sid, numberless.phone_number_bought) == (
        "+12125550111", bought["sid"], True)
    assert bought["voice_url"] == f"{PUBLIC}/voice/twilio/incoming/"

    answer = incoming(client, twilio, to="+12125550111")
    assert ET.fromstring(answer.content).find("./Connect/Stream") is not None
    assert Call.objects.get().business == numberless


def test_a_number_twilio_no_longer_sells_is_a_clear_error_and_nothing_changes(client, alice, numberless, twilio):
    client.force_login(alice)
    response = client.post(reverse("number_search") + "?country=US", {"phone_number": "+13125559999"})
    assert response.status_code == 200
    assert "Twilio has just sold that number to someone else" in response.content.decode()
    numberless.refresh_from_db()
    assert numberless.phone_number == "" and numberless.phone_number_sid == ""


def test_buying_without_picking_a_number_asks_to_pick_one(client, alice, numberless, twilio):
    client.force_login(alice)
    # A real form post always carries its CSRF token, so the form is bound even with no number in it.
    response = client.post(reverse("number_search") + "?country=US", {"csrfmiddlewaretoken": "x"})
    assert response.context["buy_form"].errors == {"phone_number": ["Pick a number from the search results."]}
    assert "This field is required" not in response.content.decode()


def test_a_business_holds_at_most_one_number(client, alice, alices_business, twilio):
    client.force_login(alice)  # Alice's business already answers +14155552671
    response = client.post(reverse("number_search") + "?country=US", {"phone_number": "+12125550111"}, follow=True)
    assert numbers.ALREADY_HAS_NUMBER in response.content.decode()
    assert twilio.number_requests() == []  # nothing bought
    alices_business.refresh_from_db()
    assert alices_business.phone_number == "+14155552671"


# --- use a number the account already has ----------------------------------------------------------------------

def test_the_list_offers_only_account_numbers_no_business_holds_and_nothing_else_uses(
        client, alice, numberless, charlie, twilio):
    held_sid = twilio.add_incoming_number("+12025550143")  # Charlie's (typed in by an operator)
    twilio.add_incoming_number("+12025550177", VoiceUrl="https://crm.example.com/ivr")  # the operator's own line
    client.force_login(alice)
    page = client.get(reverse("number_existing")).content.decode()
    assert "+14155550101" in page and "+14155550102" in page
    assert "+12025550143" not in page and held_sid not in page
    assert "+12025550177" not in page


@pytest.mark.django_db(transaction=True)  # the webhook reads on a pool thread: committed rows only
def test_claiming_an_account_number_configures_its_webhooks_and_routes_its_calls(client, alice, numberless, twilio):
    sid = twilio.number("+14155550101")["sid"]
    response = claim_as(client, alice, sid)
    assert response.status_code == 302
    numberless.refresh_from_db()
    assert (numberless.phone_number, numberless.phone_number_sid, numberless.phone_number_bought) == (
        "+14155550101", sid, False)
    [update] = twilio.number_requests("POST")
    assert update.path.endswith(f"/IncomingPhoneNumbers/{sid}.json") and update.form == OUR_WEBHOOKS

    incoming(client, twilio, to="+14155550101")
    assert Call.objects.get().business == numberless


@pytest.mark.django_db(transaction=True)  # the webhook reads on a pool thread: committed rows only
def test_a_second_business_claiming_a_held_number_is_refused_without_naming_the_holder(
        client, alice, numberless, twilio):
    sid = twilio.number("+14155550101")["sid"]
    claim_as(client, alice, sid)
    requests_before = len(twilio.number_requests("POST"))
    dave = make_user("dave@rival.example")
    rival = make_business(owner=dave, name="Rival Dental")

    response = claim_as(client, dave, sid)

    page = response.content.decode()
    assert response.status_code == 200 and numbers.NOT_AVAILABLE in page
    assert "Alice" not in page and "alice@example.com" not in page
    rival.refresh_from_db()
    numberless.refresh_from_db()
    assert rival.phone_number == "" and numberless.phone_number == "+14155550101"
    assert len(twilio.number_requests("POST")) == requests_before  # the number's configuration was not touched
    incoming(client, twilio, to="+14155550101")
    assert Call.objects.get().business == numberless


def test_a_number_typed_in_by_an_operator_cannot_be_bought_or_claimed_by_another_business(client, charlie, twilio):
    # Charlie's +12025550143 was assigned in the admin; the account also lists it.
    sid = twilio.add_incoming_number("+12025550143")
    dave = make_user("dave@rival.example")
    make_business(owner=dave, name="Rival Dental")
    assert numbers.NOT_AVAILABLE in claim_as(client, dave, sid).content.decode()
    response = client.post(reverse("number_search") + "?country=US", {"phone_number": "+12025550143"})
    assert numbers.NOT_AVAILABLE in response.content.decode() and "Charlie" not in response.content.decode()
    assert twilio.number_requests("POST") == []
    assert Business.objects.get(phone_number="+12025550143").name == "Charlie Plumbing"


@pytest.mark.django_db(transaction=True)
def test_two_businesses_claiming_the_same_number_at_once_one_gets_it_the_other_a_clear_error(twilio):
    sid = twilio.number("+14155550102")["sid"]
    first = make_business(owner=make_user("one@example.com"), name="First")
    second = make_business(owner=make_user("two@example.com"), name="Second")
    twilio.latency_s = 0.2  # both look the number up at Twilio at the same time, then race to store it
    start = threading.Barrier(2)
    outcome: dict[str, str] = {}

    def claim(business):
        try:
            start.wait()
            numbers.number_claim(business=business, sid=sid)
            outcome[business.name] = "claimed"
        except numbers.NumberError as exc:
            outcome[business.name] = str(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcome.values()) == sorted(["claimed", numbers.NOT_AVAILABLE])
    assert Business.objects.filter(phone_number="+14155550102").count() == 1


def test_a_claim_twilio_cannot_configure_is_rolled_back(client, alice, numberless, twilio):
    sid = twilio.number("+14155550101")["sid"]
    client.force_login(alice)
    twilio.fail_next(status=503, code=20503, message="Service unavailable", method="POST")  # the configure
    response = client.post(reverse("number_existing"), {"sid": sid})
    assert numbers.TWILIO_UNREACHABLE in response.content.decode()
    numberless.refresh_from_db()
    assert numberless.phone_number == "" and numberless.phone_number_sid == ""


# --- release ---------------------------------------------------------------------------------------------------

def test_releasing_a_bought_number_stops_its_calls_at_once_and_returns_it_to_twilio(client, alice, numberless, twilio):
    client.force_login(alice)
    client.post(reverse("number_search") + "?country=US", {"phone_number": "+12125550112"})
    sid = twilio.number("+12125550112")["sid"]

    response = client.post(reverse("number_release"))

    assert response.status_code == 302
    numberless.refresh_from_db()
    assert (numberless.phone_number, numberless.phone_number_sid) == ("", "")
    [release] = twilio.number_requests("DELETE")
    assert release.path.endswith(f"/IncomingPhoneNumbers/{sid}.json") and release.status == 204
    assert twilio.number("+12125550112") is None
    answer = ET.fromstring(incoming(client, twilio, to="+12125550112").content)
    assert "not connected" in answer.find("Say").text and answer.find("Hangup") is not None
    assert not Call.objects.exists()


def test_releasing_a_claimed_number_keeps_it_in_the_account_unhooked_and_claimable(client, alice, numberless, twilio):
    sid = twilio.number("+14155550101")["sid"]
    claim_as(client, alice, sid)

    client.post(reverse("number_release"))

    numberless.refresh_from_db()
    assert numberless.phone_number == ""
    assert twilio.number_requests("DELETE") == []
    kept = twilio.number("+14155550101")
    assert (kept["voice_url"], kept["voice_fallback_url"], kept["status_callback"]) == ("", "", "")
    assert "+14155550101" in client.get(reverse("number_existing")).content.decode()
    answer = ET.fromstring(incoming(client, twilio, to="+14155550101").content)
    assert "not connected" in answer.find("Say").text


def test_a_release_twilio_cannot_hear_still_stops_the_calls(client, alice, numberless, twilio):
    claim_as(client, alice, twilio.number("+14155550101")["sid"])
    twilio.fail_next(status=500, code=20500)
    response = client.post(reverse("number_release"), follow=True)
    assert "Twilio could not be told just now" in response.content.decode()
    numberless.refresh_from_db()
    assert numberless.phone_number == ""


def test_one_business_cannot_release_another_business_number(client, alice, numberless, charlie, twilio):
    sid = twilio.number("+14155550101")["sid"]
    claim_as(client, alice, sid)
    client.force_login(charlie)
    client.post(reverse("number_release"), {"sid": sid, "business": numberless.pk})
    numberless.refresh_from_db()
    assert (numberless.phone_number, numberless.phone_number_sid) == ("+14155550101", sid)
    assert twilio.number("+14155550101")["voice_url"] == f"{PUBLIC}/voice/twilio/incoming/"
    assert Business.objects.get(name="Charlie Plumbing").phone_number == ""  # Charlie released only his own


# --- who may ---------------------------------------------------------------------------------------------------

def test_staff_cannot_search_buy_claim_or_release(client, alice, bob, alices_business, twilio):
    client.force_login(bob)
    assert client.get(reverse("number_search"), {"country": "US"}).status_code == 403
    assert client.post(reverse("number_search"), {"phone_number": "+12125550111"}).status_code == 403
    assert client.post(reverse("number_existing"), {"sid": twilio.number("+14155550101")["sid"]}).status_code == 403
    assert client.post(reverse("number_release")).status_code == 403
    assert twilio.requests == []
    alices_business.refresh_from_db()
    assert alices_business.phone_number == "+14155552671"
    page = client.get(reverse("settings_number")).content.decode()
    assert "+14155552671" in page and "Only owners can change the phone number" in page


def test_without_twilio_credentials_the_page_says_so_and_offers_nothing(client, alice, numberless, settings):
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    client.force_login(alice)
    assert "not connected to Twilio" in client.get(reverse("settings_number")).content.decode()
    assert client.get(reverse("number_search"), {"country": "US"}).status_code == 404


# --- the fallback webhook --------------------------------------------------------------------------------------

def test_the_fallback_webhook_refuses_an_unsigned_or_forged_request(client, alices_business, twilio):
    params = {"CallSid": "CA" + "7" * 32, "To": "+14155552671", "From": "+12025550188", "ErrorCode": "11200"}
    assert client.post("/voice/twilio/fallback/", params).status_code == 403
    forged = RequestValidator("not-the-auth-token").compute_signature(PUBLIC + "/voice/twilio/fallback/", params)
    assert client.post("/voice/twilio/fallback/", params, HTTP_X_TWILIO_SIGNATURE=forged).status_code == 403


def test_the_fallback_forwards_to_the_transfer_number_when_the_business_chose_transfers(client, alices_business,
                                                                                          twilio):
    alices_business.transfer_number = "+14155559876"
    alices_business.when_unavailable = "transfer"
    alices_business.save()
    response = call_webhook(client, twilio, "/voice/twilio/fallback/", "+14155552671", ErrorCode="11200",
                            ErrorUrl=f"{PUBLIC}/voice/twilio/incoming/")
    root = ET.fromstring(response.content)
    assert response.status_code == 200 and root.find("Say").text == phrase("unavailable_transfer", "en")
    assert root.find("./Dial/Number").text == "+14155559876"


def test_the_fallback_takes_a_voicemail_when_the_business_chose_voicemail(client, alices_business, twilio):
    alices_business.transfer_number = "+14155559876"
    alices_business.save()  # when_unavailable stays "voicemail", the default
    response = call_webhook(client, twilio, "/voice/twilio/fallback/", "+14155552671", ErrorCode="11200")
    root = ET.fromstring(response.content)
    assert root.find("Say").text == phrase("voicemail_prompt", "en")
    record = root.find("Record")
    assert record is not None and root.find("Dial") is None
    assert record.get("recordingStatusCallback").startswith(PUBLIC + "/voice/twilio/voicemail/recording/?")


def test_the_fallback_takes_a_voicemail_when_transfers_are_chosen_but_there_is_no_number(client, alices_business,
                                                                                         twilio):
    alices_business.when_unavailable = "transfer"
    alices_business.save()
    response = call_webhook(client, twilio, "/voice/twilio/fallback/", "+14155552671", ErrorCode="11205")
    root = ET.fromstring(response.content)
    assert root.find("Record") is not None and root.find("Dial") is None


def test_the_fallback_speaks_the_business_language(client, alices_business, twilio):
    alices_business.language = "es"
    alices_business.save()
    response = call_webhook(client, twilio, "/voice/twilio/fallback/", "+14155552671", ErrorCode="11200")
    say = ET.fromstring(response.content).find("Say")
    assert say.text == phrase("voicemail_prompt", "es") and say.get("language") == "es-ES"


def test_the_number_page_shows_only_the_members_own_number(client, alices_business, charlie, twilio):
    client.force_login(charlie)
    page = client.get(reverse("settings_number")).content.decode()
    assert "+12025550143" in page
    assert "+14155552671" not in page and "Alice Dental" not in page


def test_operators_can_still_assign_any_number_in_the_admin(client, alices_business):
    operator = make_user("ops@example.com")
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client.force_login(operator)
    page = client.get(reverse("admin:accounts_business_change", args=[alices_business.pk])).content.decode()
    assert 'name="phone_number"' in page and 'name="phone_number_sid"' in page
