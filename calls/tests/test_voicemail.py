"""Voicemail, in one process: Twilio's callbacks (signed with Twilio's RequestValidator), the message it leaves,
the summary step that waits for it and transcribes it (OpenAI and Twilio stand-ins at the network boundary), the
email, and playback through our server to members only."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from twilio.request_validator import RequestValidator

from calls.models import Call, CallEvent, Message, TranscriptEntry
from calls.postcall.queueing import TransientError
from calls.postcall.summary import call_summarize, call_summary_attempt
from calls.selectors.timeline import call_detail
from calls.services.lifecycle import call_finalize
from calls.services.voicemail import call_voicemail_start, voicemail_recorded
from calls.tests.test_postcall import eager, settle, summary_standin  # noqa: F401 - fixtures
from tests.factories import add_member, make_business, make_call, make_user, make_wav
from voice.offline.twilio import TwilioStandin
from voice.phrases import phrase

PUBLIC = "https://receptionist.example"
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "voicemail-test-auth-token"
CALLER = "+12025550188"


@pytest.fixture
def twilio(settings):
    server = TwilioStandin(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    server.start_in_thread()
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, AUTH_TOKEN
    settings.TWILIO_API_BASE_URL = server.base_url
    yield server
    server.stop()


@pytest.fixture
def business(transactional_db):
    return make_business(owner=make_user("owner@harbor.example"), name="Harbor Dental",
                         phone_number="+14155550100", notification_email="desk@harbor.example")


def voicemail_call(business, sid: str = "CA" + "1" * 32, **fields) -> Call:
    """A call whose session fell back to voicemail and ended: <Record> emitted, the recording not in yet."""
    call = make_call(business, from_number=CALLER, twilio_call_sid=sid, status=Call.Status.IN_PROGRESS,
                     answered_at=timezone.now(), stream_started_at=timezone.now(), **fields)
    call_voicemail_start(twilio_call_sid=sid)
    return call


def post_signed(client, path: str, params: dict, query: str = ""):
    url = path + (f"?{query}" if query else "")
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + url, params)
    return client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature)


RECORDING_PATH = "/voice/twilio/voicemail/recording/"


def test_a_forged_recording_callback_is_refused_and_stores_nothing(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    params = twilio.recording_callback_params(sid)
    forged = RequestValidator("not-the-token").compute_signature(PUBLIC + RECORDING_PATH, params)
    assert client.post(RECORDING_PATH, params, HTTP_X_TWILIO_SIGNATURE=forged).status_code == 403
    assert client.post(RECORDING_PATH, params).status_code == 403
    assert not Message.objects.exists()


def test_a_recording_callback_with_a_bad_recording_sid_is_a_clear_400(client, business, twilio):
    call = voicemail_call(business)
    params = {"CallSid": call.twilio_call_sid, "RecordingSid": "../../etc", "RecordingStatus": "completed",
              "RecordingDuration": "4", "AccountSid": ACCOUNT_SID}
    response = post_signed(client, RECORDING_PATH, params)
    assert response.status_code == 400 and b"RecordingSid" in response.content


def test_a_recording_becomes_one_message_with_the_callers_number(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav(), duration=9)
    params = twilio.recording_callback_params(sid)
    assert post_signed(client, RECORDING_PATH, params).status_code == 204
    assert post_signed(client, RECORDING_PATH, params).status_code == 204  # Twilio retried: nothing doubles
    message = Message.objects.get()
    assert (message.call_id, message.recording_seconds, message.callback_number) == (call.id, 9, CALLER)
    assert message.customer.phone == CALLER and message.transcribed_at is None
    call.refresh_from_db()
    assert call.voicemail_status == "received"
    assert CallEvent.objects.filter(call=call, kind="voicemail").count() == 1


def test_a_voicemail_from_a_withheld_number_is_kept_without_a_callback_number(client, business, twilio):
    call = voicemail_call(business)
    Call.objects.filter(id=call.id).update(from_number="anonymous")
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    assert post_signed(client, RECORDING_PATH, twilio.recording_callback_params(sid)).status_code == 204
    message = Message.objects.get()
    assert message.callback_number == "" and message.customer is None and message.name == "Unknown caller"


def test_a_caller_who_left_nothing_is_recorded_as_such_and_leaves_no_message(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, b"")
    assert post_signed(client, RECORDING_PATH, twilio.recording_callback_params(sid, status="absent")).status_code == 204
    call.refresh_from_db()
    assert call.voicemail_status == "absent" and not Message.objects.exists()
    assert CallEvent.objects.get(call=call, kind="voicemail").payload["recorded"] is False


def test_a_voicemail_for_a_call_our_server_never_saw_records_the_call_from_the_signed_numbers(client, business,
                                                                                                twilio):
    # The web process was down: Twilio's fallback URL took the voicemail; the recording arrives once it is back.
    sid = twilio.add_recording("CA" + "9" * 32, make_wav(), duration=5)
    query = f"to=%2B14155550100&from=%2B{CALLER[1:]}"
    assert post_signed(client, RECORDING_PATH, twilio.recording_callback_params(sid), query).status_code == 204
    call = Call.objects.get(twilio_call_sid="CA" + "9" * 32)
    assert (call.business_id, call.from_number, call.status, call.end_reason) == (
        business.id, CALLER, "failed", "twilio_fallback")
    assert Message.objects.get().call_id == call.id


def test_the_fallback_url_records_the_call_and_the_step_it_took(client, business, twilio):
    params = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "8" * 32, "From": CALLER, "To": business.phone_number,
              "ErrorCode": "11200", "ErrorUrl": PUBLIC + "/voice/twilio/incoming/"}
    response = post_signed(client, "/voice/twilio/fallback/", params)
    assert ET.fromstring(response.content).find("Record") is not None
    call = Call.objects.get(twilio_call_sid="CA" + "8" * 32)
    assert (call.status, call.voicemail_status) == ("failed", "recording")
    fallback = CallEvent.objects.get(call=call, kind="fallback").payload
    assert fallback["action"] == "voicemail" and "11200" in fallback["cause"]


def test_the_voicemail_action_thanks_the_caller_in_the_business_language(client, business, twilio):
    response = post_signed(client, "/voice/twilio/voicemail/done/", {"CallSid": "CA" + "1" * 32,
                                                                     "RecordingDuration": "5"}, "lang=de")
    root = ET.fromstring(response.content)
    assert root.find("Say").text == phrase("voicemail_thanks", "de") and root.find("Hangup") is not None


def test_the_summary_waits_for_the_recording_then_for_no_longer_than_the_wait(business, twilio, eager, settings):
    call = voicemail_call(business)
    call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="upstream_failed")
    settle()
    call.refresh_from_db()
    assert call.summarized_at is None and call.summary_attempts == 0
    Call.objects.filter(id=call.id).update(
        voicemail_started_at=timezone.now() - dt.timedelta(seconds=settings.VOICEMAIL_WAIT_SECONDS + 1))
    call_summary_attempt(call_id=call.id)
    call.refresh_from_db()
    assert call.summarized_at is not None


def test_the_summary_transcribes_the_voicemail_and_the_email_carries_it(business, twilio, eager):
    eager.transcription_text = "It's Ann Lee, please call me about my crown."
    call = voicemail_call(business)
    call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="upstream_failed")
    sid = twilio.add_recording(call.twilio_call_sid, make_wav(), duration=6)
    voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid, recording_status="completed",
                       duration="6", to_number="", from_number="")
    settle()
    message = Message.objects.get()
    assert message.body == "Voicemail (6 s): It's Ann Lee, please call me about my crown."
    assert eager.transcription_requests[-1]["language"] == "en"
    assert TranscriptEntry.objects.get(call=call).text == "[voicemail] It's Ann Lee, please call me about my crown."
    [email] = mail.outbox
    assert "The caller left a voicemail (6 s), from +12025550188" in email.body
    assert "It's Ann Lee, please call me about my crown." in email.body


def test_a_transcription_model_that_is_down_is_retried_and_the_message_waits(business, twilio, settings):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid, recording_status="completed",
                       duration="6", to_number="", from_number="")
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.OPENAI_API_KEY = "sk-test"
    with pytest.raises(TransientError):
        call_summarize(call_id=call.id)
    assert Message.objects.get().transcribed_at is None


def test_a_recording_twilio_no_longer_has_is_said_in_the_message_and_the_summary_goes_on(business, twilio, eager):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid, recording_status="completed",
                       duration="6", to_number="", from_number="")
    twilio.delete_recording(sid)
    call_finalize(call_id=call.id, status=Call.Status.FAILED, end_reason="upstream_failed")
    settle()
    assert Message.objects.get().body == "Voicemail (6 s): the recording is no longer available at Twilio."
    assert Call.objects.get(id=call.id).summarized_at is not None


def test_staff_play_a_voicemail_through_our_server(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav(0.5))
    message = voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid,
                                 recording_status="completed", duration="1", to_number="", from_number="")
    staff = make_user("desk@harbor.example")
    add_member(business, staff)
    client.force_login(staff)
    response = client.get(reverse("voicemail_audio", kwargs={"message_id": message.id}))
    assert response.status_code == 200 and response.content == make_wav(0.5)
    fetched = [r for r in twilio.requests if "/Recordings/" in r.path]
    assert fetched[-1].auth_ok and fetched[-1].path.endswith(f"/Recordings/{sid}.wav")


def test_a_voicemail_is_not_played_to_someone_signed_out(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    message = voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid,
                                 recording_status="completed", duration="1", to_number="", from_number="")
    response = client.get(reverse("voicemail_audio", kwargs={"message_id": message.id}))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not [r for r in twilio.requests if "/Recordings/" in r.path]


def test_a_message_without_a_recording_has_nothing_to_play(client, business, twilio):
    message = Message.objects.create(business=business, name="Ann", callback_number=CALLER, body="Call me")
    client.force_login(business.memberships.get().user)
    assert client.get(reverse("voicemail_audio", kwargs={"message_id": message.id})).status_code == 404


def test_twilio_being_away_gives_a_clear_502_not_a_broken_player(client, business, twilio):
    call = voicemail_call(business)
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    message = voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid,
                                 recording_status="completed", duration="1", to_number="", from_number="")
    twilio.fail_next(500, 20500)
    client.force_login(business.memberships.get().user)
    response = client.get(reverse("voicemail_audio", kwargs={"message_id": message.id}))
    assert response.status_code == 502 and b"Try again" in response.content


def test_the_call_page_shows_the_fallback_the_voicemail_and_its_player(client, business, twilio):
    call = voicemail_call(business)
    CallEvent.objects.create(call=call, order=90, offset_ms=1000, kind="fallback",
                             payload={"action": "voicemail", "ok": True, "cause": "OpenAI dropped"})
    sid = twilio.add_recording(call.twilio_call_sid, make_wav())
    message = voicemail_recorded(twilio_call_sid=call.twilio_call_sid, recording_sid=sid,
                                 recording_status="completed", duration="4", to_number="", from_number="")
    words = [item.text for item in call_detail(call=call).timeline]
    assert any("the caller was offered voicemail" in w for w in words), words
    assert any("left a voicemail of 4 s" in w for w in words), words
    client.force_login(business.memberships.get().user)
    page = client.get(reverse("call_detail", kwargs={"call_id": call.id})).content.decode()
    assert reverse("voicemail_audio", kwargs={"message_id": message.id}) in page


def test_the_owner_chooses_what_callers_get_when_the_receptionist_is_unavailable(client, business):
    owner = business.memberships.get().user
    client.force_login(owner)
    page = client.get(reverse("settings_profile")).content.decode()
    assert 'name="when_unavailable"' in page
    other = make_business(owner=make_user("x@example.com"), name="Other")
    assert other.when_unavailable == "voicemail"
