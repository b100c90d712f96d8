"""After the call on a real Celery worker (Redis) and PostgreSQL, with the OpenAI stand-in and a local webhook
receiver: once per call, also with duplicate enqueues, a failing receiver and a worker killed mid-task."""

# ruff: noqa: F811  (the voice fixtures are imported by name)
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from calls.models import Call, CallNotification, WebhookDelivery
from calls.services import call_finalize, notification_settings_save
from calls.tasks import deliver_webhook, send_call_email, summarize_call
from calls.tests.test_postcall import (
    SUMMARY_DOC,
    Receiver,
    summary_requests,
    talked_call,
    verify,
)
from receptionist.celery import app as celery_app
from voice.standin import Script
from voice.tests.conftest import (  # noqa: F401
    ARTIFACTS,
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


def start_worker_keeping_queue(env: dict) -> LiveAsgi:
    """A Celery worker like `start_celery_worker`, without flushing the broker: it picks up what a dead one left."""
    log_path = ARTIFACTS / f"celery-worker-{free_port()}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "receptionist", "worker", "--pool", "threads", "--concurrency", "4",
         "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
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
def test_a_worker_killed_mid_task_is_redelivered_and_nothing_happens_twice(crash_in, harbor, standin,
                                                                          twilio_standin, tmp_path):
    harbor.notification_email = "desk@harbor.example"
    harbor.save()
    receiver = Receiver(delay_s=3.0 if crash_in == "webhook" else 0.0)
    _, secret = notification_settings_save(business=harbor, email_mode="all", webhook_url=receiver.url)
    summary = {"document": SUMMARY_DOC, **({"delay_ms": 3000} if crash_in == "summary" else {})}
    standin.script = Script.from_obj({"summary": summary})
    call = talked_call(harbor)
    Call.objects.filter(id=call.id).update(status=Call.Status.COMPLETED, finalized_at=timezone.now(),
                                           ended_at=timezone.now())
    env = subprocess_env(standin=standin, twilio_standin=twilio_standin, base_url="http://127.0.0.1:8000",
                         extra_env={**postcall_env(tmp_path), "CELERY_VISIBILITY_TIMEOUT": "2"})
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
        receiver.delay_s = 0
        standin.script = Script.from_obj({"summary": {"document": SUMMARY_DOC}})
        time.sleep(2.5)  # past the visibility timeout: the next worker gets the task again

        second = start_worker_keeping_queue(env)
        wait_for(lambda: WebhookDelivery.objects.filter(call=call, status="delivered").exists(), 30,
                 "the redelivered task to finish")
        time.sleep(2)
        call.refresh_from_db()
        assert call.summary == SUMMARY_DOC["summary"]
        answered = [r for r in summary_requests(standin) if r["outcome"] == "answered"]
        assert len(answered) == 1  # the killed worker's request never completed
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
