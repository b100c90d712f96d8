"""FAQ search: the entries that best answer what the caller asked."""

from __future__ import annotations

import re

from django.db import connection

from accounts.models import Business, FAQEntry
from calls.selectors.search import SEARCH_CONFIGS

_STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from have how i if in is it its me my of on or our so "
    "that the there they this to us was we what when where which who will with would you your".split())


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"\w+", text.lower()) if w not in _STOPWORDS and len(w) > 1]


def _overlap_score(query_words: set[str], entry: FAQEntry) -> int:
    """Shared words (or shared beginnings of 4+ letters, so "park" finds "parking"); the question counts double."""
    def hits(text: str) -> int:
        words = set(_words(text))
        return sum(1 for q in query_words
                   if q in words or (len(q) >= 4 and any(w.startswith(q) or q.startswith(w) for w in words
                                                         if len(w) >= 4)))
    return 2 * hits(entry.question) + hits(entry.answer)


def faq_search(*, business: Business, query: str, limit: int = 3) -> list[FAQEntry]:
    """The FAQ entries best matching `query`: full-text search on PostgreSQL (any word may match, ranked), and
    word overlap where that finds nothing or the database is SQLite."""
    words = _words(query)[:20]
    if not words:
        return []
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        config = SEARCH_CONFIGS.get(business.language, "simple")
        vector = SearchVector("question", weight="A", config=config) + SearchVector("answer", weight="B", config=config)
        search = SearchQuery(words[0], config=config)
        for word in words[1:]:
            search |= SearchQuery(word, config=config)
        ranked = (FAQEntry.objects.filter(business=business)
                  .annotate(document=vector, rank=SearchRank(vector, search)).filter(document=search))
        found = list(ranked.order_by("-rank", "position", "id")[:limit])
        if found:
            return found
    query_words = set(words)
    scored = [(_overlap_score(query_words, entry), entry) for entry in FAQEntry.objects.filter(business=business)]
    scored = [pair for pair in scored if pair[0] > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1].position, pair[1].id))
    return [entry for _, entry in scored[:limit]]
