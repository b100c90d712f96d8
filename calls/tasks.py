"""Celery tasks of the calls app: the work after a call. Ids in, one service call; see calls/postcall/ for
the delivery semantics of each side effect. Retries are counted and scheduled by the services (in the
database), not with `self.retry`: see `calls.postcall.queueing.enqueue`."""

from __future__ import annotations

import logging

from celery import shared_task

from calls.postcall import notifications, queueing, reaper, summary, webhooks

log = logging.getLogger(__name__)


@shared_task(name="calls.summarize_call", acks_late=True, ignore_result=True)
def summarize_call(call_id: int) -> None:
    """Summarise a finished call (retried with backoff on transient model errors, then marked with the error),
    then queue its notifications. A duplicate or redelivered task finds the summary claimed or stored and only
    re-queues the notifications, which are claimed once each."""
    summary.call_summary_attempt(call_id=call_id)


@shared_task(name="calls.send_call_email", acks_late=True, ignore_result=True)
def send_call_email(call_id: int) -> None:
    """Email the business about the call, at most once (compare-and-set claim); transient SMTP errors retry."""
    notifications.call_notification_send(call_id=call_id)


@shared_task(name="calls.deliver_webhook", acks_late=True, ignore_result=True)
def deliver_webhook(delivery_id: int) -> None:
    """One attempt of a `call.completed` webhook (at least once, same webhook-id); schedules the next one."""
    webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task(name="calls.reap_stuck_calls", acks_late=True, ignore_result=True)
def reap_stuck_calls() -> None:
    """Celery beat: finalise calls left ringing or in progress (their post-call work is queued on commit)."""
    reaper.calls_reap_stuck()


@shared_task(name="calls.sweep_postcall", acks_late=True, ignore_result=True)
def sweep_postcall() -> None:
    """Celery beat: queue again post-call work left undone (a dead worker, a lost message, a broker outage)."""
    queueing.postcall_sweep()


@shared_task(name="calls.refresh_mcp_servers", acks_late=True, ignore_result=True)
def refresh_mcp_servers() -> None:
    """Celery beat: list every business's MCP tools again, one task per server (each may wait out its timeout,
    so they are not run one after another in one task), and mark the servers that stopped answering."""
    from calls.selectors.mcp_tools import mcp_server_ids

    for server_id in mcp_server_ids():
        refresh_mcp_server.delay(server_id)


@shared_task(name="calls.refresh_mcp_server", acks_late=True, ignore_result=True)
def refresh_mcp_server(server_id: int) -> None:
    from calls.models import McpServer
    from calls.services.mcp_servers import mcp_server_refresh

    server = McpServer.objects.filter(id=server_id).first()
    if server is not None:  # removed since
        mcp_server_refresh(server=server)
