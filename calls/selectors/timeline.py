"""One call's page: its timeline of turns and events, turn latency and its percentiles, and its cost."""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry


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
    """One line of a call's timeline: a turn (`entry`) or an event (`event`), at `offset_ms` from the start."""

    offset_ms: int
    kind: str  # "caller", "agent" or a CallEvent kind
    entry: TranscriptEntry | None = None
    event: CallEvent | None = None
    latency_ms: int | None = None  # agent turns: caller's end of speech to the agent's first audio

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
    """Call.cost_usd is everything: the realtime model (added at finalisation), the supervisor and the summary."""

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


# Events not drawn on the timeline: usage is in the cost breakdown, latency sits next to its agent turn.
HIDDEN_EVENT_KINDS = frozenset({"usage"})
# A latency event is written when the agent's first audio of a turn arrives, right after the turn's start_ms.
LATENCY_MATCH_MS = 500


def call_timeline(entries: list[TranscriptEntry], events: list[CallEvent]) -> tuple[list[TimelineItem], list[int]]:
    """Merge transcript entries and events by offset (turns first on a tie) and put each latency next to the
    agent turn it measured. A turn with no start time takes the previous turn's offset. Returns the timeline
    and every latency in ms."""
    items: list[TimelineItem] = []
    last_offset = 0
    agent_turns: list[TimelineItem] = []
    for entry in entries:
        offset = entry.start_ms if entry.start_ms is not None else (
            entry.end_ms if entry.end_ms is not None else last_offset)
        last_offset = offset
        item = TimelineItem(offset_ms=offset, kind=entry.speaker, entry=entry)
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
    return items, latencies


def call_detail(*, call: Call) -> CallDetail:
    """Everything the call page shows, in five queries whatever the number of turns and events."""
    entries = list(TranscriptEntry.objects.filter(call=call).order_by("order"))
    events = list(CallEvent.objects.filter(call=call).order_by("offset_ms", "order", "id"))
    timeline, latencies = call_timeline(entries, events)
    appointments = list(Appointment.objects.filter(business_id=call.business_id, created_by_call=call)
                        .order_by("starts_at", "id"))
    messages = list(Message.objects.filter(business_id=call.business_id, call=call).order_by("created_at", "id"))
    customer = (Customer.objects.filter(business_id=call.business_id, phone=call.from_number).first()
                if call.channel == Call.Channel.TWILIO and call.from_number else None)
    realtime = call.cost_usd - call.supervisor_cost_usd - call.summary_cost_usd
    return CallDetail(
        call=call, timeline=timeline,
        latency=LatencyStats(count=len(latencies), p50=percentile(latencies, 0.5), p95=percentile(latencies, 0.95),
                             max=max(latencies) if latencies else None, vad_silence_ms=vad_silence_of(events)),
        cost=CostBreakdown(realtime_usd=realtime, supervisor_usd=call.supervisor_cost_usd,
                           summary_usd=call.summary_cost_usd, total_usd=call.cost_usd),
        appointments=appointments, messages=messages, customer=customer)
