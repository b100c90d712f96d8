"""Local time of a business: its wall clock, the model's "YYYY-MM-DDTHH:MM", a local day's UTC bounds, and times
as people say and read them ("Monday 7 December at 8 am", in the business's language).

Time rules, kept in one place: the database and every comparison use aware UTC datetimes; the business's time
zone is applied only to build a local wall time (opening hours, a caller's "10:30") and to format one for the
model. Adding a duration to a zoneinfo-aware datetime in Python adds wall time, and comparing two of them with
the same tzinfo ignores the DST fold, so neither is ever done with local datetimes here.
"""

from __future__ import annotations

import datetime as dt

from django.utils import timezone, translation
from django.utils.dates import MONTHS, WEEKDAYS

from accounts.models import Business

UTC = dt.timezone.utc
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # how times are written to and read from the model: local, no offset


def local_now(*, business: Business, now: dt.datetime | None = None) -> dt.datetime:
    """The current time as an aware datetime in the business's time zone."""
    return (now or timezone.now()).astimezone(business.tzinfo)


def format_local(value: dt.datetime, business: Business) -> str:
    """An aware datetime as the business's local wall time, "YYYY-MM-DDTHH:MM"."""
    return value.astimezone(business.tzinfo).strftime(LOCAL_FORMAT)


def local_to_utc(day: dt.date, wall: dt.time, business: Business) -> dt.datetime | None:
    """The UTC instant of a local wall time on `day`; None when the clocks skip it (spring-forward gap).

    A wall time that happens twice (autumn fall-back) means its first occurrence.
    """
    naive = dt.datetime.combine(day, wall.replace(tzinfo=None, fold=0))
    instant = naive.replace(tzinfo=business.tzinfo).astimezone(UTC)
    if instant.astimezone(business.tzinfo).replace(tzinfo=None) != naive:
        return None
    return instant


def bound_to_utc(day: dt.date, wall: dt.time, business: Business) -> dt.datetime:
    """An opening or closing time as UTC; one that falls in a DST gap moves forward with the clocks."""
    return dt.datetime.combine(day, wall).replace(tzinfo=business.tzinfo).astimezone(UTC)


def local_day_bounds(*, business: Business, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a local calendar day starts and ends: 23 or 25 hours apart on DST days."""
    return (bound_to_utc(day, dt.time(0), business),
            bound_to_utc(day + dt.timedelta(days=1), dt.time(0), business))


# --- times as people say and read them ------------------------------------------------------------------------
# The model passes "YYYY-MM-DDTHH:MM" back to the tools, but a person hears and reads "Monday 7 December at 8 am",
# in the business's language. Weekday and month names come from Django's own translations; the way the pieces
# are put together is per language, so each language has one pattern for a day and one for a time of day.

_DAY_PATTERNS = {
    "en": "{weekday} {day} {month}", "es": "{weekday} {day} de {month}", "fr": "{weekday} {day} {month}",
    "de": "{weekday}, {day}. {month}", "it": "{weekday} {day} {month}", "pt": "{weekday}, {day} de {month}",
    "nl": "{weekday} {day} {month}",
}
_AT = {"en": "{day} at {time}", "es": "{day} a las {time}", "fr": "{day} à {time}", "de": "{day} um {time}",
       "it": "{day} alle {time}", "pt": "{day} às {time}", "nl": "{day} om {time}"}
_RANGE = {"en": "{start} to {end}", "es": "de {start} a {end}", "fr": "de {start} à {end}",
          "de": "{start} bis {end}", "it": "dalle {start} alle {end}", "pt": "das {start} às {end}",
          "nl": "{start} tot {end}"}
# Languages that write weekday and month names in lower case inside a sentence.
_LOWER_NAMES = frozenset({"es", "fr", "it", "pt", "nl"})


def _language(business: Business, language: str | None = None) -> str:
    """The language to say a time in: `language` when given (the portal's pages are in English), else the
    business's own (what callers hear)."""
    language = language or business.language
    return language if language in _DAY_PATTERNS else "en"


def say_wall(value: dt.time, language: str = "en") -> str:
    """A time of day as people say it: "8 am", "12:30 pm" in English, "8 h 30" in French, "8:30 Uhr" in German."""
    hour, minute = value.hour, value.minute
    if language == "en":
        if minute == 0 and hour in (0, 12):
            return "noon" if hour == 12 else "midnight"
        suffix = "am" if hour < 12 else "pm"
        hour12 = hour % 12 or 12
        return f"{hour12} {suffix}" if minute == 0 else f"{hour12}:{minute:02d} {suffix}"
    if language == "fr":
        return f"{hour} h" if minute == 0 else f"{hour} h {minute:02d}"
    if language == "de":
        return f"{hour} Uhr" if minute == 0 else f"{hour}:{minute:02d} Uhr"
    if language == "pt":
        return f"{hour}h" if minute == 0 else f"{hour}h{minute:02d}"
    if language == "nl":
        return f"{hour}:{minute:02d} uur"
    return f"{hour}:{minute:02d}"  # es, it: "a las 8:00", "alle 8:00"


def say_day(day: dt.date, business: Business, language: str | None = None) -> str:
    """A calendar day as people say it, in the business's language: "Monday 7 December", "lundi 7 décembre"."""
    language = _language(business, language)
    with translation.override(language):
        weekday, month = str(WEEKDAYS[day.weekday()]), str(MONTHS[day.month])
    if language in _LOWER_NAMES:
        weekday, month = weekday.lower(), month.lower()
    return _DAY_PATTERNS[language].format(weekday=weekday, day=day.day, month=month)


def say_local(value: dt.datetime, business: Business, language: str | None = None) -> str:
    """An aware datetime as the business's people say it: "Monday 7 December at 8 am" in its time zone and
    language. A naive one is taken as the business's wall time already."""
    local = value.astimezone(business.tzinfo) if value.tzinfo is not None else value
    language = _language(business, language)
    return _AT[language].format(day=say_day(local.date(), business, language), time=say_wall(local.time(), language))


def say_range(start: dt.time, end: dt.time, business: Business, language: str | None = None) -> str:
    """Two times of day as a span: "9 am to 4 pm"."""
    language = _language(business, language)
    return _RANGE[language].format(start=say_wall(start, language), end=say_wall(end, language))


def say_times_of_day(values: list[dt.datetime], business: Business) -> list[str]:
    """Times on one day as people say them ("9 am", "9:30 am"), the day being said once, beside them."""
    language = _language(business)
    return [say_wall(v.astimezone(business.tzinfo).time(), language) for v in values]
