"""Formatting for the calls pages: durations, offsets and money."""

from __future__ import annotations

import json
from decimal import Decimal

from django import template

from calls.outcomes import outcome_label as label_of_outcome
from calls.selectors.timeline import format_offset

register = template.Library()


@register.filter
def duration(seconds: int | None) -> str:
    """Seconds as m:ss (h:mm:ss from an hour); empty while unknown."""
    if seconds is None or seconds == "":
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def offset(ms: int | None) -> str:
    """Milliseconds since the call started as m:ss.mmm."""
    return format_offset(ms)


@register.filter
def usd(value: Decimal | float | None, places: int = 4) -> str:
    """A cost in dollars; fractions of a cent matter for per-call model costs, so 4 places by default."""
    if value is None or value == "":
        return ""
    return f"${Decimal(value):,.{int(places)}f}"


@register.filter
def outcome_label(value: str) -> str:
    """An outcome's label in the one vocabulary ("answered" → "Question answered"); empty stays empty, so a page
    picks its own placeholder for a call not yet summarised."""
    return label_of_outcome(value) if value else ""


@register.filter
def code_words(value: str) -> str:
    """Any other stored code as words: "caller_hung_up" → "Caller hung up"."""
    return (value or "").replace("_", " ").capitalize()


@register.filter
def compact_json(value: object) -> str:
    """A tool's arguments or result as one line of JSON (autoescaped by the template)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def pretty_json(value: object) -> str:
    """A raw payload, indented, for the "details" disclosure of a timeline line (autoescaped by the template)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2, default=str)
