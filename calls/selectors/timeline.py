"""One call's page: its timeline of turns and events, turn latency and its percentiles, and its cost."""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from accounts.models import Business
from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry
from calls.selectors.caller_names import caller_display_name, caller_note
from calls.selectors.timeline_words import tool_in_words


def format_offset(ms: int | None) -> str:
    """Milliseconds since the call started as m:ss.mmm."""
    if ms is None:
        return ""
    minutes, rest = divmod(int(ms), 60_000)
    return f"{minutes}:{rest // 1000:02d}.{rest % 1000:03d}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation between closest ranks (PostgreSQL's `percentile_cont`);
    None for no values. The standard library's `statistics.quantiles` does the interpolating."""
    if not values:
        return None
    if len(values) == 1:  # `quantiles` wants two points (before Python 3.13)
        return float(values[0])
    cut = Fraction(q).limit_denominator(1000)  # q as i/n: the i-th of the n-quantiles' cut points
    if cut <= 0:
        return float(min(values))
    if cut >= 1:
        return float(max(values))
    return statistics.quantiles(values, n=cut.denominator, method="inclusive")[cut.numerator - 1]


@dataclass
class TimelineItem:
    """One line of a call's timeline: a turn (`entry`) or an event (`event`), at `offset_ms` from the start.

    `who` and `text` are the line as a person reads it; `details` are the raw payloads behind it (the event's,
    and those of the steps folded into it), shown only on request."""

    offset_ms: int
    kind: str  # "caller", "agent" or a CallEvent kind
    entry: TranscriptEntry | None = None
    event: CallEvent | None = None
    latency_ms: int | None = None  # agent turns: caller's end of speech to the agent's first audio
    who: str = ""
    text: str = ""
    details: list[dict] = field(default_factory=list)

    @property
    def offset(self) -> str:
        return format_offset(self.offset_ms)

    @property
    def payload(self) -> dict:
        return getattr(self.event, "payload", None) or {}


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50: float | None
    p95: float | None
    max: int | None
    # The silence the voice detector waited for before ending each caller turn, as the call's session had it
    # configured: part of every figure. None when the turns don't say (calls recorded before it was stored).
    vad_silence_ms: int | None = None


def vad_silence_of(events: list[CallEvent]) -> int | None:
    """The VAD silence the call's latency events were measured with, if they all agree."""
    values = {e.payload.get("vad_silence_ms") for e in events
              if e.kind == "latency" and isinstance(e.payload, dict)}
    if len(values) == 1:
        value = values.pop()
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return None


@dataclass(frozen=True)
class CostBreakdown:
    """Call.cost_usd is everything: the voice model (added at finalisation), the supervisor (on GPT-Live: its
    delegation backend) and the summary. `realtime_usd` is the voice model's part, whichever engine."""

    realtime_usd: Decimal
    supervisor_usd: Decimal
    summary_usd: Decimal
    total_usd: Decimal


@dataclass(frozen=True)
class CallDetail:
    call: Call
    timeline: list[TimelineItem]
    latency: LatencyStats
    cost: CostBreakdown
    appointments: list[Appointment]
    messages: list[Message]
    customer: Customer | None
    caller_name: str = ""  # the caller's one name (calls.selectors.caller_names)
    caller_note: str = ""  # beside it: the number, or who made a test call


# Events not drawn on the timeline: usage is in the cost breakdown, latency sits next to its agent turn.
HIDDEN_EVENT_KINDS = frozenset({"usage"})
# A latency event is written when the agent's first audio of a turn arrives, right after the turn's start_ms.
LATENCY_MATCH_MS = 500


