"""The call's summary and extraction: claimed, asked of the model, stored once; then its notifications' rows."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    OpenAI,
    OpenAIError,
)

from calls.caller_text import caller_data_block
from calls.live import publish_call_changed
from calls.models import Call, CallEvent, CallNotification, Message, TranscriptEntry, WebhookDelivery, WebhookEndpoint
from calls.outcomes import OUTCOMES
from calls.postcall.queueing import TransientError, enqueue, retry_countdown
from calls.postcall.voicemail import voicemail_transcribe
from calls.postcall.webhooks import EVENT_CALL_COMPLETED, call_completed_payload
from calls.services.search_document import call_search_refresh
from calls.services.voicemail import voicemail_awaited
from receptionist import metrics as operator_metrics

log = logging.getLogger(__name__)

SENTIMENTS = ["positive", "neutral", "negative", "mixed"]

SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "caller_name", "reason", "outcome", "action_items", "sentiment", "follow_up_needed",
                 "follow_up_reason"],
    "properties": {
        "summary": {"type": "string", "description": "Two or three sentences: who called, what they wanted, "
                                                     "what happened."},
        "caller_name": {"type": "string", "description": "The caller's name if they said it, else empty."},
        "reason": {"type": "string", "description": "Why they called, in one short sentence."},
        "outcome": {"type": "string", "enum": OUTCOMES},
        "action_items": {"type": "array", "items": {"type": "string"},
                         "description": "What the team should do, one short imperative each; empty if nothing."},
        "sentiment": {"type": "string", "enum": SENTIMENTS},
        "follow_up_needed": {"type": "boolean"},
        "follow_up_reason": {"type": "string", "description": "Why a follow-up is needed; empty if not."},
    },
}

SUMMARY_INSTRUCTIONS = (
    "You write the after-call note for a small business whose AI phone receptionist just handled a call. Read "
    "the transcript and the list of what the receptionist actually did, and fill in the fields. The summary is "
    "two or three plain sentences for the owner. The outcome is one of: booked (a new appointment was made), "
    "rescheduled, cancelled, message_taken, answered (questions answered, nothing else), transferred, abandoned "
    "(the caller hung up before anything happened), spam, other. Action items are what the team must do next. "
    "A follow-up is needed when someone from the team has to contact the caller or act. Never invent facts."
)


@dataclass
class Extraction:
    summary: str = ""
    caller_name: str = ""
    reason: str = ""
    outcome: str = "other"
    action_items: list[str] | None = None
    sentiment: str = ""
    follow_up_needed: bool | None = None
    follow_up_reason: str = ""

    @classmethod
    def from_json(cls, content: str) -> Extraction:
        data = json.loads(content)
        if not isinstance(data, dict):
            raise ValueError("the summary is not a JSON object")
        outcome = str(data.get("outcome") or "other")
        sentiment = str(data.get("sentiment") or "")
        items = data.get("action_items") or []
        return cls(
            summary=str(data.get("summary") or "").strip()[:4000],
            caller_name=str(data.get("caller_name") or "").strip()[:120],
            reason=str(data.get("reason") or "").strip()[:2000],
            outcome=outcome if outcome in OUTCOMES else "other",
            action_items=[str(i).strip()[:500] for i in items if str(i).strip()][:20] if isinstance(items, list) else [],
            sentiment=sentiment[:16] if sentiment in SENTIMENTS else "",
            follow_up_needed=bool(data.get("follow_up_needed")),
            follow_up_reason=str(data.get("follow_up_reason") or "").strip()[:2000],
        )


def actions_of_call(call: Call) -> list[str]:
    """What the receptionist's tools actually did on this call, strongest first (these override the model)."""
    actions = []
    if call.appointments_created.exists():
        actions.append("booked")
    tool_steps = CallEvent.objects.filter(call=call, kind=CallEvent.Kind.SUPERVISOR, payload__step="tool",
                                          payload__name__in=["reschedule_appointment", "cancel_appointment"])
    done = {step.payload.get("name") for step in tool_steps
            if isinstance(step.payload.get("result"), dict) and "error" not in step.payload["result"]
            and not step.payload["result"].get("already_cancelled")}
    if "reschedule_appointment" in done:
        actions.append("rescheduled")
    if "cancel_appointment" in done:
        actions.append("cancelled")
    if Message.objects.filter(call=call).exists():
        actions.append("message_taken")
    if CallEvent.objects.filter(call=call, kind=CallEvent.Kind.TRANSFER, payload__ok=True).exists():
        actions.append("transferred")
    return actions


