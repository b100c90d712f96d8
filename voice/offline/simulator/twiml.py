"""TwiML as Twilio reads it: classify a voice webhook's answer (stream, dial, say, hang-up, ...)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass
class TwimlResult:
    outcome: str  # stream | dial | say | hangup | reject | redirect | empty | other | invalid | http_error | no_response
    http_status: int | None = None
    verbs: list[str] = field(default_factory=list)
    stream_url: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    say: list[str] = field(default_factory=list)
    dial: str | None = None
    raw: str | None = None


def parse_twiml(text: str) -> TwimlResult:
    """Classify a voice webhook's TwiML. `outcome` is the most significant verb: a bidirectional
    stream beats a transfer, which beats a spoken refusal, which beats a bare hang-up."""
    result = TwimlResult(outcome="invalid", raw=text[:4000])
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return result
    if root.tag != "Response":
        return result
    result.verbs = [child.tag for child in root]
    stream = root.find("Connect/Stream")
    if stream is not None:
        result.stream_url = stream.get("url")
        result.parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    result.say = [(el.text or "").strip() for el in root.iter("Say")]
    dial = root.find("Dial")
    if dial is not None:
        target = (dial.text or "").strip()
        if not target:
            for noun in dial:
                if (noun.text or "").strip():
                    target = f"{noun.tag}:{noun.text.strip()}"
                    break
        result.dial = target
    if result.stream_url:
        result.outcome = "stream"
    elif dial is not None:
        result.outcome = "dial"
    elif result.say:
        result.outcome = "say"
    elif "Hangup" in result.verbs:
        result.outcome = "hangup"
    elif "Reject" in result.verbs:
        result.outcome = "reject"
    elif "Redirect" in result.verbs:
        result.outcome = "redirect"
    elif not result.verbs:
        result.outcome = "empty"
    else:
        result.outcome = "other"
    return result