def call_timeline(entries: list[TranscriptEntry], events: list[CallEvent],
                  business: Business) -> tuple[list[TimelineItem], list[int]]:
    """Merge transcript entries and events by when they happened (turns first on a tie), put each latency next
    to the agent turn it measured, and say each event in words. A caller's turn is placed where the caller began
    to speak, not where its transcription arrived (seconds later, often after the agent had answered); a turn
    with no start time takes its end, else the previous turn's offset. Returns the timeline and every latency in
    ms."""
    items: list[TimelineItem] = []
    last_offset = 0
    agent_turns: list[TimelineItem] = []
    for entry in sorted(entries, key=lambda e: e.order):
        offset = entry.start_ms if entry.start_ms is not None else (
            entry.end_ms if entry.end_ms is not None else last_offset)
        last_offset = offset
        item = TimelineItem(offset_ms=offset, kind=entry.speaker, entry=entry,
                            who="Caller" if entry.speaker == TranscriptEntry.Speaker.CALLER else "Receptionist",
                            text=entry.text)
        items.append(item)
        if entry.speaker == "agent":
            agent_turns.append(item)
    latencies: list[int] = []
    turn_starts = [turn.offset_ms for turn in agent_turns]
    for event in events:
        if event.kind == "latency":
            ms = event.payload.get("ms") if isinstance(event.payload, dict) else None
            if isinstance(ms, (int, float)):
                latencies.append(int(ms))
                i = bisect.bisect_right(turn_starts, event.offset_ms) - 1
                if i >= 0 and event.offset_ms - turn_starts[i] <= LATENCY_MATCH_MS \
                        and agent_turns[i].latency_ms is None:
                    agent_turns[i].latency_ms = int(ms)
                    continue
        if event.kind in HIDDEN_EVENT_KINDS:
            continue
        items.append(TimelineItem(offset_ms=event.offset_ms, kind=event.kind, event=event))
    # Python's sort is stable: turns (added first) stay before events at the same offset, each in its own order.
    items.sort(key=lambda item: (item.offset_ms, 0 if item.entry is not None else 1))
    return _in_words(items, business), latencies


def _in_words(items: list[TimelineItem], business: Business) -> list[TimelineItem]:
    """Say each event in words. The supervisor's bookkeeping (its request, which repeats the agent's
    ask_supervisor line, and each model call) is folded into the details of its next line, and every hang-up
    record (the agent's and the session's end are both stored) becomes one line."""
    shown: list[TimelineItem] = []
    folded: list[TimelineItem] = []
    hangup: TimelineItem | None = None
    for item in items:
        if item.event is None:
            shown.append(item)
            continue
        payload = item.payload
        if item.kind == CallEvent.Kind.SUPERVISOR and payload.get("step") in ("request", "model"):
            folded.append(item)
            continue
        if item.kind == CallEvent.Kind.HANGUP:
            if hangup is not None:
                hangup.details.append(payload)
                hangup.who, hangup.text = "Call ended", _hangup_words(hangup.details)
                continue
            hangup = item
        item.details = [*(f.payload for f in folded), payload] if item.kind == CallEvent.Kind.SUPERVISOR else [payload]
        folded = [] if item.kind == CallEvent.Kind.SUPERVISOR else folded
        item.who, item.text = _event_words(item, business)
        shown.append(item)
    if folded:  # the assistant was asked but recorded no step after (the call ended, or its worker died)
        first = folded[0]
        first.details = [f.payload for f in folded]
        first.who, first.text = "Assistant", "Looked into the request; no answer was recorded"
        shown.append(first)
        shown.sort(key=lambda item: (item.offset_ms, 0 if item.entry is not None else 1))
    return shown


def _words(value: object) -> str:
    return str(value or "").replace("_", " ").strip()


def _hangup_words(payloads: list[dict]) -> str:
    by = next((p["by"] for p in payloads if p.get("by")), "")
    reason = next((p.get("reason") for p in payloads if p.get("by") and p.get("reason")), "") or next(
        (p.get("reason") for p in payloads if p.get("reason")), "")
    because = f" ({_words(reason)})" if reason else ""
    if by == "agent":
        return f"The receptionist hung up{because}"
    if by == "caller":
        return "The caller hung up"
    return f"The call ended{because}"


