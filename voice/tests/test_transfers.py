"""Transfers to a person: every <Dial> is capped and reports back, a disallowed number is never dialled, a
forward nobody answers ends with a message for the team, and fixed sentences are spoken in the business's
language. Webhooks are signed with twilio's own RequestValidator."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from billing.models import UsageRecord
from billing.services.account import account_for_business
from billing.services.usage import usage_sweep
from calls.models import Call, CallEvent, Message
from tests.factories import make_business, make_user
from voice import twilio_api
from voice.agent import load_agent_profile
from voice.phrases import LANGUAGES, PHRASES, SAY_LANGUAGE, SAY_VOICE

# The incoming-call webhook does its database work on a pool thread, with a connection of its own: it sees only
# committed rows, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH_TOKEN = "transfer-test-twilio-token"
BASE = "https://rx.example.com"
TRANSFER_NUMBER = "+12025550100"
CALL_SID = "CA" + "7" * 32


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.PUBLIC_BASE_URL = BASE
    settings.TRANSFER_ALLOWED_COUNTRIES = []
    settings.TRANSFER_TIME_LIMIT_MINUTES = 30


def post_signed(client, path, params, *, token=AUTH_TOKEN):
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def ring(client, business, *, sid=CALL_SID, caller="+12025550143"):
    return post_signed(client, "/voice/twilio/incoming/", {
        "CallSid": sid, "CallStatus": "ringing", "From": caller, "To": business.phone_number,
        "Direction": "inbound", "AccountSid": "AC" + "a" * 32})


def dial_result(client, *, sid=CALL_SID, status="no-answer", duration="0", token=AUTH_TOKEN):
    params = {"AccountSid": "AC" + "a" * 32, "CallSid": sid, "CallStatus": "in-progress",
              "DialCallStatus": status, "DialCallSid": "CA" + "8" * 32, "DialCallDuration": duration}
    return post_signed(client, "/voice/twilio/dial-result/", params, token=token)


def refuse_for_billing(business):
    """Use up the free trial, so the next call is refused and forwarded."""
    account = account_for_business(business)
    account.trial_minutes = 0
    account.save()


def business_with_transfer(owner_email="owner@example.com", *, language="en", transfer_number=TRANSFER_NUMBER,
                           phone_number="+14155552671"):
    return make_business(owner=make_user(owner_email), name="Harbor Dental", phone_number=phone_number,
                         transfer_number=transfer_number, language=language)


def dials(response) -> list[ET.Element]:
    return ET.fromstring(response.content).findall("Dial")


# --- every <Dial> is capped and reports back ------------------------------------------------------------------

def assert_capped_and_reported(dial: ET.Element) -> None:
    assert dial.get("timeLimit") == str(30 * 60)
    assert dial.get("action") == BASE + "/voice/twilio/dial-result/"
    assert dial.get("method") == "POST"


def test_the_billing_forward_dial_has_a_time_limit_and_an_action(client, db):
    business = business_with_transfer()
    refuse_for_billing(business)
    [dial] = dials(ring(client, business))
    assert dial.find("Number").text == TRANSFER_NUMBER
    assert_capped_and_reported(dial)


def test_the_agent_transfer_dial_has_a_time_limit_and_an_action():
    [dial] = ET.fromstring(twilio_api.transfer_twiml(TRANSFER_NUMBER)).findall("Dial")
    assert_capped_and_reported(dial)


def test_the_fallback_forward_dial_has_a_time_limit_and_an_action():
    twiml = twilio_api.say_twiml("Sorry.", language="en", transfer_to=TRANSFER_NUMBER)
    [dial] = ET.fromstring(twiml).findall("Dial")
    assert_capped_and_reported(dial)


def test_the_time_limit_follows_the_setting(settings):
    settings.TRANSFER_TIME_LIMIT_MINUTES = 5
    assert ET.fromstring(twilio_api.transfer_twiml(TRANSFER_NUMBER)).find("Dial").get("timeLimit") == "300"


# --- a disallowed number already in the database is never dialled ---------------------------------------------

@pytest.mark.parametrize("stored", ["+19005550123", "+442079460958", "+18765550123"],
                         ids=["premium-rate", "other-country", "jamaica-behind-+1"])
def test_a_refused_call_never_dials_a_disallowed_stored_number(client, db, stored):
    business = business_with_transfer()
    # Saved before the rules existed (or by an operator in the admin): the form never saw it.
    type(business).objects.filter(pk=business.pk).update(transfer_number=stored)
    refuse_for_billing(business)
    response = ring(client, business)
    root = ET.fromstring(response.content)
    assert root.find("Dial") is None and root.find("Hangup") is not None
    assert "can't take your call" in root.find("Say").text
    assert Call.objects.get(twilio_call_sid=CALL_SID).forward_status == ""


def test_the_settings_list_lets_a_refused_call_dial_a_listed_country(client, db, settings):
    settings.TRANSFER_ALLOWED_COUNTRIES = ["US", "GB"]
    business = business_with_transfer(transfer_number="+442079460958")
    refuse_for_billing(business)
    [dial] = dials(ring(client, business))
    assert dial.find("Number").text == "+442079460958"


# --- the <Dial> action callback -----------------------------------------------------------------------------

def forwarded_call(client, business, **ring_kwargs) -> Call:
    refuse_for_billing(business)
    assert dials(ring(client, business, **ring_kwargs))
    return Call.objects.get(twilio_call_sid=ring_kwargs.get("sid", CALL_SID))


@pytest.mark.parametrize("status", ["no-answer", "busy", "failed", "canceled"])
def test_a_forward_nobody_answered_says_a_message_was_taken_and_leaves_one(client, db, status):
    business = business_with_transfer()
    call = forwarded_call(client, business)
    response = dial_result(client, status=status)
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.find("Say").text == PHRASES["transfer_failed_message_taken"]["en"]
    assert root.find("Hangup") is not None and root.find("Dial") is None
    message = Message.objects.get(business=business)
    assert (message.call_id, message.callback_number, message.status) == (call.id, "+12025550143", "open")
    assert TRANSFER_NUMBER in message.body and "call them back" in message.body
    call.refresh_from_db()
    assert call.forward_status == status
    outcome = CallEvent.objects.get(call=call, kind="transfer")
    assert outcome.payload["ok"] is False and "message was left" in outcome.payload["error"]


@pytest.mark.parametrize(("language", "say_language"), [("es", "es-ES"), ("de", "de-DE"), ("nl", "nl-NL")])
def test_a_failed_forward_is_explained_in_the_business_language(client, db, language, say_language):
    business = business_with_transfer(language=language)
    forwarded_call(client, business)
    say = ET.fromstring(dial_result(client, status="busy").content).find("Say")
    assert say.text == PHRASES["transfer_failed_message_taken"][language]
    assert (say.get("language"), say.get("voice")) == (say_language, SAY_VOICE[language])
    assert Message.objects.filter(business=business).count() == 1


def test_a_repeated_dial_report_leaves_one_message_and_says_the_same(client, db):
    business = business_with_transfer()
    forwarded_call(client, business)
    first = dial_result(client, status="no-answer")
    second = dial_result(client, status="no-answer")
    assert first.content == second.content
    assert Message.objects.filter(business=business).count() == 1


def test_a_withheld_caller_is_not_promised_a_call_back(client, db):
    business = business_with_transfer()
    forwarded_call(client, business, caller="anonymous")
    root = ET.fromstring(dial_result(client, status="no-answer").content)
    assert root.find("Say").text == PHRASES["transfer_failed"]["en"] and root.find("Hangup") is not None
    assert not Message.objects.exists()


def test_an_answered_forward_hangs_up_cleanly(client, db):
    business = business_with_transfer()
    forwarded_call(client, business)
    root = ET.fromstring(dial_result(client, status="completed", duration="42").content)
    assert [child.tag for child in root] == ["Hangup"]
    assert not Message.objects.exists()


def test_a_dial_report_with_a_forged_signature_is_refused_and_changes_nothing(client, db):
    business = business_with_transfer()
    call = forwarded_call(client, business)
    response = dial_result(client, status="no-answer", token="not-the-auth-token")
    assert response.status_code == 403
    assert not Message.objects.exists()
    call.refresh_from_db()
    assert call.forward_status == "dialing"


def test_an_unsigned_dial_report_is_refused(client, db):
    business = business_with_transfer()
    forwarded_call(client, business)
    response = client.post("/voice/twilio/dial-result/", {"CallSid": CALL_SID, "DialCallStatus": "no-answer"})
    assert response.status_code == 403 and not Message.objects.exists()


def test_a_dial_report_for_an_unknown_call_just_hangs_up(client, db):
    root = ET.fromstring(dial_result(client, sid="CA" + "9" * 32).content)
    assert [child.tag for child in root] == ["Hangup"]


# --- forwarded minutes are billed, once ------------------------------------------------------------------------

def usage_of(call: Call) -> UsageRecord:
    return UsageRecord.objects.get(call=call)


def test_forwarded_minutes_of_a_refused_call_are_recorded_once_when_the_report_comes_twice(client, db):
    business = business_with_transfer()
    call = forwarded_call(client, business)
    assert not UsageRecord.objects.filter(call=call).exists()  # waiting for the forward's outcome
    dial_result(client, status="completed", duration="95")
    dial_result(client, status="completed", duration="95")
    record = usage_of(call)
    assert (record.seconds, record.minutes, record.external_id) == (95, 2, f"call_{call.id}")
    assert UsageRecord.objects.count() == 1
    call.refresh_from_db()
    assert (call.forward_status, call.forwarded_seconds) == ("completed", 95)


def test_the_status_callback_does_not_bill_a_forwarded_call_before_the_dial_report(client, db):
    """Twilio's status callback can arrive first; billing must still include the forward."""
    business = business_with_transfer()
    call = forwarded_call(client, business)
    status = {"AccountSid": "AC" + "a" * 32, "CallSid": CALL_SID, "CallStatus": "completed", "CallDuration": "130"}
    assert post_signed(client, "/voice/twilio/status/", status).status_code == 204
    assert not UsageRecord.objects.filter(call=call).exists()
    dial_result(client, status="completed", duration="120")
    assert usage_of(call).seconds == 120


