"""After the call on a real Celery worker (Redis) and PostgreSQL, with the OpenAI stand-in and a local webhook
receiver: once per call, also with duplicate enqueues, a failing receiver and a worker killed mid-task."""

# ruff: noqa: F811  (the voice fixtures are imported by name)
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
import redis
from django.utils import timezone
from twilio.request_validator import RequestValidator

from billing.models import UsageRecord
from calls.postcall.summary import summary_cost_usd

from calls.models import Call, CallNotification, WebhookDelivery
from calls.services.lifecycle import call_finalize
from calls.services.notification_settings import notification_settings_save
from calls.tasks import deliver_webhook, send_call_email, summarize_call
from calls.tests.test_postcall import (
    SUMMARY_DOC,
    Receiver,
    summary_requests,
    talked_call,
    verify,
)
from receptionist.celery import app as celery_app
from tests.factories import make_business, make_call, make_user
from voice.offline.realtime import Script
from voice.tests.conftest import (  # noqa: F401
    ACCOUNT_SID,
    ARTIFACTS,
    AUTH_TOKEN,
    HARBOR_SCRIPT,
    LiveAsgi,
    free_port,
    harbor,
    standin,
    start_asgi_server,
    start_celery_worker,
    stop_process,
    subprocess_env,
    twilio_standin,
)
from voice.tests.test_call_e2e import finalized_call, simulate

pytestmark = pytest.mark.e2e


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def emails_sent(folder: Path) -> list[str]:
    messages = []
    for path in sorted(folder.glob("*.log")):
        messages += [m for m in path.read_text().split("-" * 79) if "Subject:" in m]
    return messages


def postcall_env(tmp_path: Path) -> dict:
    return {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(tmp_path),
            "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true", "POSTCALL_RETRY_BASE_SECONDS": "0.2",
            "SUMMARY_MAX_RETRIES": "2"}


def publish(env: dict, task, *args) -> None:
    """Send a task to the worker's broker (a duplicate enqueue, as a retried finalisation would)."""
    with celery_app.connection_for_write(env["REDIS_URL"]) as connection:
        task.apply_async(args=list(args), connection=connection)


def start_worker_keeping_queue(env: dict, *, beat_dir: Path | None = None) -> LiveAsgi:
    """A Celery worker like `start_celery_worker`, without flushing the broker: it picks up what a dead one left.
    With `beat_dir`, it also runs beat (the periodic tasks, among them the post-call sweep)."""
    log_path = ARTIFACTS / f"celery-worker-{free_port()}.log"
    beat = ["--beat", "--schedule", str(beat_dir / "celerybeat-schedule")] if beat_dir else []
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads", "--concurrency", "4",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", *beat],
        cwd=ARTIFACTS.parent, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: " ready." in log_path.read_text(errors="replace"), 40, "the worker to start")
    return LiveAsgi("celery", "", process, log_path)


@pytest.fixture
def receiver():
    server = Receiver(statuses=[500])
    yield server
    server.stop()


def test_a_real_call_gets_one_summary_one_email_one_webhook_despite_duplicates(harbor, standin, twilio_standin,
                                                                               receiver, tmp_path):
    harbor.notification_email = "desk@harbor.example"
    harbor.save()
    _, secret = notification_settings_save(business=harbor, email_mode="all", webhook_url=receiver.url)
    standin.script = Script.from_obj({**HARBOR_SCRIPT, "summary": {"document": SUMMARY_DOC}})
    extra = postcall_env(tmp_path)
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin, extra_env=extra)
    env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url=server.base_url, extra_env=extra)
    worker = start_celery_worker(env)
    try:
        report = simulate(server, utterances=2)
        assert report.ok, (report.failures, server.log())
        call = finalized_call(report.call_sid)
        wait_for(lambda: len(receiver.requests) >= 2 and emails_sent(tmp_path), 30, "the email and the webhook")

        # Finalisation triggered again, and every task enqueued again: nothing more happens.
        assert not call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
        delivery = WebhookDelivery.objects.get(call=call)
        publish(env, summarize_call, call.id)
        publish(env, summarize_call, call.id)
        publish(env, send_call_email, call.id)
        publish(env, deliver_webhook, delivery.id)
        time.sleep(3)

        call.refresh_from_db()
        assert call.summary == SUMMARY_DOC["summary"] and call.outcome == "answered" and call.summary_cost_usd > 0
        assert len(summary_requests(standin)) == 1, worker.log()
        emails = emails_sent(tmp_path)
        assert len(emails) == 1 and SUMMARY_DOC["summary"] in emails[0] and "desk@harbor.example" in emails[0]
        assert len(receiver.requests) == 2 and len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
        for request in receiver.requests:
            assert verify(secret, request)["data"]["call_id"] == call.id
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and [a.status_code for a in delivery.attempt_log.all()] == [500, 200]
        assert CallNotification.objects.get(call=call).status == "sent"
    finally:
        stop_process(worker.process)
        stop_process(server.process)


