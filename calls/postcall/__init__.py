"""After the call: summary and extraction, the notification email, the `call.completed` webhook, the reaper.

`call_finalize` enqueues `postcall_enqueue(call_id)` on commit; the Celery tasks in `calls/tasks.py` are thin
wrappers around the services here. Every side effect happens once per call, whoever retries:

* summary: claimed by compare-and-set (`Call.summary_claimed_until`, for one attempt or its backoff), at least
  once to the model, at most once stored (compare-and-set on `Call.summarized_at`); a retried or duplicated
  task finds it claimed or stored and goes on to the notifications.
* email: at most once (compare-and-set QUEUED -> SENDING on the call's `CallNotification`, unique per call).
* webhook: at least once under one stable `webhook-id` (a `WebhookDelivery` row, unique per call and event,
  claimed by compare-and-set and committed before DNS and HTTP, so no lock or transaction is held across the
  network); Standard Webhooks receivers dedupe on that id.

Retries are counted in the database, not in the broker: a short backoff is a broker countdown, a long one is
only the claim's expiry, after which `postcall_sweep` (beat) queues the work again; so is work whose worker
died, whose message was lost, or that could not be queued because the broker was down. Anything that fails
for good ends in a recorded state (`summary_error`, a FAILED notification or delivery with its error).
Without a broker (embedded mode) the tasks run on `calls.background`'s executor, never in the finaliser.

Modules: `queueing` (queueing the work, its backoff, the sweep), `summary` (summary and extraction, then the
notifications' rows), `notifications` (the email), `webhooks` (the `call.completed` delivery), `address_guard`
(where a webhook may be sent), `reaper` (calls left open). Import the module you need; nothing is re-exported.
"""