def summary_prompt(call: Call, actions: list[str]) -> str:
    # What was said (the caller's words, and the agent's words shaped by them) is data, never instructions.
    turns = [{"speaker": entry.speaker, "text": entry.text} for entry in call.transcript.order_by("order")][-400:]
    business = call.business
    local = timezone.localtime(call.started_at, business.tzinfo)
    return "\n".join([
        (f"Business: {business.name}. Call at {local:%Y-%m-%d %H:%M} ({business.time_zone}) from "
         f"{call.from_number or 'an unknown number'}; it lasted {call.duration_seconds or 0} s and ended: "
         f"{call.end_reason or call.status}."),
        "What the receptionist did: " + (", ".join(actions) if actions else "nothing recorded") + ".",
        caller_data_block({"transcript": turns}, source="the call's transcript") if turns
        else "Transcript: (nothing was said)",
    ])


def summary_cost_usd(model: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    prices = settings.SUMMARY_PRICES.get(model) or settings.SUMMARY_PRICES["default"]
    total = ((prompt_tokens - cached_tokens) * prices["in"] + cached_tokens * prices["cached"]
             + completion_tokens * prices["out"])
    return (Decimal(str(total)) / Decimal(1_000_000)).quantize(Decimal("0.000001"))


def summary_usage_by_kind(model: str, prompt_tokens: int, cached_tokens: int,
                          completion_tokens: int) -> tuple[dict[str, int], dict[str, float]]:
    """The summary's tokens and their cost in USD by kind, for the operator metrics (cached prompt tokens taken
    out of the prompt's, as they are priced apart)."""
    prices = settings.SUMMARY_PRICES.get(model) or settings.SUMMARY_PRICES["default"]
    tokens = {"summary_input": prompt_tokens - cached_tokens, "summary_cached": cached_tokens,
              "summary_output": completion_tokens}
    price_keys = {"summary_input": "in", "summary_cached": "cached", "summary_output": "out"}
    return tokens, {kind: count * prices[price_keys[kind]] / 1_000_000 for kind, count in tokens.items()}


_clients: dict[tuple[str, str, float], OpenAI] = {}


def summary_client() -> OpenAI:
    """One client per configuration and process (it keeps its connection pool; it is thread-safe)."""
    key = (settings.OPENAI_API_KEY or "missing", settings.OPENAI_BASE_URL, settings.SUMMARY_MODEL_TIMEOUT_SECONDS)
    if key not in _clients:
        _clients[key] = OpenAI(api_key=key[0], base_url=key[1], timeout=key[2], max_retries=0)
    return _clients[key]


def _store_summary(call: Call, extraction: Extraction, *,
                   usage_by_kind: tuple[dict[str, int], dict[str, float]] = ({}, {}), **usage: Any) -> bool:
    """Compare-and-set: the first stored summary wins; a duplicate or late one changes nothing."""
    cost = usage.pop("summary_cost_usd", Decimal(0))
    stored = Call.objects.filter(id=call.id, summarized_at__isnull=True).update(
        summary=extraction.summary, caller_name=extraction.caller_name, reason=extraction.reason,
        outcome=extraction.outcome, action_items=extraction.action_items or [], sentiment=extraction.sentiment,
        follow_up_needed=extraction.follow_up_needed, follow_up_reason=extraction.follow_up_reason,
        summary_cost_usd=F("summary_cost_usd") + cost, cost_usd=F("cost_usd") + cost,
        summarized_at=timezone.now(), summary_claimed_until=None, **usage)
    if stored:
        call_search_refresh(call_id=call.id)  # the summary, reason and caller's name become searchable
        publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
        tokens, token_costs = usage_by_kind

        def count() -> None:
            operator_metrics.call_summarized(outcome=extraction.outcome)
            operator_metrics.tokens_used(tokens=tokens, cost_usd=token_costs)

        transaction.on_commit(count)  # at once outside a transaction
    return stored == 1


def call_summarize(*, call_id: int, client: OpenAI | None = None) -> bool:
    """Summarise the call and extract its fields; False if it was already done. Raises TransientError."""
    call = Call.objects.select_related("business").filter(id=call_id).first()
    if call is None or call.summarized_at is not None:
        return False
    client = client or summary_client()
    voicemail_transcribe(call, client)  # first: the caller's recorded words belong in the summary
    actions = actions_of_call(call)
    caller_spoke = TranscriptEntry.objects.filter(call=call, speaker=TranscriptEntry.Speaker.CALLER).exclude(
        text="[not transcribed]").exists()
    if not caller_spoke:
        # Nothing to summarise: no model call, no cost.
        outcome = actions[0] if actions else "abandoned"
        return _store_summary(call, Extraction(summary="", outcome=outcome, action_items=[],
                                               follow_up_needed=False))
    model = settings.OPENAI_SUMMARY_MODEL
    try:
        completion = client.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": SUMMARY_INSTRUCTIONS},
                      {"role": "user", "content": summary_prompt(call, actions)}],
            response_format={"type": "json_schema",
                             "json_schema": {"name": "call_summary", "strict": True, "schema": SUMMARY_SCHEMA}},
        )
    except (APIConnectionError, APITimeoutError) as exc:
        raise TransientError(f"Summary model unreachable: {exc.__class__.__name__}: {exc}") from exc
    except APIStatusError as exc:
        if exc.status_code == 429 or exc.status_code >= 500:
            raise TransientError(f"Summary model error {exc.status_code}: {exc.message}") from exc
        call_summary_failed(call_id=call.id, error=f"Summary model error {exc.status_code}: {exc.message}")
        return False
    except OpenAIError as exc:
        call_summary_failed(call_id=call.id, error=f"Summary model error: {exc.__class__.__name__}: {exc}")
        return False
    try:
        extraction = Extraction.from_json(completion.choices[0].message.content or "")
    except (ValueError, TypeError) as exc:
        call_summary_failed(call_id=call.id, error=f"The summary model's answer is not valid: {exc}")
        return False
    if actions:
        extraction.outcome = actions[0]  # what the tools did beats what the model thinks happened
    usage = completion.usage
    prompt_tokens = usage.prompt_tokens if usage else 0
    cached = (usage.prompt_tokens_details.cached_tokens or 0) if usage and usage.prompt_tokens_details else 0
    completion_tokens = usage.completion_tokens if usage else 0
    return _store_summary(call, extraction, summary_model=model, summary_input_tokens=prompt_tokens,
                          summary_output_tokens=completion_tokens,
                          summary_cost_usd=summary_cost_usd(model, prompt_tokens, cached, completion_tokens),
                          usage_by_kind=summary_usage_by_kind(model, prompt_tokens, cached, completion_tokens))


