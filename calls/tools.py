"""The business tools the supervisor model calls during a phone call.

`SUPERVISOR_TOOLS` is the tool list for the Chat Completions API; `run_business_tool` runs one tool call and
always returns a JSON-serialisable dict: the result, or {"error": "<a sentence the model can act on>"}.
Every tool is scoped to one business. Times going in and out are the business's local wall time written
"YYYY-MM-DDTHH:MM" without an offset (check_availability's slots are exactly what book_appointment takes); each
time in a result comes with a `*_spoken` twin ("Monday 7 December at 8 am", in the business's language), which
is what the caller hears: the ISO form is for passing back to a tool, never for reading out.

Whatever the model passes is untrusted caller input, and the model is not a guard. Every tool that reads or
changes a customer's data acts on the call's own caller number, read from the Call row (never from the
model): no tool takes a number that selects whose data is read, cancel/reschedule refuse an appointment that
is not the caller's, and a call without a trustworthy number (withheld, or a browser test call) gets no lookup
and no booking, only the offer of a message. Results carry only what the caller may hear: no staff notes, no
message bodies, and names (caller-provided) cleaned and capped.

It is synchronous (it uses the ORM): call it from async code through `sync_to_async`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Business, OpeningHours
from accounts.phone import normalize_e164
from calls.caller_text import NAME_LIMIT, clean_caller_text
from calls.mcp.tools import run_mcp_tool
from calls.models import Appointment, Call, Message
from calls.selectors import availability, callers, faq, local_time
from calls.selectors.mcp_tools import enabled_tool_schemas, is_mcp_function
from calls.services import bookings, messages
from calls.services.errors import ActionError, SlotTaken

log = logging.getLogger(__name__)

Result = dict[str, Any]


@dataclass(frozen=True)
class Context:
    business: Business
    call_id: int | None
    caller_number: str  # the call's own number (E.164) from its Call row; "" when withheld or a browser call


NO_CALLER_NUMBER = (
    "The caller's number is withheld (or this is a browser test call), so on this call nobody's bookings or "
    "records can be looked up, made, moved or cancelled, and no number they give can be used to look them up. "
    "Tell the caller, and offer to take a message with their name and a number to call back so the team can "
    "help.")


def _own_number(ctx: Context) -> str:
    """The caller's own number, the only one whose records the tools touch; ActionError when there is none."""
    if not ctx.caller_number:
        raise ActionError(NO_CALLER_NUMBER)
    return ctx.caller_number


def _name(value: str) -> str:
    """A customer's name (caller-provided) as tool results carry it."""
    return clean_caller_text(value, limit=NAME_LIMIT)


# --- argument parsing -------------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCAL_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(\.\d+)?)?$")
_OFFSET_RE = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def _parse_date(value: str, field: str = "date") -> dt.date:
    try:
        if _DATE_RE.match(value):
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise ActionError(f"{field} must be a calendar date written YYYY-MM-DD, like 2026-11-24; got “{value}”.")


def _parse_start(value: str, business: Business, field: str = "start") -> dt.datetime:
    """A local "YYYY-MM-DDTHH:MM" as an aware UTC datetime."""
    if "T" in value and _OFFSET_RE.search(value.split("T", 1)[1]):
        raise ActionError(f"{field} must be the business's local time without a time-zone offset, "
                          "like 2026-11-24T10:30.")
    match = _LOCAL_RE.match(value)
    try:
        if match is None:
            raise ValueError
        day, wall = dt.date.fromisoformat(match[1]), dt.time.fromisoformat(match[2])
    except ValueError:
        raise ActionError(f"{field} must be a local date and time written YYYY-MM-DDTHH:MM, like 2026-11-24T10:30; "
                          f"got “{value}”.") from None
    instant = local_time.local_to_utc(day, wall, business)
    if instant is None:
        raise ActionError(f"{value} does not exist in {business.time_zone}: the clocks skip that time for daylight "
                          "saving. Choose another time.")
    return instant


