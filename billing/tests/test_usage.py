"""Usage: one record per finished call, reported to Polar's events API with external_id = call id, retried."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from django.utils import timezone

from billing import tasks
from billing.models import UsageRecord
from billing.polar_client import PolarUnavailable
from billing.services.usage import billed_minutes, usage_record_for_call, usage_report, usage_sweep
from tests.factories import make_call

INGEST = "/v1/events/ingest"


def finished_call(business, seconds=125, *, channel="twilio", streamed=True, **fields):
    """A finalised call whose length is known: a phone call's from Twilio's status callback."""
    ended = timezone.now() - dt.timedelta(minutes=10)
    if channel == "twilio":
        fields.setdefault("twilio_duration_seconds", seconds)
    return make_call(business, channel=channel, status="completed", duration_seconds=seconds, ended_at=ended,
                     finalized_at=ended, stream_started_at=ended - dt.timedelta(seconds=seconds) if streamed else None,
                     twilio_call_sid=None, **fields)


def ok(inserted=1, duplicates=0):
    return httpx.Response(200, json={"inserted": inserted, "duplicates": duplicates})


@pytest.mark.parametrize(("seconds", "minutes"), [(0, 0), (1, 1), (59, 1), (60, 1), (61, 2), (125, 3)])
def test_minutes_are_rounded_up_per_call(seconds, minutes):
    assert billed_minutes(seconds) == minutes


def test_a_finished_call_is_reported_once_with_its_id_as_external_id(polar_api, alices_business,
                                                                     django_capture_on_commit_callbacks):
    route = polar_api.post(INGEST).mock(return_value=ok())
    call = finished_call(alices_business, 125)
    with django_capture_on_commit_callbacks(execute=True):
        record = usage_record_for_call(call_id=call.id)
        again = usage_record_for_call(call_id=call.id)
    assert again.pk == record.pk and UsageRecord.objects.count() == 1
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer polar_oat_test_token"
    assert sent.headers["polar-version"] == "2026-10"
    event = json.loads(sent.content)["events"][0]
    assert event["name"] == "call.completed"
    assert event["external_id"] == f"call_{call.id}"
    assert event["external_customer_id"] == str(alices_business.uuid)
    assert event["metadata"] == {"minutes": 3, "seconds": 125, "call_id": str(call.id)}
    record.refresh_from_db()
    assert (record.status, record.minutes, record.attempts) == ("sent", 3, 1)


def test_retries_resend_the_same_external_id_and_polar_duplicates_are_fine(polar_api, alices_business):
    route = polar_api.post(INGEST).mock(side_effect=[httpx.Response(503), ok(inserted=0, duplicates=1)])
    call = finished_call(alices_business)
    record = usage_record_for_call(call_id=call.id)
    tasks.report_usage.apply(args=[record.id])
    ids = [json.loads(c.request.content)["events"][0]["external_id"] for c in route.calls]
    assert ids == [f"call_{call.id}", f"call_{call.id}"]
    record.refresh_from_db()
    assert record.status == "sent" and record.attempts == 2
    # A sent record is never sent again.
    assert usage_report(record_id=record.id) == "nothing_to_do" and route.call_count == 2


def test_5xx_429_and_network_errors_are_retried_honouring_retry_after(polar_api, alices_business, monkeypatch,
                                                                      settings):
    settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS = 1000  # a broker whose visibility timeout allows long waits
    route = polar_api.post(INGEST).mock(side_effect=[
        httpx.Response(502), httpx.Response(429, headers={"Retry-After": "7"}), httpx.ConnectError("refused"), ok()])
    countdowns = []
    real_retry = tasks.report_usage.retry
    monkeypatch.setattr(tasks.report_usage, "retry",
                        lambda *a, **kw: countdowns.append(kw.get("countdown")) or real_retry(*a, **kw))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    tasks.report_usage.apply(args=[record.id])
    assert route.call_count == 4
    assert countdowns == [10, 7, 40]  # backoff, Polar's Retry-After, backoff
    record.refresh_from_db()
    assert record.status == "sent"


def test_a_retry_longer_than_the_broker_can_hold_is_left_to_the_sweep(polar_api, alices_business, monkeypatch,
                                                                       settings):
    settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS = 20
    route = polar_api.post(INGEST).mock(side_effect=[httpx.Response(429, headers={"Retry-After": "300"}), ok()])
    countdowns = []
    real_retry = tasks.report_usage.retry
    monkeypatch.setattr(tasks.report_usage, "retry",
                        lambda *a, **kw: countdowns.append(kw.get("countdown")) or real_retry(*a, **kw))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    assert tasks.report_usage.apply(args=[record.id]).result == "deferred_to_sweep"
    assert countdowns == [] and route.call_count == 1
    record.refresh_from_db()
    assert record.status == "failed" and "wait 300 s" in record.last_error


def test_after_the_last_retry_the_error_is_surfaced(polar_api, alices_business, caplog, settings):
    settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS = 1000
    route = polar_api.post(INGEST).mock(return_value=httpx.Response(503))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    result = tasks.report_usage.apply(args=[record.id])
    assert isinstance(result.result, PolarUnavailable)
    assert route.call_count == tasks.MAX_RETRIES + 1
    record.refresh_from_db()
    assert record.status == "failed" and "503" in record.last_error
    assert "could not reach Polar" in caplog.text


def test_a_4xx_is_not_retried_and_gives_the_record_up_with_the_reason(polar_api, alices_business, caplog):
    route = polar_api.post(INGEST).mock(return_value=httpx.Response(
        422, json={"detail": [{"loc": ["body", "events", 0], "msg": "bad", "type": "value_error"}]}))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    assert tasks.report_usage.apply(args=[record.id]).result == "rejected"
    assert route.call_count == 1
    record.refresh_from_db()
    assert record.status == "gave_up" and "HTTP 422" in record.last_error
    assert f"Usage of call {record.call_id}" in caplog.text and "will not be sent to Polar again" in caplog.text


def test_the_sweep_never_resends_a_record_polar_refused(polar_api, alices_business,
                                                        django_capture_on_commit_callbacks):
    route = polar_api.post(INGEST).mock(return_value=httpx.Response(403, json={"detail": "Not allowed"}))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    tasks.report_usage.apply(args=[record.id])
    UsageRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    for minutes in (5, 10, 60 * 24):
        with django_capture_on_commit_callbacks(execute=True):
            assert usage_sweep(now=timezone.now() + dt.timedelta(minutes=minutes))["resent"] == 0
    assert route.call_count == 1
    record.refresh_from_db()
    assert (record.status, record.attempts) == ("gave_up", 1) and "HTTP 403" in record.last_error


def test_transient_failures_are_retried_a_bounded_number_of_times_then_given_up(polar_api, alices_business, settings,
                                                                               django_capture_on_commit_callbacks):
    settings.BILLING_USAGE_MAX_ATTEMPTS = 3
    route = polar_api.post(INGEST).mock(return_value=httpx.Response(503))
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    assert tasks.report_usage.apply(args=[record.id]).result == "gave_up"
    assert route.call_count == 3
    record.refresh_from_db()
    assert record.status == "gave_up" and record.last_error.startswith("Gave up after 3 attempts")
    assert "503" in record.last_error
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_sweep(now=timezone.now() + dt.timedelta(hours=1))["resent"] == 0
    assert route.call_count == 3


def test_the_sweep_leaves_a_record_alone_while_its_task_may_still_be_retrying(polar_api, alices_business,
                                                                              django_capture_on_commit_callbacks):
    route = polar_api.post(INGEST).mock(return_value=ok())
    call = finished_call(alices_business)
    record = UsageRecord.objects.create(business=alices_business, call=call, external_id=f"call_{call.id}",
                                        seconds=125, minutes=3, occurred_at=call.ended_at, status="pending",
                                        attempts=2, created_at=timezone.now() - dt.timedelta(hours=1),
                                        last_attempt_at=timezone.now() - dt.timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_sweep()["resent"] == 0
        assert usage_sweep(now=timezone.now() + dt.timedelta(minutes=11))["resent"] == 1
    assert route.call_count == 1 and UsageRecord.objects.get(pk=record.pk).status == "sent"


def test_an_operator_can_send_a_given_up_record_again_from_the_admin(admin_client, polar_api, alices_business,
                                                                      django_capture_on_commit_callbacks):
    route = polar_api.post(INGEST).mock(side_effect=[httpx.Response(
        422, json={"detail": [{"loc": ["body", "events", 0], "msg": "bad", "type": "value_error"}]}), ok()])
    record = usage_record_for_call(call_id=finished_call(alices_business).id)
    tasks.report_usage.apply(args=[record.id])
    listing = admin_client.get("/admin/billing/usagerecord/?status__exact=gave_up").content.decode()
    assert record.external_id in listing and "HTTP 422" in listing
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/billing/usagerecord/", {
            "action": "send_again", "_selected_action": [record.pk]})
    assert response.status_code == 302
    record.refresh_from_db()
    assert (record.status, record.attempts, route.call_count) == ("sent", 1, 2)


def test_unanswered_and_browser_calls_are_not_billed(polar_api, alices_business):
    route = polar_api.post(INGEST).mock(return_value=ok())
    refused = finished_call(alices_business, 30, streamed=False)
    browser = finished_call(alices_business, 90, channel="browser")
    for call in (refused, browser):
        assert usage_record_for_call(call_id=call.id).status == "not_billable"
    assert route.call_count == 0


def test_a_call_still_in_progress_gets_no_record(alices_business):
    call = make_call(alices_business, status="in_progress")
    assert usage_record_for_call(call_id=call.id) is None


def test_the_sweep_reports_calls_whose_callback_never_came_and_resends_failed_ones(
        polar_api, alices_business, django_capture_on_commit_callbacks):
    route = polar_api.post(INGEST).mock(return_value=ok())
    missed = finished_call(alices_business, 60)
    failed_call = finished_call(alices_business, 120)
    failed = UsageRecord.objects.create(business=alices_business, call=failed_call, external_id=f"call_{failed_call.id}",
                                        seconds=120, minutes=2, occurred_at=failed_call.ended_at, status="failed",
                                        created_at=timezone.now() - dt.timedelta(hours=1))
    just_now = make_call(alices_business, status="completed", finalized_at=timezone.now(), ended_at=timezone.now(),
                         stream_started_at=timezone.now(), duration_seconds=5)
    with django_capture_on_commit_callbacks(execute=True):
        counts = tasks.sweep_unreported_usage.apply().result
    assert counts == {"recorded": 1, "resent": 1}
    sent = {json.loads(c.request.content)["events"][0]["external_id"] for c in route.calls}
    assert sent == {f"call_{missed.id}", f"call_{failed_call.id}"}
    failed.refresh_from_db()
    assert failed.status == "sent"
    assert not UsageRecord.objects.filter(call=just_now).exists()  # still within the status callback's grace
    with django_capture_on_commit_callbacks(execute=True):
        assert usage_sweep() == {"recorded": 0, "resent": 0}


def test_the_status_callback_records_usage(client, polar_api, alices_business, settings,
                                           django_capture_on_commit_callbacks):
    from twilio.request_validator import RequestValidator

    settings.TWILIO_AUTH_TOKEN = "tw-token"
    route = polar_api.post(INGEST).mock(return_value=ok())
    call = make_call(alices_business, twilio_call_sid="CA" + "7" * 32, status="completed",
                     stream_started_at=timezone.now(), finalized_at=timezone.now(), ended_at=timezone.now(),
                     duration_seconds=40)
    params = {"CallSid": call.twilio_call_sid, "CallStatus": "completed", "CallDuration": "95"}
    signature = RequestValidator("tw-token").compute_signature("https://rx.example.com/voice/twilio/status/", params)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/voice/twilio/status/", params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 204
    record = UsageRecord.objects.get(call=call)
    assert (record.seconds, record.minutes, record.status) == (95, 2, "sent")  # Twilio's duration wins
    assert route.call_count == 1


def test_beat_schedules_the_sweep(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["billing-sweep-unreported-usage"]
    assert schedule["task"] == tasks.sweep_unreported_usage.name == "billing.sweep_unreported_usage"


def test_without_polar_credentials_usage_waits_for_them(polar_api, alices_business, settings,
                                                        django_capture_on_commit_callbacks):
    settings.POLAR_ACCESS_TOKEN = ""
    route = polar_api.post(INGEST).mock(return_value=ok())
    call = finished_call(alices_business)
    with django_capture_on_commit_callbacks(execute=True):
        record = usage_record_for_call(call_id=call.id)
        usage_sweep()
    assert route.call_count == 0 and UsageRecord.objects.get(pk=record.pk).status == "pending"
    settings.POLAR_ACCESS_TOKEN = "polar_oat_test_token"
    UsageRecord.objects.filter(pk=record.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        usage_sweep()
    assert route.call_count == 1 and UsageRecord.objects.get(pk=record.pk).status == "sent"


def test_a_browser_test_call_keeps_its_minutes_for_the_trial_but_is_never_reported(polar_api, alices_business,
                                                                                  django_capture_on_commit_callbacks):
    from billing.selectors import minutes_used
    from billing.services.account import account_for_business

    route = polar_api.post(INGEST).mock(return_value=ok())
    call = finished_call(alices_business, 90, channel="browser")
    with django_capture_on_commit_callbacks(execute=True):
        record = usage_record_for_call(call_id=call.id)
        usage_sweep()
    assert (record.seconds, record.minutes, record.status) == (90, 2, "not_billable")
    assert usage_report(record_id=record.id) == "nothing_to_do"
    assert route.call_count == 0
    assert minutes_used(account_for_business(alices_business)) == 2  # on the free trial it spends trial minutes
