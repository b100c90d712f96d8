"""After the call, nothing lost and nothing stuck: the embedded mode's background work, the post-call sweep,
and the outbound webhook's claim, response cap and total deadline. PostgreSQL, local receivers, the stand-in."""

# ruff: noqa: F811  (fixtures are imported by name)
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
import redis
from django.core import mail
from django.db import connection
from django.utils import timezone

from calls.models import Call, CallNotification, WebhookDelivery, WebhookEndpoint
from calls.postcall import queueing, webhooks
from calls.services.lifecycle import call_finalize
from calls.tests.test_postcall import (  # noqa: F401
    SUMMARY_DOC,
    business,
    eager,
    settle,
    summary_requests,
    summary_standin,
    talked_call,
)
from voice.offline.realtime import Script
from voice.tests.conftest import free_port


class RawReceiver:
    """A webhook receiver whose answer is written by `respond(handler)`; records what it saw."""

    def __init__(self, respond):
        self.seen: list = []
        self.bytes_sent = 0
        self.done = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    respond(receiver, self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client hung up: what the cap and the deadline are for
                finally:
                    receiver.done.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/calls"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def pending_delivery(business, url: str) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.create(business=business, url=url, secret=webhooks.webhook_secret_new())
    call = talked_call(business)
    Call.objects.filter(id=call.id).update(status=Call.Status.COMPLETED, finalized_at=timezone.now())
    return WebhookDelivery.objects.create(call=call, endpoint=endpoint, event_type=webhooks.EVENT_CALL_COMPLETED,
                                          url=url, message_id="msg_test", payload={"type": "call.completed"})


def other_connection() -> psycopg.Connection:
    cfg = connection.settings_dict
    return psycopg.connect(host=cfg["HOST"] or "127.0.0.1", port=cfg["PORT"] or 5432, user=cfg["USER"],
                           password=cfg["PASSWORD"] or None, dbname=cfg["NAME"], autocommit=True)


# --- embedded mode ------------------------------------------------------------------------------------------

def test_in_embedded_mode_finalising_returns_before_the_summary_and_its_retries_run(eager, business, settings):
    settings.POSTCALL_RETRY_BASE_SECONDS = 0.3
    eager.script = Script.from_obj({"summary": {"status": 500}})
    call = talked_call(business)

    assert call_finalize(call_id=call.id, status=Call.Status.COMPLETED, end_reason="caller_hung_up")
    call.refresh_from_db()
    assert call.summarized_at is None  # the finaliser did not run the summary, let alone its retries

    settle()
    call.refresh_from_db()
    requests = summary_requests(eager)
    assert len(requests) == 3 and "500" in call.summary_error and call.summarized_at
    gaps = [b["started_at"] - a["started_at"] for a, b in zip(requests, requests[1:])]
    assert all(gap >= 0.3 for gap in gaps), gaps  # a real backoff between attempts
    assert len(mail.outbox) == 1


# --- the post-call sweep ------------------------------------------------------------------------------------

def test_the_sweep_queues_a_finalised_call_whose_summary_was_never_queued(eager, business):
    lost = talked_call(business)
    held = talked_call(business)
    long_ago = timezone.now() - dt.timedelta(minutes=5)
    # Finalised without the on-commit hook (as when the broker was down): nothing was queued.
    Call.objects.filter(id__in=[lost.id, held.id]).update(status=Call.Status.COMPLETED, finalized_at=long_ago,
                                                          ended_at=long_ago)
    Call.objects.filter(id=held.id).update(summary_attempts=1,
                                           summary_claimed_until=timezone.now() + dt.timedelta(minutes=1))

    assert queueing.postcall_sweep()["summaries"] == 1
    settle()
    assert queueing.postcall_sweep() == {"summaries": 0, "notifications": 0, "emails": 0, "webhooks": 0}
    settle()

    lost.refresh_from_db()
    held.refresh_from_db()
    assert lost.summary == SUMMARY_DOC["summary"] and len(summary_requests(eager)) == 1
    assert held.summarized_at is None  # its attempt still holds the claim
    assert len(mail.outbox) == 1 and CallNotification.objects.get(call=lost).status == "sent"


def test_a_summary_whose_attempts_never_finish_ends_recorded_as_failed_not_lost(eager, business, settings):
    call = talked_call(business)
    long_ago = timezone.now() - dt.timedelta(minutes=5)
    # Every attempt so far died with its worker: claimed, never finished, claim expired.
    Call.objects.filter(id=call.id).update(status=Call.Status.COMPLETED, finalized_at=long_ago, ended_at=long_ago,
                                           summary_attempts=settings.SUMMARY_MAX_RETRIES + 1,
                                           summary_claimed_until=long_ago)

    queueing.postcall_sweep()
    settle()

    call.refresh_from_db()
    assert call.summarized_at and "Gave up after" in call.summary_error and summary_requests(eager) == []
    assert len(mail.outbox) == 1 and "No summary is available" in mail.outbox[0].body


def test_the_sweep_sends_a_queued_email_whose_task_was_lost(eager, business):
    call = talked_call(business)
    long_ago = timezone.now() - dt.timedelta(minutes=5)
    Call.objects.filter(id=call.id).update(status=Call.Status.COMPLETED, finalized_at=long_ago, ended_at=long_ago,
                                           summarized_at=long_ago, summary="Ann asked about hours.")
    CallNotification.objects.create(call=call, created_at=long_ago)

    assert queueing.postcall_sweep()["emails"] == 1
    settle()
    assert CallNotification.objects.get(call=call).status == "sent" and len(mail.outbox) == 1


# --- the outbound webhook -----------------------------------------------------------------------------------

def test_the_webhook_post_holds_no_row_lock_and_no_open_transaction(business, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True

    def respond(receiver, handler):
        # While our POST is in flight, from another connection: is the delivery row locked?
        with other_connection() as conn:
            try:
                conn.execute(f"SELECT id FROM {WebhookDelivery._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                             [receiver.delivery_id])
                receiver.seen.append("unlocked")
            except psycopg.errors.LockNotAvailable:
                receiver.seen.append("locked")
            idle_in_transaction = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()").fetchone()[0]
            receiver.seen.append(f"idle in transaction: {idle_in_transaction}")
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver = RawReceiver(respond)
    try:
        delivery = pending_delivery(business, receiver.url)
        receiver.delivery_id = delivery.id
        assert webhooks.webhook_deliver(delivery_id=delivery.id) is False
        assert receiver.seen == ["unlocked", "idle in transaction: 0"]
        delivery.refresh_from_db()
        assert delivery.status == "delivered" and delivery.attempts == 1 and delivery.claimed_until is None
    finally:
        receiver.stop()


def test_an_endless_response_body_is_cut_at_the_cap(business, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOK_MAX_RESPONSE_BYTES = 64 * 1024
    safety = 64 * 1024 * 1024  # the receiver gives up after this much; a client reading it all was not capped

    def respond(receiver, handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        chunk = b"x" * 16384
        while receiver.bytes_sent < safety:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            receiver.bytes_sent += len(chunk)
        handler.wfile.write(b"0\r\n\r\n")

    receiver = RawReceiver(respond)
    try:
        delivery = pending_delivery(business, receiver.url)
        webhooks.webhook_deliver(delivery_id=delivery.id)
        assert receiver.done.wait(20)
        assert receiver.bytes_sent < safety  # we hung up after the cap; the receiver could not send it all
        delivery.refresh_from_db()
        assert delivery.status == "delivered"  # a 2xx is a delivery, whatever its body
    finally:
        receiver.stop()


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_total_deadline(business, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 5  # each byte comes well within the per-read timeout
    settings.WEBHOOK_DEADLINE_SECONDS = 2
    settings.POSTCALL_RETRY_BASE_SECONDS = 3600  # the retry is left to the sweep, not queued from this test

    def respond(receiver, handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        for _ in range(100):  # 30 s of one byte every 0.3 s, unless the client hangs up
            handler.wfile.write(b"x")
            handler.wfile.flush()
            receiver.bytes_sent += 1
            time.sleep(0.3)
        handler.wfile.write(b"\r\nContent-Length: 0\r\n\r\n")

    receiver = RawReceiver(respond)
    try:
        delivery = pending_delivery(business, receiver.url)
        assert webhooks.webhook_deliver(delivery_id=delivery.id) is True  # failed for now, retried later
        attempt = delivery.attempt_log.get()
        assert not attempt.ok and "deadline" in attempt.error
        assert attempt.duration_ms < 4000, attempt.duration_ms  # 2 s deadline, not the receiver's 30 s
        delivery.refresh_from_db()
        assert delivery.status == "pending" and delivery.claimed_until > timezone.now()
    finally:
        receiver.stop()


# --- the broker: visibility timeout and countdowns ----------------------------------------------------------

def test_a_short_backoff_is_a_broker_countdown_and_a_long_one_is_left_to_the_sweep(settings):
    from calls.tasks import summarize_call

    # The visibility timeout fits the longest task, and a countdown task held by a worker until it runs.
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > settings.CELERY_TASK_TIME_LIMIT
    longest = settings.POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS
    assert longest > 0 and longest + settings.CELERY_TASK_TIME_LIMIT < settings.CELERY_VISIBILITY_TIMEOUT
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue.delete("celery")
    try:
        assert queueing.enqueue(summarize_call, 910001, countdown=longest)
        assert queueing.enqueue(summarize_call, 910002, countdown=longest + 1)
        messages = [json.loads(raw) for raw in queue.lrange("celery", 0, -1)]
        assert [(m["headers"]["argsrepr"], m["headers"]["eta"] is not None) for m in messages] == [("[910001]", True)]
    finally:
        queue.delete("celery")


def test_with_the_broker_down_enqueueing_logs_and_returns_instead_of_raising(settings, caplog):
    from calls.tasks import summarize_call
    from receptionist.celery import app as celery_app

    closed = f"redis://127.0.0.1:{free_port()}/0"
    before = celery_app.conf.broker_url
    celery_app.conf.broker_url = closed
    celery_app.pool.force_close_all()
    try:
        assert queueing.enqueue(summarize_call, 910003) is False
    finally:
        celery_app.conf.broker_url = before
        celery_app.pool.force_close_all()
    assert "the post-call sweep will queue it again" in caplog.text