def _callback_number(value: str | None, ctx: Context) -> str:
    """The number to call back: the one the caller gave, else their own."""
    if not value:
        if not ctx.caller_number:
            raise ActionError("The caller's number is withheld: ask for a number to call back and pass it as "
                              "callback_number.")
        return ctx.caller_number
    try:
        return normalize_e164(value)
    except ValidationError as exc:
        raise ActionError(f"callback_number is not valid: {exc.messages[0]}") from None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    handler: Callable[[Context, dict[str, Any]], Result]

    def schema(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": self.properties, "required": list(self.required),
                           "additionalProperties": False}}}

    def clean(self, arguments: dict | str) -> dict[str, Any]:
        """Check `arguments` against the parameters; an optional one given as null or "" counts as omitted."""
        arguments = arguments_object(self.name, arguments)
        unknown = sorted(set(arguments) - set(self.properties))
        if unknown:
            allowed = ", ".join(self.properties) or "none"
            raise ActionError(f"{self.name} has no parameter {', '.join(unknown)}. Its parameters are: {allowed}.")
        cleaned: dict[str, Any] = {}
        for key, spec in self.properties.items():
            value = arguments.get(key)
            if isinstance(value, str):
                value = value.strip()
            if value is None or value == "":
                if key in self.required:
                    raise ActionError(f"{self.name} needs {key}: {spec['description']}")
                continue
            cleaned[key] = _check_type(key, spec, value)
        return cleaned


