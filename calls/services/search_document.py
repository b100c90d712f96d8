"""The dashboard's search document of a call: rebuilt from what is stored, or appended to as words are said."""

from __future__ import annotations

from django.db import connection

from accounts.models import Business
from calls.models import Call, TranscriptEntry
from calls.selectors import search


def _search_config_sql() -> str:
    """The business's text search configuration (stemming, stop words), as SQL over `b.language`."""
    cases = " ".join(f"WHEN '{code}' THEN '{config}'" for code, config in sorted(search.SEARCH_CONFIGS.items()))
    return f"(CASE b.language {cases} ELSE 'simple' END)::regconfig"


# The call's own columns its search document is built from (with its transcript): whatever changes one of them
# refreshes the document (the operator's admin checks its edits against this).
CALL_SEARCH_FIELDS = ("from_number", "caller_name", "summary", "reason")

# One statement rebuilds a call's document from what is stored, so every writer (the session's flushes, the
# post-call summary, call creation) can run it any number of times with the same result. The caller's digits
# also go in as every suffix of 4+ digits ('simple' config, no stemming), so a prefix query on any run of the
# number ("5552671", "415555") finds it. The transcript is capped: a tsvector must stay under 1 MB.
SEARCH_REFRESH_SQL = f"""
UPDATE {Call._meta.db_table} AS c SET search_vector =
    to_tsvector({_search_config_sql()}, concat_ws(' ', {', '.join(f'c.{name}' for name in CALL_SEARCH_FIELDS)},
        left((SELECT string_agg(t.text, ' ' ORDER BY t."order") FROM {TranscriptEntry._meta.db_table} AS t
              WHERE t.call_id = c.id), 200000)))
    || to_tsvector('simple', coalesce((
        SELECT string_agg(substr(d.digits, i), ' ')
        FROM (SELECT regexp_replace(c.from_number, '[^0-9]', '', 'g') AS digits) AS d,
             generate_series(1, length(d.digits) - 3) AS i), ''))
FROM {Business._meta.db_table} AS b
WHERE b.id = c.business_id AND c.id = %s
"""


def call_search_refresh(*, call_id: int) -> None:
    """Rebuild the call's full-text search document (PostgreSQL; SQLite searches the columns directly): after
    whatever may change or remove words (the summary, an operator's edit)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(SEARCH_REFRESH_SQL, [call_id])


# Appends words said on a live call to its document, reading nothing but the call and its business. It stops
# growing near the size where a rebuild would cap the transcript anyway (a tsvector must stay under 1 MB); the
# rebuild after the summary applies the same cap as always.
SEARCH_APPEND_SQL = f"""
UPDATE {Call._meta.db_table} AS c SET search_vector =
    coalesce(c.search_vector, ''::tsvector) || to_tsvector({_search_config_sql()}, left(%s, 200000))
FROM {Business._meta.db_table} AS b
WHERE b.id = c.business_id AND c.id = %s AND coalesce(pg_column_size(c.search_vector), 0) < 600000
"""


def call_search_append(*, call_id: int, texts: list[str]) -> None:
    """Add newly said words to the call's search document, so a live call is findable by them at once."""
    text = " ".join(t for t in texts if t)
    if connection.vendor != "postgresql" or not text:
        return
    with connection.cursor() as cursor:
        cursor.execute(SEARCH_APPEND_SQL, [text, call_id])
