"""What the receptionist did on a call, in words for the call page: "Checked availability for Cleaning on Tuesday
8 December: 6 free times, 9 am to 4 pm", "Booked Cleaning for Alex Morgan on Monday 7 December at 8 am".

Tool arguments and results are what the model passed and got back, so nothing here trusts their shape: a value
of the wrong type reads as missing, and every sentence still makes sense without it. Times in them are the
business's local "YYYY-MM-DDTHH:MM"; the page reads them in English (the portal's language), in the business's
time zone as they already are.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from accounts.models import Business
from calls.selectors.local_time import say_day, say_local, say_range, say_wall
from calls.selectors.mcp_tools import SEPARATOR as MCP_SEPARATOR

PAGE_LANGUAGE = "en"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _day(value: Any, business: Business) -> str:
    try:
        return say_day(dt.date.fromisoformat(_text(value)), business, PAGE_LANGUAGE)
    except ValueError:
        return _text(value)


def _when(value: Any, business: Business) -> str:
    """A local "YYYY-MM-DDTHH:MM" from a tool as "Monday 7 December at 8 am" (as it came when it is not one)."""
    try:
        return say_local(dt.datetime.fromisoformat(_text(value)).replace(tzinfo=None), business, PAGE_LANGUAGE)
    except ValueError:
        return _text(value)


def _wall(value: Any) -> dt.time | None:
    try:
        return dt.datetime.fromisoformat(_text(value)).time()
    except ValueError:
        return None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _times(count: int) -> str:
    return f"{count} free time{'' if count == 1 else 's'}"


def _slots(slots: list, business: Business) -> str:
    """"6 free times, 9 am to 4 pm" (the first and last start times)."""
    first, last = _wall(slots[0]) if slots else None, _wall(slots[-1]) if slots else None
    if first is None or last is None:
        return _times(len(slots))
    if len(slots) == 1:
        return f"1 free time, at {say_wall(first, PAGE_LANGUAGE)}"
    return f"{_times(len(slots))}, {say_range(first, last, business, PAGE_LANGUAGE)}"


def _availability(args: dict, result: dict, business: Business) -> str:
    service = _text(result.get("service")) or _text(args.get("service"))
    day = _day(result.get("date") or args.get("date"), business)
    head = f"Checked availability{' for ' + service if service else ''} on {day}"
    slots = _list(result.get("slots"))
    if slots:
        return f"{head}: {_slots(slots, business)}"
    text = f"{head}: no free time" + (f" ({_text(result.get('message')).rstrip('.')})" if result.get("message") else "")
    nxt = _dict(result.get("next_available"))
    if nxt:
        text += f"; next free day {_day(nxt.get('date'), business)}, {_slots(_list(nxt.get('slots')), business)}"
    return text


def _booked(args: dict, result: dict, business: Business) -> str:
    service = _text(result.get("service")) or _text(args.get("service")) or "an appointment"
    name = _text(result.get("customer_name")) or _text(args.get("name"))
    when = _when(result.get("start") or args.get("start"), business)
    return f"Booked {service}{' for ' + name if name else ''}" + (f" on {when}" if when else "")


def _found(args: dict, result: dict, business: Business) -> str:
    upcoming = _list(result.get("upcoming"))
    if not upcoming:
        return "Looked up the caller's appointments: none upcoming"
    first = _dict(upcoming[0])
    return (f"Looked up the caller's appointments: {len(upcoming)} upcoming, the next "
            f"{_text(first.get('service')) or 'one'} on {_when(first.get('start'), business)}")


def _lookup(args: dict, result: dict, business: Business) -> str:
    if not result.get("known"):
        return "Looked up the caller: a new caller"
    name = _text(result.get("name"))
    calls = result.get("previous_calls")
    text = f"Looked up the caller: {name or 'known, no name'}"
    if isinstance(calls, int):
        text += f", {calls} earlier call{'' if calls == 1 else 's'}"
    return text


def _business_info(args: dict, result: dict, business: Business) -> str:
    hours = _dict(result.get("hours"))
    if hours:
        intervals = [_text(_dict(i).get("spoken")) for i in _list(hours.get("intervals"))]
        said = (" and ".join(filter(None, intervals)) or "open") if hours.get("open") else "closed"
        return f"Looked up the opening hours for {_day(hours.get('date'), business)}: {said}"
    return "Looked up the business's details and weekly opening hours"


def _faq(args: dict, result: dict, business: Business) -> str:
    found = len(_list(result.get("results")))
    query = _text(args.get("query"))
    return (f"Searched the FAQ{' for “' + query + '”' if query else ''}: "
            f"{found} answer{'' if found == 1 else 's'} found" if found else
            f"Searched the FAQ{' for “' + query + '”' if query else ''}: no answer found")


def _rescheduled(args: dict, result: dict, business: Business) -> str:
    service = _text(result.get("service")) or "an appointment"
    before = f" from {_when(result.get('previous_start'), business)}" if result.get("previous_start") else ""
    return f"Moved {service}{before} to {_when(result.get('start') or args.get('start'), business)}"


def _cancelled(args: dict, result: dict, business: Business) -> str:
    service = _text(result.get("service")) or "an appointment"
    already = " (it was already cancelled)" if result.get("already_cancelled") else ""
    return f"Cancelled {service} on {_when(result.get('start'), business)}{already}"


def _message(args: dict, result: dict, business: Business) -> str:
    name = _text(args.get("name"))
    urgency = _text(args.get("urgency"))
    return (f"Took a message{' from ' + name if name else ''}"
            + (f" ({urgency} urgency)" if urgency and urgency != "normal" else ""))


def _asked(args: dict, result: dict, business: Business) -> str:
    request = _text(args.get("request"))
    return f"Asked the assistant: “{request}”" if request else "Asked the assistant for help"


def _ended(args: dict, result: dict, business: Business) -> str:
    reason = _text(args.get("reason"))
    return f"Decided to end the call after saying goodbye{' (' + reason + ')' if reason else ''}"


def _transfer(args: dict, result: dict, business: Business) -> str:
    reason = _text(args.get("reason"))
    return f"Asked to transfer the call to a person{' (' + reason + ')' if reason else ''}"


_DONE = {
    "check_availability": _availability, "book_appointment": _booked, "find_appointments": _found,
    "lookup_caller": _lookup, "get_business_info": _business_info, "search_faq": _faq,
    "reschedule_appointment": _rescheduled, "cancel_appointment": _cancelled, "take_message": _message,
    "ask_supervisor": _asked, "end_call": _ended, "transfer_to_human": _transfer,
}
# What each tool was trying to do, for a result that is an error.
_TRIED = {
    "check_availability": "check availability", "book_appointment": "book", "find_appointments":
    "find the caller's appointments", "lookup_caller": "look up the caller", "get_business_info":
    "look up the business's details", "search_faq": "search the FAQ", "reschedule_appointment":
    "move an appointment", "cancel_appointment": "cancel an appointment", "take_message": "take a message",
    "transfer_to_human": "transfer the call", "end_call": "end the call", "ask_supervisor": "ask the assistant",
}


def _tried(name: str, args: dict, result: dict, business: Business) -> str:
    if name == "book_appointment" and args.get("start"):
        what = f"book {_text(args.get('service')) or 'an appointment'} on {_when(args.get('start'), business)}"
    elif name == "check_availability" and args.get("date"):
        what = f"check availability on {_day(args.get('date'), business)}"
    else:
        what = _TRIED.get(name, f"use {name}")
    error = _text(result.get("error"))
    alternatives = [_when(a, business) for a in _list(result.get("alternatives"))]
    if alternatives:  # the slot was taken: the error's own list of times is in the machine's format
        return f"Could not {what}: the time was just taken; free instead: {'; '.join(alternatives)}"
    return f"Could not {what}: {error}" if error else f"Could not {what}"


def _mcp_tool(name: str, result: dict) -> str:
    """A call of the business's own MCP tool (`server__tool`): which system, and its (capped) answer."""
    server, _, tool = name.partition(MCP_SEPARATOR)
    if "error" in result:
        return f"Could not use {tool} of {server}: {_text(result.get('error'))}"
    answer = _text(result.get("result"))
    return f"Used {tool} of {server}: {answer[:200]}{'…' if len(answer) > 200 else ''}"


def tool_in_words(name: str, arguments: Any, result: Any, business: Business) -> str:
    """One tool call as a sentence about what was done and what came of it."""
    args, res = _dict(arguments), _dict(result)
    if MCP_SEPARATOR in name:
        return _mcp_tool(name, res)
    if "error" in res:
        return _tried(name, args, res, business)
    describe = _DONE.get(name)
    return describe(args, res, business) if describe else f"Used {name.replace('_', ' ')}"