def arguments_object(name: str, arguments: dict | str) -> dict[str, Any]:
    """A tool call's arguments (JSON text or already parsed) as a dict; ActionError the model can act on."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ActionError(f"The arguments were not valid JSON ({exc.msg}). Call {name} again with a JSON "
                              "object.") from None
    if not isinstance(arguments, dict):
        raise ActionError(f"The arguments of {name} must be a JSON object with named parameters.")
    return arguments


def _check_type(key: str, spec: dict[str, Any], value: Any) -> Any:
    if spec["type"] == "integer":
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ActionError(f"{key} must be a whole number, not {json.dumps(value)}.")
        return value
    if not isinstance(value, str):
        raise ActionError(f"{key} must be a string, not {json.dumps(value)}. {spec['description']}")
    if "enum" in spec and value not in spec["enum"]:
        raise ActionError(f"{key} must be one of: {', '.join(spec['enum'])}; got “{value}”.")
    if len(value) > spec.get("maxLength", 2000):
        raise ActionError(f"{key} is too long: at most {spec.get('maxLength', 2000)} characters.")
    return value


# --- results ----------------------------------------------------------------------------------------------

def _wall(value: dt.time) -> str:
    return value.strftime("%H:%M")


def _interval_dicts(intervals: list[tuple[dt.time, dt.time]] | list[availability.OpenInterval],
                    business: Business) -> list[dict[str, str]]:
    pairs = [(i.opens, i.closes) if isinstance(i, availability.OpenInterval) else i for i in intervals]
    return [{"opens": _wall(opens), "closes": _wall(closes),
             "spoken": local_time.say_range(opens, closes, business)} for opens, closes in pairs]


def _local(value: dt.datetime | None, business: Business) -> str | None:
    return local_time.format_local(value, business) if value else None


def _spoken(value: dt.datetime | None, business: Business) -> str | None:
    return local_time.say_local(value, business) if value else None


def _appointment(appointment: Appointment, business: Business) -> Result:
    return callers.appointment_as_dict(appointment, business)


def _alternatives(business: Business, starts_at: dt.datetime, duration_minutes: int,
                  exclude_appointment_id: int | None = None, count: int = 3) -> list[dt.datetime]:
    """Free times closest to a requested one on its day, else the first ones of the next day with any."""
    day = starts_at.astimezone(business.tzinfo).date()
    slots = availability.available_slots(business=business, day=day, duration_minutes=duration_minutes,
                                         exclude_appointment_id=exclude_appointment_id)
    if slots:
        slots = sorted(sorted(slots, key=lambda s: (abs(s - starts_at), s))[:count])  # ties: the earlier
    else:
        _, slots = availability.next_available_slots(business=business, after=day, duration_minutes=duration_minutes,
                                                     exclude_appointment_id=exclude_appointment_id)
        slots = slots[:count]
    return slots


def _slot_taken(business: Business, starts_at: dt.datetime, duration_minutes: int,
                exclude_appointment_id: int | None = None) -> Result:
    alternatives = _alternatives(business, starts_at, duration_minutes, exclude_appointment_id)
    spoken = [local_time.say_local(s, business) for s in alternatives]
    offer = (f"Offer the caller one of these free times instead: {'; '.join(spoken)}." if alternatives
             else "No other free time was found in the next two weeks; offer to take a message.")
    return {"error": f"{bookings.SLOT_TAKEN_MESSAGE} {offer}",
            "alternatives": [local_time.format_local(s, business) for s in alternatives],
            "alternatives_spoken": spoken}


# --- the tools --------------------------------------------------------------------------------------------

def get_business_info(ctx: Context, args: dict[str, Any]) -> Result:
    business, now = ctx.business, timezone.now()
    local = local_time.local_now(business=business, now=now)
    status = availability.open_status(business=business, now=now)
    result: Result = {
        "name": business.name, "address": business.address, "phone": business.phone_number,
        "website": business.website, "time_zone": business.time_zone,
        "now": local_time.format_local(now, business), "today": local.strftime("%A"),
        "now_spoken": local_time.say_local(now, business),
        "open_now": status.open_now, "closes_at": _local(status.closes_at, business),
        "closes_at_spoken": _spoken(status.closes_at, business),
        "next_opening": _local(status.next_opening, business),
        "next_opening_spoken": _spoken(status.next_opening, business),
        "services": [{"name": s.name, "duration_minutes": s.duration_minutes,
                      "price": str(s.price) if s.price is not None else None, "description": s.description}
                     for s in business.services.order_by("name")],
    }
    if "date" in args:
        day = _parse_date(args["date"])
        schedule = availability.Schedule(business, day, day)
        intervals = schedule.intervals(day)
        result["hours"] = {"date": day.isoformat(), "weekday": day.strftime("%A"),
                           "date_spoken": local_time.say_day(day, business), "open": bool(intervals),
                           "closed_reason": schedule.closed_reason(day),
                           "intervals": _interval_dicts(intervals, business)}
    else:
        hours = availability.week_hours(business=business)
        result["week"] = [{"weekday": label, "intervals": _interval_dicts(hours.get(number, []), business)}
                          for number, label in OpeningHours.Weekday.choices]
        result["upcoming_closed_dates"] = [{"date": c.date.isoformat(), "reason": c.reason,
                                            "date_spoken": local_time.say_day(c.date, business)}
                                           for c in availability.upcoming_closed_dates(business=business, now=now)]
    return result


def search_faq(ctx: Context, args: dict[str, Any]) -> Result:
    entries = faq.faq_search(business=ctx.business, query=args["query"])
    result: Result = {"results": [{"question": e.question, "answer": e.answer} for e in entries]}
    if not entries:
        result["hint"] = ("No FAQ entry answers this. Don't guess: say you're not sure and offer to take a message "
                          "so someone can call back.")
    return result


def check_availability(ctx: Context, args: dict[str, Any]) -> Result:
    business, now = ctx.business, timezone.now()
    day = _parse_date(args["date"])
    service = None
    if "service" in args:
        service = availability.service_by_name(business=business, name=args["service"])
        if service is None:
            raise ActionError(availability.unknown_service_message(business=business, name=args["service"]))
    duration = service.duration_minutes if service else availability.DEFAULT_DURATION_MINUTES
    schedule = availability.Schedule(business, day, day)
    intervals = schedule.intervals(day)
    today = local_time.local_now(business=business, now=now).date()
    day_spoken = local_time.say_day(day, business)
    result: Result = {"date": day.isoformat(), "weekday": day.strftime("%A"), "date_spoken": day_spoken,
                      "service": service.name if service else None, "duration_minutes": duration,
                      "slots": [], "slots_spoken": [], "open_intervals": _interval_dicts(intervals, business)}
    if day < today:
        result["message"] = f"That date is in the past. Today is {local_time.say_day(today, business)}."
        return result
    slots = availability.available_slots(business=business, day=day, duration_minutes=duration, now=now,
                                         schedule=schedule)
    result["slots"] = [local_time.format_local(s, business) for s in slots]
    result["slots_spoken"] = local_time.say_times_of_day(slots, business)
    if slots:
        return result
    reason = schedule.closed_reason(day)
    if reason is not None:
        result["message"] = f"Closed on {day_spoken}" + (f" ({reason})." if reason else ".")
    elif not intervals:
        result["message"] = f"Closed on {day:%A}s."
    elif day == today and all(i.closes_at <= now for i in intervals):
        result["message"] = "Closed for the rest of today."
    else:
        result["message"] = f"No free time on {day_spoken} for {duration} minutes: fully booked."
    next_day, next_slots = availability.next_available_slots(business=business, after=day, duration_minutes=duration,
                                                             now=now)
    if next_day is not None:
        result["next_available"] = {"date": next_day.isoformat(), "weekday": next_day.strftime("%A"),
                                    "date_spoken": local_time.say_day(next_day, business),
                                    "slots": [local_time.format_local(s, business) for s in next_slots[:6]],
                                    "slots_spoken": local_time.say_times_of_day(next_slots[:6], business)}
    return result


def book_appointment(ctx: Context, args: dict[str, Any]) -> Result:
    business = ctx.business
    phone = _own_number(ctx)
    starts_at = _parse_start(args["start"], business)
    try:
        appointment = bookings.appointment_book(
            business_id=business.id, service_name=args["service"], customer_name=args["name"], phone=phone,
            start=starts_at, notes=args.get("notes", ""), call_id=ctx.call_id)
    except SlotTaken:
        service = availability.service_by_name(business=business, name=args["service"])
        return _slot_taken(business, starts_at, service.duration_minutes if service else 30)
    return {"appointment_id": appointment.id, "status": str(appointment.status), "service": appointment.service_name,
            "start": local_time.format_local(appointment.starts_at, business),
            "end": local_time.format_local(appointment.ends_at, business),
            "start_spoken": local_time.say_local(appointment.starts_at, business),
            "customer_name": _name(appointment.customer.name), "phone": appointment.customer.phone}


def find_appointments(ctx: Context, args: dict[str, Any]) -> Result:
    business = ctx.business
    phone = _own_number(ctx)
    customer = callers.customer_by_phone(business_id=business.id, phone=phone)
    if customer is None:
        return {"phone": phone, "customer_name": None, "upcoming": [], "recent_past": [],
                "message": "Nothing is booked under the number the caller is calling from. If they booked under "
                           "another number, offer to take a message so the team can help."}
    upcoming = callers.upcoming_appointments(customer=customer)
    return {"phone": phone, "customer_name": _name(customer.name),
            "upcoming": [_appointment(a, business) for a in upcoming],
            "recent_past": [_appointment(a, business) for a in callers.past_appointments(customer=customer)]}


def reschedule_appointment(ctx: Context, args: dict[str, Any]) -> Result:
    business = ctx.business
    phone = _own_number(ctx)
    starts_at = _parse_start(args["start"], business)
    before = callers.appointment_for_business(business_id=business.id, appointment_id=args["appointment_id"],
                                              customer_phone=phone)
    try:
        appointment = bookings.appointment_reschedule(business_id=business.id, appointment_id=args["appointment_id"],
                                                      start=starts_at, customer_phone=phone)
    except SlotTaken:
        minutes = int((before.ends_at - before.starts_at).total_seconds() // 60) if before else 30
        return _slot_taken(business, starts_at, minutes, exclude_appointment_id=args["appointment_id"])
    return {**_appointment(appointment, business),
            "previous_start": local_time.format_local(before.starts_at, business) if before else None,
            "previous_start_spoken": local_time.say_local(before.starts_at, business) if before else None}


def cancel_appointment(ctx: Context, args: dict[str, Any]) -> Result:
    business = ctx.business
    phone = _own_number(ctx)
    before = callers.appointment_for_business(business_id=business.id, appointment_id=args["appointment_id"],
                                              customer_phone=phone)
    appointment = bookings.appointment_cancel(business_id=business.id, appointment_id=args["appointment_id"],
                                              customer_phone=phone)
    already = before is not None and before.status == Appointment.Status.CANCELLED
    return {**_appointment(appointment, business), "already_cancelled": already}


def lookup_caller(ctx: Context, args: dict[str, Any]) -> Result:
    business = ctx.business
    phone = _own_number(ctx)
    customer = callers.customer_by_phone(business_id=business.id, phone=phone)
    if customer is None:
        return {"known": False, "phone": phone}
    this_call = ctx.call_id is not None and customer.last_call_id == ctx.call_id
    # Never staff notes; of messages, only when the caller left them and whether the team dealt with them: a
    # spoofed caller ID must not read back what was said on earlier calls.
    return {
        "known": True, "phone": phone, "name": _name(customer.name),
        "previous_calls": max(0, customer.call_count - (1 if this_call else 0)),
        "first_seen": local_time.format_local(customer.first_seen_at, business),
        "first_seen_spoken": local_time.say_day(customer.first_seen_at.astimezone(business.tzinfo).date(), business),
        "upcoming_appointments": [_appointment(a, business)
                                  for a in callers.upcoming_appointments(customer=customer, limit=5)],
        "messages_left": [{"left_at": local_time.format_local(m.created_at, business),
                           "left_at_spoken": local_time.say_local(m.created_at, business), "urgency": m.urgency,
                           "status": m.status}
                           for m in callers.messages_left_from(business_id=business.id, phone=phone)],
    }


def take_message(ctx: Context, args: dict[str, Any]) -> Result:
    callback_number = _callback_number(args.get("callback_number"), ctx)
    message = messages.message_take(business_id=ctx.business.id, call_id=ctx.call_id,
                                    caller_number=ctx.caller_number, name=args["name"],
                                    callback_number=callback_number, body=args["message"],
                                    urgency=args.get("urgency", Message.Urgency.NORMAL))
    return {"message_id": message.id, "status": "saved"}


# --- the contract -----------------------------------------------------------------------------------------

_DATE = {"type": "string", "description": "A date in the business's local calendar, YYYY-MM-DD (e.g. 2026-11-24)."}
_START = {"type": "string", "maxLength": 40,
          "description": "Start in the business's local time, YYYY-MM-DDTHH:MM with no offset (e.g. "
                         "2026-11-24T10:30): one of the slots from check_availability."}
_SERVICE = {"type": "string", "maxLength": 120,
            "description": "A service name as listed by get_business_info (case does not matter)."}
_APPOINTMENT_ID = {"type": "integer", "description": "The appointment_id from find_appointments or book_appointment."}
_WITHHELD = (" When the caller's number is withheld (or on a browser test call) it refuses: offer to take a "
             "message instead.")

TOOLS: dict[str, Tool] = {tool.name: tool for tool in [
    Tool("get_business_info",
         "The business's name, address, phone, website, the current local date and time, whether it is open "
         "now (and when it next opens or closes), its services with durations and prices, and its opening "
         "hours: for one date if given, else for the whole week with upcoming closed dates.",
         {"date": {**_DATE, "description": _DATE["description"] + " Omit for the weekly hours."}}, (),
         get_business_info),
    Tool("search_faq",
         "Search the business's frequently asked questions. Returns at most 3 entries (question, answer), "
         "best first, or an empty list with a hint.",
         {"query": {"type": "string", "maxLength": 300, "description": "The caller's question, in a few words."}},
         ("query",), search_faq),
    Tool("check_availability",
         "Free start times on one date, in the business's local time. slots are YYYY-MM-DDTHH:MM strings that "
         "book_appointment accepts as start (say them to the caller as slots_spoken and date_spoken put them); "
         "the whole service fits after each. When nothing is free, message "
         "says why (past date, closed, fully booked) and next_available offers the next day with free times.",
         {"date": _DATE, "service": {**_SERVICE, "description": _SERVICE["description"]
                                     + f" Omit for a {availability.DEFAULT_DURATION_MINUTES}-minute slot."}},
         ("date",), check_availability),
    Tool("book_appointment",
         "Book a service at a free start time (check availability first) under the number the caller is calling "
         "from: the booking belongs to that number's customer record (created if new). It cannot book under "
         "another number." + _WITHHELD + " If the time was just taken, the error lists free alternatives.",
         {"name": {"type": "string", "maxLength": 120, "description": "The customer's name, as they said it."},
          "service": _SERVICE, "start": _START,
          "notes": {"type": "string", "maxLength": 1000, "description": "Anything the team should know (optional)."}},
         ("name", "service", "start"), book_appointment),
    Tool("find_appointments",
         "The caller's own upcoming booked appointments (and their last few past ones), found by the number "
         "they are calling from, with appointment_id, service, local start and end, and status." + _WITHHELD,
         {}, (), find_appointments),
    Tool("reschedule_appointment",
         "Move one of the caller's own booked, upcoming appointments to a new free start time; it keeps its id, "
         "service and length. Another number's appointment is refused: offer to take a message instead."
         + _WITHHELD,
         {"appointment_id": _APPOINTMENT_ID, "start": _START}, ("appointment_id", "start"), reschedule_appointment),
    Tool("cancel_appointment",
         "Cancel one of the caller's own booked, upcoming appointments. Cancelling one that is already cancelled "
         "changes nothing. Another number's appointment is refused: offer to take a message instead." + _WITHHELD,
         {"appointment_id": _APPOINTMENT_ID}, ("appointment_id",), cancel_appointment),
    Tool("lookup_caller",
         "What the business knows about the number the caller is calling from: name, number of previous calls, "
         "upcoming appointments, and when they left messages and whether they were dealt with; "
         "{\"known\": false} for a new caller." + _WITHHELD,
         {}, (), lookup_caller),
    Tool("take_message",
         "Save a message for the team to call the person back. Works on every call, also when the number is "
         "withheld.",
         {"name": {"type": "string", "maxLength": 120, "description": "Who the message is from."},
          "callback_number": {"type": "string", "maxLength": 32,
                              "description": "Number to call back, international format (e.g. +14155552671). "
                                             "Omit it to use the number the caller is calling from."},
          "message": {"type": "string", "maxLength": 2000, "description": "What the caller wants, in their words."},
          "urgency": {"type": "string", "enum": list(Message.Urgency.values),
                      "description": "How urgent it is: low, normal (the default) or high."}},
         ("name", "message"), take_message),
]}

SUPERVISOR_TOOLS: list[dict[str, Any]] = [tool.schema() for tool in TOOLS.values()]
# The tools that change something for the caller: after the call stopped waiting for an answer they must not run.
WRITE_TOOLS = frozenset({"book_appointment", "reschedule_appointment", "cancel_appointment", "take_message"})


def supervisor_tools(*, business_id: int) -> list[dict[str, Any]]:
    """The built-in tools and the business's enabled MCP tools (`server__tool`), read from the database: the
    servers are listed on save, on demand and on a schedule, never during a call's steps."""
    return SUPERVISOR_TOOLS + enabled_tool_schemas(business_id=business_id)


