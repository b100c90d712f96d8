"""A call's minutes are recorded when it is finalised, whoever finalises it, exactly once, with Twilio's duration
whether its status callback comes before the finalisation or after."""

from __future__ import annotations

import datetime as dt
import json
import logging

import httpx
import pytest
from django.utils import timezone
from twilio.request_validator import RequestValidator

from billing.models import UsageRecord
from billing.services.usage import usage_sweep
from calls.models import Call, CallEvent
from calls.postcall.reaper import calls_reap_stuck
from calls.services.forwards import call_forward_start
from calls.services.lifecycle import call_finalize
from tests.factories import make_call

INGEST = "/v1/events/ingest"
TOKEN = "tw-token"
CALL_SID = "CA" + "5" * 32


@pytest.fixture(autouse=True)
def twilio_token(settings):
    settings.TWILIO_AUTH_TOKEN = TOKEN


@pytest.fixture
def polar_ingest(polar_api):
    return polar_api.post(INGEST).mock(return_value=httpx.Response(200, json={"inserted": 1, "duplicates": 0}))


def answered_call(business, *, seconds_ago: int = 100) -> Call:
    """A phone call the receptionist is talking on: its media stream started `seconds_ago`."""
    started = timezone.now() - dt.timedelta(seconds=seconds_ago)
    return make_call(business, twilio_call_sid=CALL_SID, status="in_progress", started_at=started,
                     answered_at=started, stream_started_at=started)


def twilio_posts(client, path: str, params: dict) -> int:
    signature = RequestValidator(TOKEN).compute_signature("https://rx.example.com" + path, params)
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature).status_code


def status_callback(client, seconds: int) -> int:
    return twilio_posts(client, "/voice/twilio/status/", {"CallSid": CALL_SID, "CallStatus": "completed",
                                                          "CallDuration": str(seconds)})


def sent_seconds(route) -> list[int]:
    return [json.loads(c.request.content)["events"][0]["metadata"]["seconds"] for c in route.calls]


def test_twilios_callback_before_the_session_finalises_is_billed_once_at_finalisation(
        client, alices_business, polar_ingest, django_capture_on_commit_callbacks):
    call = answered_call(alices_business)
    with django_capture_on_commit_callbacks(execute=True):
        assert status_callback(client, 95) == 204
    assert not UsageRecord.objects.exists()  # the call is still being finalised by its session
    with django_capture_on_commit_callbacks(execute=True):
        call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    record = UsageRecord.objects.get(call=call)
    assert (record.seconds, record.minutes, record.status) == (95, 2, "sent")  # Twilio's duration
    assert sent_seconds(polar_ingest) == [95]
    with django_capture_on_commit_callbacks(execute=True):  # Twilio retries its callback: nothing new
        assert status_callback(client, 95) == 204
        usage_sweep(now=timezone.now() + dt.timedelta(hours=1))
    assert UsageRecord.objects.count() == 1 and sent_seconds(polar_ingest) == [95]


def test_a_call_finalised_before_twilios_callback_is_billed_once_with_twilios_duration(
        client, alices_business, polar_ingest, django_capture_on_commit_callbacks):
    call = answered_call(alices_business, seconds_ago=118)
    with django_capture_on_commit_callbacks(execute=True):
        call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    record = UsageRecord.objects.get(call=call)
    # Counted at once (our own measure, 2 minutes), but not reported before Twilio says how long it was.
    assert (record.seconds, record.minutes, record.status) == (118, 2, "pending")
    assert polar_ingest.call_count == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert status_callback(client, 121) == 204
    record.refresh_from_db()
    assert (record.seconds, record.minutes, record.status) == (121, 3, "sent")
    assert sent_seconds(polar_ingest) == [121]
    with django_capture_on_commit_callbacks(execute=True):
        assert status_callback(client, 121) == 204
        usage_sweep(now=timezone.now() + dt.timedelta(hours=1))
    assert UsageRecord.objects.count() == 1 and sent_seconds(polar_ingest) == [121]