def test_an_agent_transfer_bills_the_receptionist_time_plus_the_forward(client, db):
    """A call the receptionist answered, then transferred: its part is billed, and the forward's, not Twilio's
    whole-call duration on top (which already covers the forward)."""
    business = business_with_transfer()
    answered = timezone.now() - dt.timedelta(minutes=5)
    call = Call.objects.create(business=business, twilio_call_sid=CALL_SID, from_number="+12025550143",
                               to_number=business.phone_number, status="completed", end_reason="transferred",
                               answered_at=answered, stream_started_at=answered,
                               ended_at=answered + dt.timedelta(seconds=70), finalized_at=answered,
                               duration_seconds=70, forwarded_to=TRANSFER_NUMBER, forward_status="dialing")
    status = {"AccountSid": "AC" + "a" * 32, "CallSid": CALL_SID, "CallStatus": "completed", "CallDuration": "300"}
    post_signed(client, "/voice/twilio/status/", status)
    assert not UsageRecord.objects.filter(call=call).exists()
    dial_result(client, status="completed", duration="200")
    record = usage_of(call)
    assert (record.seconds, record.minutes) == (270, 5)


# --- fixed sentences in the business's language ---------------------------------------------------------------

def test_a_spanish_business_refuses_a_call_in_spanish(client, db):
    business = business_with_transfer(language="es", transfer_number="")
    refuse_for_billing(business)
    say = ET.fromstring(ring(client, business).content).find("Say")
    assert say.text == PHRASES["billing_hangup"]["es"]
    assert say.text.startswith("Gracias por su llamada")
    assert say.get("language") == "es-ES" and say.get("voice") == "Polly.Lucia-Neural"


