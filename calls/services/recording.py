"""What a live call records: transcript entries and events, written in batches off the audio path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.search_document import call_search_append


@dataclass
class CallRecord:
    """What a call session collected, written in one go off the audio path."""

    transcripts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def call_events_add(*, call_id: int, events: list[dict[str, Any]]) -> list[CallEvent]:
    """Store events of a call (dicts of offset_ms, kind, payload, optionally created_at), numbered in the given
    order from the call's one event sequence.

    Each writer takes a block of orders by bumping `Call.last_event_order` in the transaction that inserts its
    events: the row lock makes concurrent writers (the session's flush, the supervisor, a Twilio callback) take
    disjoint blocks, and a rolled-back write gives its block up with it."""
    if not events:
        return []
    # No savepoint of its own: inside a caller's transaction it is all or nothing with the rest of the write.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        table = connection.ops.quote_name(Call._meta.db_table)
        # One statement takes the block (Django's update() cannot return the new value).
        cursor.execute(f"UPDATE {table} SET last_event_order = last_event_order + %s WHERE id = %s "
                       f"RETURNING last_event_order", [len(events), call_id])
        row = cursor.fetchone()
        if row is None:
            raise Call.DoesNotExist(f"no call {call_id}")
        last = row[0]
        first = last - len(events) + 1
        fields = {"offset_ms", "kind", "payload", "created_at"}
        return CallEvent.objects.bulk_create(
            [CallEvent(call_id=call_id, order=first + i, **{k: v for k, v in event.items() if k in fields})
             for i, event in enumerate(events)])


def call_record_entries(*, call_id: int, record: CallRecord) -> None:
    """Append transcript entries (numbered by the session) and events (numbered here, from the call's sequence),
    all or nothing: a failed write leaves nothing behind, so the session can send the same batch again.

    The search document gets the new entries' words appended, not rebuilt from the whole transcript (a flush a
    second over a long call would otherwise re-read and re-index everything said so far, each time)."""
    with transaction.atomic():
        if record.events:
            call_events_add(call_id=call_id, events=record.events)  # the call row first: one lock order
        if record.transcripts:
            TranscriptEntry.objects.bulk_create(
                [TranscriptEntry(call_id=call_id, **entry) for entry in record.transcripts], ignore_conflicts=True)
            call_search_append(call_id=call_id, texts=[entry["text"] for entry in record.transcripts])