def test_without_twilios_callback_the_sweep_reports_the_sessions_measure_after_the_grace(
        alices_business, polar_ingest, django_capture_on_commit_callbacks):
    call = answered_call(alices_business, seconds_ago=70)
    with django_capture_on_commit_callbacks(execute=True):
        call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
        assert usage_sweep()["resent"] == 0  # still waiting for Twilio
        usage_sweep(now=timezone.now() + dt.timedelta(minutes=3))
    assert sent_seconds(polar_ingest) == [70]
    assert UsageRecord.objects.get(call=call).status == "sent"


def test_a_call_the_hook_missed_is_recorded_and_reported_by_the_next_sweep(alices_business, polar_ingest,
                                                                           django_capture_on_commit_callbacks):
    ended = timezone.now() - dt.timedelta(minutes=10)
    call = make_call(alices_business, twilio_call_sid=CALL_SID, status="completed", answered_at=ended,
                     stream_started_at=ended - dt.timedelta(seconds=45), ended_at=ended, finalized_at=ended,
                     duration_seconds=45)
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_sweep() == {"recorded": 1, "resent": 0}
    assert sent_seconds(polar_ingest) == [45]  # Twilio's callback never came: our measure, at once
    assert UsageRecord.objects.get(call=call).status == "sent"


def test_a_duration_arriving_after_polar_has_the_record_never_charges_twice(
        client, alices_business, polar_ingest, django_capture_on_commit_callbacks, caplog):
    call = answered_call(alices_business, seconds_ago=100)
    with django_capture_on_commit_callbacks(execute=True):
        call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
        usage_sweep(now=timezone.now() + dt.timedelta(minutes=3))  # Twilio's callback is very late
    assert sent_seconds(polar_ingest) == [100]
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert status_callback(client, 130) == 204
    record = UsageRecord.objects.get(call=call)
    assert (record.seconds, record.minutes, record.status) == (100, 2, "sent")  # what Polar has
    assert sent_seconds(polar_ingest) == [100]
    assert f"Call {call.id} now counts 130 s, but Polar already has 100 s" in caplog.text
    call.refresh_from_db()
    assert call.duration_seconds == call.twilio_duration_seconds == 130


def test_a_call_forwarded_by_the_agent_waits_for_the_dial_report_whichever_callback_comes_first(
        client, alices_business, polar_ingest, django_capture_on_commit_callbacks):
    call = answered_call(alices_business, seconds_ago=60)
    call_forward_start(twilio_call_sid=CALL_SID, number="+14155550199")
    with django_capture_on_commit_callbacks(execute=True):
        assert status_callback(client, 200) == 204
        call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="transferred")
    assert not UsageRecord.objects.exists()  # the forward's minutes are billed with the call
    with django_capture_on_commit_callbacks(execute=True):
        twilio_posts(client, "/voice/twilio/dial-result/", {
            "CallSid": CALL_SID, "CallStatus": "in-progress", "DialCallStatus": "completed",
            "DialCallDuration": "130"})
    record = UsageRecord.objects.get(call=call)
    assert (record.seconds, record.status) == (60 + 130, "sent")
    assert sent_seconds(polar_ingest) == [190]


def test_a_call_the_reaper_finalises_is_counted_at_once(alices_business, polar_ingest,
                                                        django_capture_on_commit_callbacks, settings):
    settings.REAPER_IDLE_MINUTES = 15
    call = answered_call(alices_business, seconds_ago=20 * 60)
    # Its last sign of life 16 minutes ago, 4 minutes into the call (then its process died).
    CallEvent.objects.create(call=call, order=1, kind=CallEvent.Kind.LATENCY, offset_ms=240_000, payload={},
                             created_at=timezone.now() - dt.timedelta(minutes=16))
    with django_capture_on_commit_callbacks(execute=True):
        assert calls_reap_stuck() == [call.id]
    record = UsageRecord.objects.get(call=call)
    assert (record.seconds, record.minutes, record.status) == (240, 4, "pending")
