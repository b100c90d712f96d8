"""The model gone for good mid-call: the caller reaches voicemail, the recording becomes a message for the team,
transcribed by the summary step, played through our server to members only.

daphne + a real Celery worker on Redis; OpenAI and Twilio are the stand-ins (Twilio's REST API, and this test in
Twilio's part for the recording status callback, signed with Twilio's own algorithm)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import httpx
import pytest
from django.urls import reverse
from twilio.request_validator import RequestValidator

from calls.models import Call, CallEvent, Message, TranscriptEntry
from calls.tests.test_postcall_e2e import wait_for
from tests.factories import make_business, make_user, make_wav
from voice.offline.realtime import Script
from voice.tests.conftest import (AUTH_TOKEN, BUSINESS_NUMBER, start_asgi_server, start_celery_worker, stop_process,
                                  subprocess_env)
from voice.tests.test_call_e2e import finalized_call, simulate

pytestmark = pytest.mark.e2e

CALLER = "+12025550143"
SPOKEN = "Hi, this is Dana Smith, please call me back about moving my cleaning to Thursday."


@pytest.fixture
def stack(harbor, standin, twilio_standin):
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin)
    worker = start_celery_worker(subprocess_env(standin=standin, twilio_standin=twilio_standin,
                                                base_url=server.base_url))
    yield server
    stop_process(worker.process)
    stop_process(server.process)


def post_as_twilio(url: str, params: dict[str, str]) -> httpx.Response:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)


def test_the_model_gone_for_good_mid_call_leads_to_a_voicemail_the_team_can_read_and_hear(
        stack, standin, twilio_standin, harbor, voice_settings, client):
    standin.script = Script.from_obj({"greeting": "Hello, Harbor Dental.",
                                      "fail": {"drop_after_ms": 1500, "refuse_after_sessions": 1}})
    standin.transcription_text = SPOKEN
    call_sid = twilio_standin.add_call(to=BUSINESS_NUMBER, from_=CALLER)
    simulate(stack, call_sid=call_sid, utterances=1, hang_up_after_s=10)

    # The reconnect budget is spent: the call ends failed, and the caller was redirected to voicemail.
    call = finalized_call(call_sid)
    assert (call.status, call.end_reason, call.voicemail_status) == ("failed", "upstream_failed", "recording")
    assert CallEvent.objects.get(call=call, kind="reconnect").payload["ok"] is False
    fallback = CallEvent.objects.get(call=call, kind="fallback").payload
    assert fallback["action"] == "voicemail" and fallback["ok"] is True and "dropped" in fallback["cause"]
    twiml = ET.fromstring(twilio_standin.updates(call_sid)[-1]["Twiml"])
    record = twiml.find("Record")
    assert record is not None and record.get("maxLength") == "120" and record.get("playBeep") == "true"
    callback_url = record.get("recordingStatusCallback")
    assert callback_url.startswith(stack.base_url + "/voice/twilio/voicemail/recording/")

    # The summary waits for the recording instead of summarising a call with nothing in it.
    time.sleep(1.5)
    call.refresh_from_db()
    assert call.summarized_at is None

    # Twilio posts the recording; a second, identical post changes nothing.
    recording_sid = twilio_standin.add_recording(call_sid, make_wav(), duration=7)
    params = twilio_standin.recording_callback_params(recording_sid)
    assert post_as_twilio(callback_url, params).status_code == 204
    assert post_as_twilio(callback_url, params).status_code == 204
    message = Message.objects.get(call=call)
    assert (message.recording_sid, message.recording_seconds, message.callback_number) == (recording_sid, 7, CALLER)

    # The worker's summary step transcribes it (from Twilio's recording), then summarises the call.
    call = wait_for(lambda: Call.objects.filter(id=call.id, summarized_at__isnull=False).first(), what="the summary")
    message.refresh_from_db()
    assert message.transcribed_at is not None and message.body == f"Voicemail (7 s): {SPOKEN}"
    assert TranscriptEntry.objects.filter(call=call, speaker="caller", text=f"[voicemail] {SPOKEN}").exists()
    assert standin.transcription_requests[-1]["bytes"] == len(make_wav())
    assert call.outcome == "message_taken"
    assert Message.objects.filter(call=call).count() == 1
    assert CallEvent.objects.get(call=call, kind="voicemail").payload == {
        "recorded": True, "seconds": 7, "recording_sid": recording_sid}

    # Played through our server to a member of the business; another business's owner gets a 404.
    client.force_login(harbor.memberships.get().user)
    audio = client.get(reverse("voicemail_audio", kwargs={"message_id": message.id}))
    assert audio.status_code == 200 and audio["Content-Type"] == "audio/wav"
    assert audio.content == make_wav()
    assert audio["Cache-Control"] == "private, no-store"
    other_owner = make_user("owner@other.example")
    make_business(owner=other_owner, name="Other Clinic")
    client.force_login(other_owner)
    assert client.get(reverse("voicemail_audio", kwargs={"message_id": message.id})).status_code == 404