def test_a_spanish_business_forwarding_a_refused_call_says_so_in_spanish(client, db):
    business = business_with_transfer(language="es")
    refuse_for_billing(business)
    say = ET.fromstring(ring(client, business).content).find("Say")
    assert say.text == PHRASES["billing_forward"]["es"] and say.get("language") == "es-ES"


def test_an_unknown_number_hears_the_operator_default_language(client, db):
    root = ET.fromstring(post_signed(client, "/voice/twilio/incoming/", {
        "CallSid": CALL_SID, "From": "+12025550143", "To": "+13125550199"}).content)
    assert root.find("Say").text == PHRASES["unknown_number"]["en"]
    assert root.find("Say").get("language") == "en-US"


def test_every_fixed_phrase_exists_in_every_business_language():
    for key, translations in PHRASES.items():
        assert set(translations) == set(LANGUAGES), key
        assert all(text.strip() for text in translations.values()), key
    assert set(SAY_LANGUAGE) == set(SAY_VOICE) == set(LANGUAGES)


def test_the_agent_is_not_offered_a_transfer_to_a_disallowed_stored_number(db):
    business = business_with_transfer()
    type(business).objects.filter(pk=business.pk).update(transfer_number="+19005550123")
    profile = load_agent_profile(business.id)
    assert "There is no one to transfer to" in profile.instructions
    assert "transfer_to_human." not in profile.instructions


def test_the_default_greeting_is_in_the_business_language(db):
    business = business_with_transfer(language="it")
    assert load_agent_profile(business.id).greeting == "Grazie per aver chiamato Harbor Dental. Come posso aiutarla?"


def test_the_sweep_waits_for_a_forward_then_bills_it_without_its_minutes_once_the_time_limit_passed(client, db):
    business = business_with_transfer()
    call = forwarded_call(client, business)
    finalized = call.finalized_at
    assert usage_sweep(now=finalized + dt.timedelta(minutes=10))["recorded"] == 0  # the forward may still run
    assert not UsageRecord.objects.filter(call=call).exists()
    usage_sweep(now=finalized + dt.timedelta(minutes=40))  # past the 30-minute <Dial> limit: the report is lost
    assert usage_of(call).seconds == 0