def run_business_tool(*, business_id: int, call_id: int | None, name: str, arguments: dict | str,
                      wait_at_most: float | None = None) -> dict:
    """Run one supervisor tool call for one business, on behalf of the caller of `call_id`. Never raises:
    problems come back as {"error": ...}.

    The caller's identity is the call's own number from its Call row (of this business); without a call there
    is none, and the tools that touch a customer's data refuse. A `server__tool` name is one of the business's
    own MCP tools (calls/mcp/), waited for at most `wait_at_most` seconds (and MCP_CALL_TIMEOUT_SECONDS)."""
    tool = TOOLS.get(name)
    if tool is None and not is_mcp_function(name):
        return {"error": f"There is no tool called “{name}”. The tools are: {', '.join(TOOLS)}."}
    try:
        if tool is None:
            return run_mcp_tool(business_id=business_id, call_id=call_id, function=name,
                                arguments=arguments_object(name, arguments), wait_at_most=wait_at_most)
        args = tool.clean(arguments)
        business = Business.objects.filter(id=business_id).first()
        if business is None:
            return {"error": "This business no longer exists."}
        call = Call.objects.filter(id=call_id, business_id=business_id).first() if call_id is not None else None
        # Another business's call is no call: nothing is linked to it and its number is nobody's identity here.
        caller = callers.caller_number_of_call(call)
        return tool.handler(Context(business=business, call_id=call.id if call else None, caller_number=caller),
                            args)
    except ActionError as exc:
        return {"error": str(exc)}
    except Exception:
        log.exception("Business tool %s failed (business %s, call %s)", name, business_id, call_id)
        return {"error": f"Something went wrong on our side while running {name}. Apologise, and offer to take a "
                         "message so someone can call back."}
