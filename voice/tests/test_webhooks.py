"""Twilio's webhooks: signed with twilio's own RequestValidator, checked against PUBLIC_BASE_URL."""

import time
import xml.etree.ElementTree as ET

import pytest
from django.core import signing
from twilio.request_validator import RequestValidator

from calls.models import Call
from voice.stream_tokens import SALT, StreamTokenError, issue_stream_token, redeem_stream_token

# The incoming-call webhook does its database work on a pool thread, with a connection of its own: it sees only
# committed rows, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

AUTH_TOKEN = "test-twilio-auth-token"
ACCOUNT_SID = "AC" + "a" * 32


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.PUBLIC_BASE_URL = "https://rx.example.com"


def incoming_params(to="+14155552671", call_sid="CA" + "1" * 32, **over):
    params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": call_sid, "CallStatus": "ringing",
              "Direction": "inbound", "From": "+12025550143", "To": to, "Caller": "+12025550143", "Called": to}
    params.update(over)
    return params


def post_signed(client, path, params, *, token=AUTH_TOKEN, url_base="https://rx.example.com"):
    signature = RequestValidator(token).compute_signature(url_base + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)


def test_incoming_call_answers_with_a_media_stream_carrying_call_id_and_token(client, alices_business):
    response = post_signed(client, "/voice/twilio/incoming/", incoming_params())
    assert response.status_code == 200 and response["Content-Type"].startswith("text/xml")
    stream = ET.fromstring(response.content).find("./Connect/Stream")
    assert stream.get("url") == "wss://rx.example.com/ws/twilio/media/"
    params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    call = Call.objects.get()
    assert params["call_id"] == str(call.id) and params["token"]
    assert (call.business, call.status, call.from_number, call.channel) == (alices_business, "ringing", "+12025550143", "twilio")


def test_a_stream_the_server_closes_is_followed_by_an_apology_in_the_business_language(client, alices_business):
    from voice.phrases import PHRASES

    alices_business.language = "de"
    alices_business.save()
    root = ET.fromstring(post_signed(client, "/voice/twilio/incoming/", incoming_params()).content)
    # Twilio runs what follows <Connect> only when our server closes the socket (a stream refused during a
    # deploy's drain, a protocol error); a call the agent ends or transfers never gets there.
    assert [child.tag for child in root] == ["Connect", "Say", "Hangup"]
    assert root.find("Say").text == PHRASES["unavailable"]["de"] and root.find("Say").get("language") == "de-DE"


def test_a_retried_incoming_webhook_does_not_create_a_second_call(client, alices_business):
    post_signed(client, "/voice/twilio/incoming/", incoming_params())
    post_signed(client, "/voice/twilio/incoming/", incoming_params())
    assert Call.objects.count() == 1


def test_an_unsigned_incoming_webhook_is_refused_and_creates_nothing(client, alices_business):
    response = client.post("/voice/twilio/incoming/", incoming_params())
    assert response.status_code == 403
    assert not Call.objects.exists()


def test_a_webhook_signed_with_another_token_is_refused(client, alices_business):
    response = post_signed(client, "/voice/twilio/incoming/", incoming_params(), token="someone-elses-token")
    assert response.status_code == 403
    assert not Call.objects.exists()


def test_the_signature_is_checked_against_the_public_url_not_the_host_header(client, alices_business):
    # Signed for the address the request actually reached (http://testserver): Twilio never signs that.
    response = post_signed(client, "/voice/twilio/incoming/", incoming_params(), url_base="http://testserver")
    assert response.status_code == 403