def call_summary_failed(*, call_id: int, error: str) -> bool:
    """Give up on the summary: record why, keep the outcome the tools prove (compare-and-set, like a summary)."""
    call = Call.objects.filter(id=call_id).first()
    if call is None:
        return False
    actions = actions_of_call(call)
    outcome = actions[0] if actions else (call.outcome or "")
    stored = Call.objects.filter(id=call_id, summarized_at__isnull=True).update(
        summary_error=error[:4000], outcome=outcome, summarized_at=timezone.now(), summary_claimed_until=None) == 1
    if stored:
        publish_call_changed(call_id=call.id, business_id=call.business_id, status=call.status)
        transaction.on_commit(lambda: operator_metrics.call_summarized(outcome=outcome))
    return stored


def summary_claim(*, call_id: int) -> int | None:
    """Claim the call's summary for one attempt (compare-and-set); the attempt's number, or None if it is
    stored already or another attempt (or its backoff) holds the claim."""
    now = timezone.now()
    claimed = Call.objects.filter(Q(summary_claimed_until__isnull=True) | Q(summary_claimed_until__lte=now),
                                  id=call_id, summarized_at__isnull=True).update(
        summary_attempts=F("summary_attempts") + 1,
        summary_claimed_until=now + timedelta(seconds=settings.SUMMARY_CLAIM_SECONDS))
    if not claimed:
        return None
    return Call.objects.values_list("summary_attempts", flat=True).get(id=call_id)


