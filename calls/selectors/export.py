"""The calls list as CSV rows, streamed in keyset chunks and safe to open in a spreadsheet."""

from __future__ import annotations

import datetime as dt

from django.db.models import Q

from accounts.models import Business
from calls.selectors.search import CallFilters, calls_for_export

CSV_COLUMNS = ["id", "started_at", "channel", "status", "outcome", "caller_number", "caller_name",
               "duration_seconds", "cost_usd", "summary", "end_reason"]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection); tab and CR count too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Text that a spreadsheet would read as a formula gets a leading apostrophe; other values pass through."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def calls_csv_chunk(*, business: Business, filters: CallFilters, after: tuple[dt.datetime, int] | None = None,
                    size: int = 500) -> tuple[list[list[object]], tuple[dt.datetime, int] | None]:
    """One chunk of the export: up to `size` rows of matching calls (newest first) after the keyset `after`
    (a call's (started_at, id)), and the key to go on from, None once there are no more. Keyset paging keeps no
    cursor open between chunks, so an async view can stream them with other work between."""
    rows = calls_for_export(business=business, filters=filters)
    if after is not None:
        at, call_id = after
        rows = rows.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=call_id), started_at__lte=at)
    calls = list(rows[:size])
    tz = business.tzinfo
    lines = [[csv_safe(value) for value in (
        call.id, call.started_at.astimezone(tz).isoformat(), call.channel, call.status, call.outcome,
        call.from_number, call.caller_name, "" if call.duration_seconds is None else call.duration_seconds,
        call.cost_usd, call.summary, call.end_reason)] for call in calls]
    return lines, ((calls[-1].started_at, calls[-1].id) if len(calls) == size else None)
