"""What the realtime agent is told: instructions built from the business profile, its tools, its session."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Business, OpeningHours
from accounts.transfers import allowed_transfer_number
from accounts.phone import normalize_e164
from calls.caller_text import NAME_LIMIT, caller_data_block, clean_caller_text
from calls.selectors.availability import open_status
from calls.selectors.callers import caller_context
from calls.selectors.mcp_tools import enabled_tool_schemas
from voice.phrases import phrase

LANGUAGE_NAMES = dict(Business.Language.choices)

# Audio formats of the two transports (GA Realtime names).
PHONE_AUDIO = {"type": "audio/pcmu"}          # Twilio: G.711 μ-law, 8 kHz, 8 bytes per ms
BROWSER_AUDIO = {"type": "audio/pcm", "rate": 24000}  # PCM16 24 kHz, 48 bytes per ms

REALTIME_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "ask_supervisor",
        "description": "Ask your supervisor, who can look things up and act: availability, booking, moving or "
                       "cancelling appointments, prices, policies, taking a message, anything you are not sure "
                       "of. Say a short filler such as 'One moment, let me check.' before calling it, then read "
                       "its answer to the caller.",
        "parameters": {"type": "object", "additionalProperties": False, "required": ["request"],
                       "properties": {"request": {"type": "string", "description": (
                           "What the caller needs, with every detail they gave (names, dates, times, numbers).")}}},
    },
    {
        "type": "function",
        "name": "end_call",
        "description": "Hang up once the conversation is finished and you have said goodbye, or the caller "
                       "asks to end the call.",
        "parameters": {"type": "object", "additionalProperties": False,
                       "properties": {"reason": {"type": "string", "description": "Why the call is ending."}}},
    },
    {
        "type": "function",
        "name": "transfer_to_human",
        "description": "Transfer the caller to a person at the business, when they ask for a human or you "
                       "cannot help. Tell them you are transferring them first.",
        "parameters": {"type": "object", "additionalProperties": False,
                       "properties": {"reason": {"type": "string", "description": "Why the caller needs a person."}}},
    },
]


@dataclass(frozen=True)
class AgentProfile:
    """A snapshot of what the agent needs about a business, loaded once when the call starts."""

    business_id: int
    name: str
    greeting: str
    voice: str
    language: str
    transfer_number: str  # as stored; checked against the transfer rules again before it is dialled
    instructions: str
    phone_number: str = ""  # the business's own number: transfers stay in its country
    when_unavailable: str = "voicemail"  # Business.WhenUnavailable: what callers get if the model is gone
    engine: str = "realtime"  # the voice engine answering: the business's choice, else settings.VOICE_ENGINE
    # GPT-Live only: the delegation backend's instructions (the supervisor's, for this business and caller).
    backend_instructions: str = ""
    # GPT-Live only: the business's enabled MCP tools (Chat Completions format), read here, off the audio path.
    mcp_tools: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=lambda: list(REALTIME_TOOLS))


def describe_hours(business: Business) -> str:
    by_day: dict[int, list[str]] = {}
    for interval in business.opening_hours.all():
        by_day.setdefault(interval.weekday, []).append(f"{interval.opens:%H:%M}–{interval.closes:%H:%M}")
    lines = []
    for day, label in OpeningHours.Weekday.choices:
        lines.append(f"- {label}: {', '.join(by_day[day]) if day in by_day else 'closed'}")
    today = timezone.localdate(timezone=business.tzinfo)
    closed = [c for c in business.closed_dates.all() if c.date >= today][:10]
    if closed:
        lines.append("Closed on: " + "; ".join(f"{c.date:%A %d %B %Y}" + (f" ({c.reason})" if c.reason else "")
                                              for c in closed))
    return "\n".join(lines)


PHONE_RULES = (
    "Rules for the phone: keep every reply short (one or two sentences), natural and warm; ask one question at a "
    "time; never read out lists, URLs or symbols; say times the way people speak them; if you did not understand, "
    "ask the caller to repeat. Never invent facts. ")
REALTIME_TOOL_RULES = (
    "You may greet, chat, ask the caller to repeat and collect details yourself; for everything else "
    "(availability, bookings, changes, cancellations, prices, questions you cannot answer from what is below, "
    "taking a message) say a short filler like 'One moment, let me check.' and call ask_supervisor with everything "
    "the caller said, then tell the caller its answer. When the caller is done, say goodbye and call end_call.")
# GPT-Live has no tools of its own: it delegates to a backend (the supervisor's instructions and our tools).
LIVE_DELEGATION_RULES = (
    "Backchannel policy: short acknowledgements only, never while the caller is giving details. Interruption policy: "
    "when the caller talks over you, stop and listen. Delegation policy: you have a backend assistant that can look "
    "things up and act. You may greet, chat, ask the caller to repeat and collect details yourself; delegate to the "
    "backend for availability, bookings, changes, cancellations, prices, questions you cannot answer from what is "
    "below, taking a message, transferring the caller to a person, and ending the call once the caller is done and "
    "you have said goodbye. Delegate before giving an answer that depends on it, tell the caller briefly that you "
    "are checking, never guess the result while waiting, then tell the caller the backend's answer.")


def build_instructions(business: Business, *, now: dt.datetime | None = None, engine: str = "realtime") -> str:
    now = now or timezone.now()
    local_now = timezone.localtime(now, business.tzinfo)
    language = LANGUAGE_NAMES.get(business.language, "English")
    status = open_status(business=business, now=now)
    if status.open_now:
        open_line = f"The business is open now, until {timezone.localtime(status.closes_at, business.tzinfo):%H:%M}."
    elif status.next_opening:
        open_line = (f"The business is closed now; it opens again "
                     f"{timezone.localtime(status.next_opening, business.tzinfo):%A at %H:%M}.")
    else:
        open_line = "The business is closed now."
    services = "\n".join(
        f"- {s.name}: {s.duration_minutes} minutes" + (f", {s.price} " if s.price is not None else "")
        + (f" — {s.description}" if s.description else "")
        for s in business.services.all()) or "- (no services listed)"
    faq = "\n".join(f"Q: {f.question}\nA: {f.answer}" for f in business.faq_entries.all()) or "(none)"
    if not allowed_transfer_number(business):
        transfer = "There is no one to transfer to; offer to take a message instead."
    elif engine == "live":
        transfer = "Your backend can transfer callers to a person."
    else:
        transfer = "You can transfer callers to a person with transfer_to_human."
    parts = [
        f"You are the friendly phone receptionist of {business.name}. Speak {language}. "
        f"It is now {local_now:%A %d %B %Y, %H:%M} in the business's time zone ({business.time_zone}). {open_line}",
        PHONE_RULES + (LIVE_DELEGATION_RULES if engine == "live" else REALTIME_TOOL_RULES) + " " + transfer,
        f"Opening hours ({business.time_zone}):\n{describe_hours(business)}",
        f"Services:\n{services}",
        f"Frequently asked questions:\n{faq}",
    ]
    if business.address:
        parts.append(f"Address: {business.address}")
    if business.extra_instructions:
        parts.append(f"Extra instructions from the business:\n{business.extra_instructions}")
    return "\n\n".join(parts)


def caller_e164(caller_number: str) -> str:
    """The call's number in E.164, or "" (withheld: Twilio passes what the caller's network sent, such as
    "anonymous" or a SIP URI)."""
    try:
        return normalize_e164(caller_number or "")
    except ValidationError:
        return ""


def describe_caller(business: Business, caller_number: str) -> str:
    """What the agent knows about who is calling: the number, and a returning caller's name and bookings.

    `caller_number` is the call's own number from its Call row ("" for a withheld number or a browser test call).
    The name was given by a caller on an earlier call, so it goes in only as quoted caller-provided data."""
    number = caller_e164(caller_number)
    if not number:
        return ("The caller's number is withheld (or this is a browser test call), so nothing is known about who "
                "is calling and nobody's bookings can be looked up or changed; the supervisor can take a message.")
    lines = [f"The caller is calling from {number}."]
    context = caller_context(business_id=business.id, phone=number)
    if context is None:
        return " ".join(lines)
    name = clean_caller_text(context.get("name") or "", limit=NAME_LIMIT)
    if name:
        lines.append("This is a returning caller: greet them by the name in the caller-provided data below.")
    for appointment in context.get("upcoming_appointments", [])[:3]:
        lines.append(f"They have {appointment['service']} booked for {appointment['start_spoken']}.")
    text = " ".join(lines)
    if name:
        text += "\n\n" + caller_data_block({"returning_caller_name": name},
                                            source="the name this caller gave on an earlier call")
    return text


def load_agent_profile(business_id: int, caller_number: str = "") -> AgentProfile:
    business = (Business.objects.prefetch_related("opening_hours", "closed_dates", "services", "faq_entries")
                .get(id=business_id))
    greeting = business.greeting or phrase("default_greeting", business.language, name=business.name)
    engine = business.voice_engine or settings.VOICE_ENGINE
    instructions = build_instructions(business, engine=engine) + "\n\n" + describe_caller(business, caller_number)
    backend_instructions = ""
    mcp_tools: list[dict[str, Any]] = []
    if engine == "live":
        from voice.supervisor import supervisor_system_prompt  # the supervisor's module imports this one

        backend_instructions = supervisor_system_prompt(business, caller_e164(caller_number), engine="live")
        mcp_tools = enabled_tool_schemas(business_id=business.id)
    return AgentProfile(business_id=business.id, name=business.name, greeting=greeting, voice=business.voice,
                        language=business.language, transfer_number=business.transfer_number,
                        when_unavailable=business.when_unavailable, engine=engine,
                        backend_instructions=backend_instructions, mcp_tools=mcp_tools,
                        instructions=instructions, phone_number=business.phone_number)


def session_update(profile: AgentProfile, audio_format: dict[str, Any]) -> dict[str, Any]:
    """The GA `session.update` event for a call."""
    return {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": settings.OPENAI_REALTIME_MODEL,
            "output_modalities": ["audio"],
            "instructions": profile.instructions,
            "audio": {
                "input": {
                    "format": audio_format,
                    "transcription": {"model": settings.OPENAI_TRANSCRIPTION_MODEL, "language": profile.language},
                    "turn_detection": {
                        "type": "server_vad", "threshold": 0.5,
                        "prefix_padding_ms": settings.VAD_PREFIX_PADDING_MS,
                        "silence_duration_ms": settings.VAD_SILENCE_MS,
                        "create_response": True, "interrupt_response": True,
                    },
                },
                "output": {"format": audio_format, "voice": profile.voice},
            },
            "tools": profile.tools,
            "tool_choice": "auto",
        },
    }


def greeting_response(profile: AgentProfile) -> dict[str, Any]:
    """Have the agent speak first: callers expect the business to answer."""
    return {"type": "response.create",
            "response": {"instructions": f"Greet the caller with exactly this, then wait: {profile.greeting}"}}