def _event_words(item: TimelineItem, business: Business) -> tuple[str, str]:
    """(who, what) for one event."""
    p, kind = item.payload, item.kind
    if kind == CallEvent.Kind.TOOL_CALL:
        return "Receptionist", tool_in_words(str(p.get("name") or ""), p.get("arguments"), p.get("result"), business)
    if kind == CallEvent.Kind.SUPERVISOR:
        step = p.get("step")
        if step == "tool":
            name = str(p.get("name") or p.get("tool") or "")
            return "Assistant", tool_in_words(name, p.get("arguments"), p.get("result"), business)
        if step == "answer":
            return "Assistant", f"Answered: “{_words(p.get('answer'))}”"
        return "Assistant", f"Could not finish: {p.get('error') or _words(step)}"
    if kind == CallEvent.Kind.HANGUP:
        return "Call ended", _hangup_words([p])
    if kind == CallEvent.Kind.BARGE_IN:
        heard = p.get("heard_ms")
        sent = p.get("sent_ms")
        part = (f" ({heard / 1000:.1f} s of its {sent / 1000:.1f} s reply was heard)"
                if isinstance(heard, (int, float)) and isinstance(sent, (int, float)) else "")
        return "Caller", f"Talked over the receptionist{part}"
    if kind == CallEvent.Kind.TRANSFER:
        if p.get("ok"):
            return "Transfer", f"Transferred to {p.get('to')}" + (f" ({p['reason']})" if p.get("reason") else "")
        return "Transfer", "The transfer failed" + (f": {p['error']}" if p.get("error") else "")
    if kind == CallEvent.Kind.ERROR:
        source = f" ({p['source']})" if p.get("source") else ""
        return f"Error{source}", ": ".join(str(x) for x in (p.get("code"), p.get("message")) if x) or "An error"
    if kind == CallEvent.Kind.RECONNECT and p.get("renewal"):
        if p.get("ok"):
            return "Call", "Moved to a fresh AI model session before the current one reached its time cap"
        return "Call", "Could not open a fresh AI model session before the time cap" + (
            f" ({p['error']}); will try again" if p.get("error") else "; will try again")
    if kind == CallEvent.Kind.RECONNECT:
        waited = p.get("waited_ms")
        after = f" after {waited / 1000:.1f} s" if isinstance(waited, (int, float)) else ""
        if p.get("ok"):
            return "Call", f"The line to the AI model dropped ({_words(p.get('cause'))}); reconnected{after}"
        return "Call", (f"The line to the AI model dropped ({_words(p.get('cause'))}); could not reconnect{after}"
                        + (f": {p['error']}" if p.get("error") else ""))
    if kind == CallEvent.Kind.FALLBACK:
        cause = f" ({_words(p.get('cause'))})" if p.get("cause") else ""
        if p.get("action") == "notice":
            return "Call", f"The receptionist was unavailable{cause}; the test call ended with a notice"
        action = "a transfer to " + str(p.get("to")) if p.get("action") == "transfer" else "voicemail"
        if p.get("ok") is False:
            return "Call", f"The receptionist was unavailable{cause}; {action} could not be started"
        return "Call", f"The receptionist was unavailable{cause}; the caller was offered {action}"
    if kind == CallEvent.Kind.VOICEMAIL:
        if p.get("recorded"):
            return "Voicemail", f"The caller left a voicemail of {p.get('seconds')} s"
        return "Voicemail", f"No voicemail: {_words(p.get('reason'))}"
    if kind == CallEvent.Kind.DTMF:
        return "Caller", f"Pressed {p.get('digit')} on the keypad"
    if kind == CallEvent.Kind.LATENCY:
        return "Turn latency", f"{p.get('ms')} ms"
    if kind == CallEvent.Kind.STATUS and p.get("step") == "turn_detection":
        return "Call", f"Listening: a turn ends after {p.get('vad_silence_ms')} ms of silence ({_words(p.get('vad'))})"
    return item.event.get_kind_display(), _words(p.get("step") or p.get("status") or "")


def call_detail(*, call: Call, business: Business | None = None) -> CallDetail:
    """Everything the call page shows, in five queries whatever the number of turns and events (`business` is
    the call's, when the caller has it already)."""
    business = business or call.business
    entries = list(TranscriptEntry.objects.filter(call=call).order_by("order"))
    events = list(CallEvent.objects.filter(call=call).order_by("offset_ms", "order", "id"))
    timeline, latencies = call_timeline(entries, events, business)
    appointments = list(Appointment.objects.filter(business_id=call.business_id, created_by_call=call)
                        .select_related("customer").order_by("starts_at", "id"))
    messages = list(Message.objects.filter(business_id=call.business_id, call=call).select_related("customer")
                    .order_by("created_at", "id"))
    customer = (Customer.objects.filter(business_id=call.business_id, phone=call.from_number).first()
                if call.channel == Call.Channel.TWILIO and call.from_number else None)
    # A call with no number of its own (a browser test call) is the customer's it booked or left a message for.
    customer = customer or next((row.customer for row in [*appointments, *messages] if row.customer), None)
    caller = caller_display_name(call, customer_name=customer.name if customer else "")
    realtime = call.cost_usd - call.supervisor_cost_usd - call.summary_cost_usd
    return CallDetail(
        call=call, timeline=timeline,
        latency=LatencyStats(count=len(latencies), p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95),
                             max=max(latencies) if latencies else None, vad_silence_ms=vad_silence_of(events)),
        cost=CostBreakdown(realtime_usd=realtime, supervisor_usd=call.supervisor_cost_usd,
                           summary_usd=call.summary_cost_usd, total_usd=call.cost_usd),
        appointments=appointments, messages=messages, customer=customer, caller_name=caller,
        caller_note=caller_note(call, caller))
