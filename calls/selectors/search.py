"""The calls list: filters, full-text search and keyset paging, newest first."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet

from accounts.models import Business
from calls.models import Call, TranscriptEntry
from calls.selectors.caller_names import annotate_customer_name, with_caller_names
from calls.selectors.local_time import UTC, local_day_bounds

# PostgreSQL text search configurations for the languages a business can pick (the calls' search document, the
# FAQ search).
SEARCH_CONFIGS = {"en": "english", "es": "spanish", "fr": "french", "de": "german", "it": "italian",
                  "pt": "portuguese", "nl": "dutch"}

CALLS_PAGE_SIZE = 50
# What a list row (and the CSV) shows; the transcript-sized columns (search_vector, error, …) stay in the table.
CALL_LIST_FIELDS = ("id", "business_id", "started_at", "channel", "status", "outcome", "from_number", "caller_name",
                    "duration_seconds", "cost_usd", "summary", "end_reason")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CallFilters:
    """The calls list's filters; dates are local calendar dates of the business, both ends included."""

    q: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    outcome: str = ""
    status: str = ""
    channel: str = ""

    @property
    def active(self) -> bool:
        return any((self.q, self.date_from, self.date_to, self.outcome, self.status, self.channel))


def _search_query(text: str) -> str | None:
    """A PostgreSQL tsquery (raw syntax) for what a person typed: every word must match, each as a prefix
    ("dav" finds "David"); something that looks like a phone number matches any run of its digits. Built from
    \\w runs only, so nothing the user types is tsquery syntax."""
    squeezed = re.sub(r"[\s().+-]", "", text)
    if squeezed.isdigit() and len(squeezed) >= 3:
        return f"{squeezed}:*"
    words = re.findall(r"\w+", text.lower())[:12]
    return " & ".join(f"{word}:*" for word in words) or None


def calls_filtered(*, business: Business, filters: CallFilters) -> QuerySet[Call]:
    """The business's calls matching the filters (not ordered). On PostgreSQL `q` is a full-text query on each
    call's search document (GIN index); on SQLite it is a substring of the number, name, summary or transcript."""
    rows = Call.objects.filter(business=business)
    if filters.date_from:
        rows = rows.filter(started_at__gte=local_day_bounds(business=business, day=filters.date_from)[0])
    if filters.date_to:
        rows = rows.filter(started_at__lt=local_day_bounds(business=business, day=filters.date_to)[1])
    if filters.outcome:
        rows = rows.filter(outcome=filters.outcome)
    if filters.status:
        rows = rows.filter(status=filters.status)
    if filters.channel:
        rows = rows.filter(channel=filters.channel)
    q = filters.q.strip()
    if q and connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery

        query = _search_query(q)
        if query is None:
            return rows.none()
        rows = rows.filter(search_vector=SearchQuery(query, search_type="raw",
                                                     config=SEARCH_CONFIGS.get(business.language, "simple")))
    elif q:
        said = TranscriptEntry.objects.filter(call=OuterRef("pk"), text__icontains=q)
        rows = rows.filter(Q(from_number__icontains=q) | Q(caller_name__icontains=q) | Q(summary__icontains=q)
                           | Exists(said))
    return rows


def call_cursor(call: Call) -> str:
    """A call's place in the newest-first order, for keyset paging: "<microseconds since 1970>_<id>"."""
    delta = call.started_at - _EPOCH
    return f"{(delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds}_{call.id}"


def parse_call_cursor(value: str | None) -> tuple[dt.datetime, int] | None:
    match = re.fullmatch(r"(-?\d{1,20})_(\d{1,18})", value or "")
    if match is None:
        return None
    try:
        return _EPOCH + dt.timedelta(microseconds=int(match[1])), int(match[2])
    except OverflowError:
        return None


@dataclass(frozen=True)
class CallPage:
    calls: list[Call]
    older: str | None  # cursor for the next (older) page
    newer: str | None  # cursor for the previous (newer) page; None on the first page


def call_list_page(*, business: Business, filters: CallFilters, after: str | None = None, before: str | None = None,
                   per_page: int = CALLS_PAGE_SIZE) -> CallPage:
    """One page of calls, newest first, in one query at any depth: keyset paging on (started_at, id) over the
    (business, started_at, id) index, and no COUNT. `after` pages to older calls, `before` to newer ones."""
    rows = annotate_customer_name(calls_filtered(business=business, filters=filters).only(*CALL_LIST_FIELDS))
    before_key = parse_call_cursor(before)
    after_key = None if before_key else parse_call_cursor(after)
    if before_key:
        at, call_id = before_key
        # The bound on started_at alone is what the index can range-scan; the OR only settles ties.
        newer = list(rows.filter(Q(started_at__gt=at) | Q(started_at=at, id__gt=call_id), started_at__gte=at)
                     .order_by("started_at", "id")[:per_page + 1])
        if len(newer) > per_page:
            calls = with_caller_names(newer[:per_page][::-1])
            return CallPage(calls=calls, older=call_cursor(calls[-1]), newer=call_cursor(calls[0]))
        after_key = None  # back at the top: show the first page as it is now
    elif after_key:
        at, call_id = after_key
        rows = rows.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=call_id), started_at__lte=at)
    found = list(rows.order_by("-started_at", "-id")[:per_page + 1])
    calls = with_caller_names(found[:per_page])
    newer = (call_cursor(calls[0]) if calls else after) if after_key else None
    return CallPage(calls=calls, older=call_cursor(calls[-1]) if len(found) > per_page else None, newer=newer)


def calls_for_export(*, business: Business, filters: CallFilters) -> QuerySet[Call]:
    """Every call matching the filters, newest first, with only the exported columns (stream it with .iterator())."""
    return calls_filtered(business=business, filters=filters).only(*CALL_LIST_FIELDS).order_by("-started_at", "-id")