def call_summary_attempt(*, call_id: int) -> None:
    """One attempt at the call's summary (claimed), then its notifications once the summary is settled.

    A passing model error is retried with backoff up to SUMMARY_MAX_RETRIES times, then recorded; any other
    error is recorded at once (`summary_error`); the notifications then go out without a summary."""
    from calls.tasks import summarize_call

    call = Call.objects.filter(id=call_id).only("summarized_at", "voicemail_status", "voicemail_started_at").first()
    if call is None:
        return  # deleted meanwhile
    if call.summarized_at is None:
        if voicemail_awaited(call):
            return  # the voicemail's recording callback queues the summary; the sweep does after the wait
        attempt = summary_claim(call_id=call_id)
        if attempt is None:
            return  # stored meanwhile (its attempt dispatched the notifications) or another attempt has it
        if attempt > settings.SUMMARY_MAX_RETRIES + 1:
            call_summary_failed(call_id=call_id, error=f"Gave up after {attempt - 1} attempts that did not finish "
                                                      "(the worker stopped during each).")
        else:
            try:
                call_summarize(call_id=call_id)
            except TransientError as exc:
                if attempt <= settings.SUMMARY_MAX_RETRIES:
                    countdown = retry_countdown(attempt - 1)
                    log.warning("Summary of call %s failed (%s); attempt %s in %.0f s", call_id, exc, attempt + 1,
                                countdown)
                    Call.objects.filter(id=call_id, summarized_at__isnull=True).update(
                        summary_claimed_until=timezone.now() + timedelta(seconds=countdown))
                    enqueue(summarize_call, call_id, countdown=countdown)
                    return
                call_summary_failed(call_id=call_id, error=str(exc))
            except Exception as exc:
                # Not a passing trouble of the model's (a bug, a bad row, the time limit): retrying would fail
                # the same way. Recorded, so the call shows why it has no summary and its notifications go out.
                log.exception("Summary of call %s failed", call_id)
                call_summary_failed(call_id=call_id, error=f"The summary failed: {exc.__class__.__name__}: {exc}")
    call_dispatch_notifications(call_id=call_id)


# --- once the summary is settled: the notifications' rows, and their tasks queued ---------------------------

def call_dispatch_notifications(*, call_id: int) -> None:
    """Create the call's email and webhook status rows (once) and queue whatever is still to do."""
    from calls.tasks import deliver_webhook, send_call_email

    call = Call.objects.select_related("business").filter(id=call_id).first()
    if call is None:
        return
    with transaction.atomic():
        notification, _ = CallNotification.objects.get_or_create(call=call)
        if notification.status == CallNotification.Status.QUEUED:
            transaction.on_commit(lambda: enqueue(send_call_email, call_id), robust=True)
        endpoint = WebhookEndpoint.objects.filter(business_id=call.business_id, is_active=True).first()
        if endpoint is not None:
            delivery, _ = WebhookDelivery.objects.get_or_create(
                call=call, event_type=EVENT_CALL_COMPLETED,
                defaults={"endpoint": endpoint, "url": endpoint.url, "message_id": f"msg_{uuid.uuid4().hex}",
                          "payload": call_completed_payload(call)})
            if delivery.status == WebhookDelivery.Status.PENDING:
                transaction.on_commit(lambda: enqueue(deliver_webhook, delivery.id), robust=True)