def test_a_tampered_parameter_breaks_the_signature(client, alices_business):
    params = incoming_params()
    signature = RequestValidator(AUTH_TOKEN).compute_signature("https://rx.example.com/voice/twilio/incoming/", params)
    response = client.post("/voice/twilio/incoming/", {**params, "To": "+12025550143"},
                           HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


def test_a_call_to_an_unknown_number_hears_a_polite_message_and_is_hung_up(client, alices_business):
    response = post_signed(client, "/voice/twilio/incoming/", incoming_params(to="+13125550199"))
    root = ET.fromstring(response.content)
    assert "not connected" in root.find("Say").text
    assert root.find("Hangup") is not None
    assert not Call.objects.exists()


def make_call(business, sid="CA" + "2" * 32):
    return Call.objects.create(business=business, twilio_call_sid=sid, from_number="+12025550143")


def test_a_stream_token_is_redeemed_once(alices_business):
    call = make_call(alices_business)
    token = issue_stream_token(call)
    grant = redeem_stream_token(token, call_id=str(call.id), call_sid=call.twilio_call_sid)
    assert (grant.call_id, grant.business_id) == (call.id, alices_business.id)
    with pytest.raises(StreamTokenError, match="already used"):
        redeem_stream_token(token, call_id=str(call.id), call_sid=call.twilio_call_sid)
    call.refresh_from_db()
    assert call.status == "in_progress" and call.stream_started_at is not None


def test_an_expired_stream_token_is_refused(alices_business, settings):
    call = make_call(alices_business)
    token = issue_stream_token(call)
    settings.STREAM_TOKEN_MAX_AGE_SECONDS = 0
    time.sleep(1.1)
    with pytest.raises(StreamTokenError, match="expired"):
        redeem_stream_token(token, call_id=str(call.id), call_sid=call.twilio_call_sid)


def test_a_forged_stream_token_is_refused(alices_business):
    call = make_call(alices_business)
    forged = signing.dumps({"call": call.id, "sid": call.twilio_call_sid}, key="not-our-secret-key-" * 3, salt=SALT)
    with pytest.raises(StreamTokenError, match="not valid"):
        redeem_stream_token(forged, call_id=str(call.id), call_sid=call.twilio_call_sid)


def test_a_token_for_another_call_is_refused(alices_business):
    one, other = make_call(alices_business), make_call(alices_business, sid="CA" + "3" * 32)
    with pytest.raises(StreamTokenError, match="another call"):
        redeem_stream_token(issue_stream_token(one), call_id=str(other.id), call_sid=other.twilio_call_sid)


def status_params(call_sid, status, duration=None):
    params = {"AccountSid": ACCOUNT_SID, "CallSid": call_sid, "CallStatus": status, "ApiVersion": "2010-04-01"}
    if duration is not None:
        params["CallDuration"] = duration
    return params


def test_status_callback_fails_a_call_whose_stream_never_connected(client, alices_business):
    call = make_call(alices_business)
    assert post_signed(client, "/voice/twilio/status/", status_params(call.twilio_call_sid, "no-answer")).status_code == 204
    call.refresh_from_db()
    assert (call.status, call.end_reason) == ("failed", "twilio_no_answer") and call.finalized_at


def test_status_callback_records_twilios_duration_and_is_idempotent(client, alices_business):
    call = make_call(alices_business)
    redeem_stream_token(issue_stream_token(call), call_id=str(call.id), call_sid=call.twilio_call_sid)
    for _ in range(2):
        post_signed(client, "/voice/twilio/status/", status_params(call.twilio_call_sid, "completed", "42"))
    call.refresh_from_db()
    assert call.duration_seconds == 42
    assert call.finalized_at is None  # the session finalises a call that had a stream, with its usage


def test_status_callback_for_an_unknown_call_is_acknowledged(client, db):
    assert post_signed(client, "/voice/twilio/status/", status_params("CA" + "9" * 32, "completed")).status_code == 204


def test_an_unsigned_status_callback_changes_nothing(client, alices_business):
    call = make_call(alices_business)
    assert client.post("/voice/twilio/status/", status_params(call.twilio_call_sid, "failed")).status_code == 403
    call.refresh_from_db()
    assert call.finalized_at is None