@pytest.mark.parametrize("crash_in", ["summary", "webhook"])
def test_a_worker_killed_mid_task_is_recovered_within_a_minute_and_nothing_happens_twice(
        crash_in, harbor, standin, twilio_standin, tmp_path):
    # Default settings (visibility timeout, claims, sweep): only the email backend, private webhook addresses
    # and the summary script are the test's.
    harbor.notification_email = "desk@harbor.example"
    harbor.save()
    receiver = Receiver(delay_s=30.0 if crash_in == "webhook" else 0.0)
    _, secret = notification_settings_save(business=harbor, email_mode="all", webhook_url=receiver.url)
    summary = {"document": SUMMARY_DOC, **({"delay_ms": 30000} if crash_in == "summary" else {})}
    standin.script = Script.from_obj({"summary": summary})
    call = talked_call(harbor)
    Call.objects.filter(id=call.id).update(status=Call.Status.COMPLETED, finalized_at=timezone.now(),
                                           ended_at=timezone.now())
    env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url="http://127.0.0.1:8000",
                         extra_env={"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                                    "EMAIL_FILE_PATH": str(tmp_path), "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"})
    for knob in ("CELERY_VISIBILITY_TIMEOUT", "POSTCALL_SWEEP_SECONDS", "POSTCALL_SWEEP_GRACE_SECONDS",
                 "SUMMARY_CLAIM_SECONDS", "WEBHOOK_DEADLINE_SECONDS", "CELERY_TASK_TIME_LIMIT"):
        env.pop(knob, None)
    first = start_celery_worker(env)
    second = None
    try:
        publish(env, summarize_call, call.id)  # what the finalisation enqueues
        if crash_in == "summary":
            wait_for(lambda: any(r["outcome"] == "pending" for r in summary_requests(standin)), 20, "the summary")
        else:
            wait_for(lambda: receiver.requests, 20, "the webhook")
            assert len(emails_sent(tmp_path)) == 1
        os.killpg(first.process.pid, signal.SIGKILL)  # the worker dies mid-task, its task unacknowledged
        first.process.wait(timeout=5)
        killed_at = time.monotonic()
        receiver.delay_s = 0
        standin.script = Script.from_obj({"summary": {"document": SUMMARY_DOC}})

        second = start_worker_keeping_queue(env, beat_dir=tmp_path)
        wait_for(lambda: WebhookDelivery.objects.filter(call=call, status="delivered").exists(),
                 60 - (time.monotonic() - killed_at), "the work to be taken over within a minute of the kill")
        time.sleep(2)
        call.refresh_from_db()
        assert call.summary == SUMMARY_DOC["summary"]
        answered = [r for r in summary_requests(standin) if r["outcome"] == "answered"]
        assert len(answered) == 1, second.log()  # the killed worker's request never completed
        assert call.summary_cost_usd == summary_cost_usd(
            call.summary_model, call.summary_input_tokens, 0, call.summary_output_tokens)  # stored once
        assert len(emails_sent(tmp_path)) == 1
        assert WebhookDelivery.objects.filter(call=call).count() == 1
        ids = {r["headers"]["webhook-id"] for r in receiver.requests}
        assert len(ids) == 1 and len(receiver.requests) == (2 if crash_in == "webhook" else 1)
        for request in receiver.requests:
            verify(secret, request)
    finally:
        stop_process(first.process)
        if second is not None:
            stop_process(second.process)
        receiver.stop()


def signed_post(server: LiveAsgi, path: str, params: dict) -> httpx.Response:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(server.base_url + path, params)
    return httpx.post(server.base_url + path, data=params, headers={"X-Twilio-Signature": signature}, timeout=15)


def test_with_redis_down_twilio_webhooks_answer_and_the_sweep_queues_the_summaries_once_it_is_back(
        harbor, standin, twilio_standin, tmp_path):
    harbor.notification_email = "desk@harbor.example"
    harbor.save()
    refused = make_business(owner=make_user("owner@spent.example"), name="Spent Dental",
                            phone_number="+14155550111")
    long_ago = timezone.now() - dt.timedelta(hours=1)
    used = make_call(refused, status="completed", finalized_at=long_ago, ended_at=long_ago, duration_seconds=3600,
                     summarized_at=long_ago)
    UsageRecord.objects.create(business=refused, call=used, external_id=f"call_{used.id}", seconds=3600, minutes=60,
                               occurred_at=long_ago, status="sent")  # its free trial is spent
    extra = {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": str(tmp_path),
             "POSTCALL_SWEEP_SECONDS": "2", "POSTCALL_SWEEP_GRACE_SECONDS": "1"}
    # Redis (broker, channel layer, cache) is down: nothing listens on its port.
    server = start_asgi_server("daphne", standin=standin, twilio_standin=twilio_standin,
                               extra_env={**extra, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    worker = None
    try:
        base = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": "+12025550143",
                "Direction": "inbound", "CallStatus": "ringing"}
        refused_sid, harbor_sid = "CA" + "7" * 32, "CA" + "8" * 32
        response = signed_post(server, "/voice/twilio/incoming/", {**base, "CallSid": refused_sid,
                                                                   "To": refused.phone_number})
        assert response.status_code == 200, server.log()  # billing refused: finalised, post-call work not queued
        assert ET.fromstring(response.text).find("Say") is not None
        response = signed_post(server, "/voice/twilio/incoming/", {**base, "CallSid": harbor_sid,
                                                                   "To": harbor.phone_number})
        assert response.status_code == 200 and ET.fromstring(response.text).find("Connect/Stream") is not None
        # The caller hung up before the stream started: the status callback finalises the call.
        response = signed_post(server, "/voice/twilio/status/", {"AccountSid": ACCOUNT_SID, "CallSid": harbor_sid,
                                                                 "CallStatus": "no-answer", "ApiVersion": "2010-04-01"})
        assert response.status_code == 204, server.log()
        calls = list(Call.objects.filter(twilio_call_sid__in=[refused_sid, harbor_sid]))
        assert len(calls) == 2 and all(c.finalized_at and c.summarized_at is None for c in calls)
        assert "the post-call sweep will queue it again" in server.log()

        # Redis is back (the worker's broker), with beat: the sweep queues what the outage dropped.
        env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url=server.base_url,
                             extra_env=extra)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()  # nothing left over from another test
        worker = start_worker_keeping_queue(env, beat_dir=tmp_path)
        wait_for(lambda: not Call.objects.filter(id__in=[c.id for c in calls], summarized_at__isnull=True).exists(),
                 40, "the sweep to queue the summaries")
        wait_for(lambda: len(emails_sent(tmp_path)) == 1, 20, "harbor's email")
        time.sleep(3)  # further sweeps change nothing
        for call in calls:
            call.refresh_from_db()
            assert call.outcome == "abandoned" and call.summary_attempts == 1
        assert CallNotification.objects.filter(call__in=calls).count() == 2
        assert len(emails_sent(tmp_path)) == 1  # the spent business has no notification email
    finally:
        if worker is not None:
            stop_process(worker.process)
        stop_process(server.process)
