"""What our server tells the model about the business, read back from what it sends: the stand-in knows a
business only from the wire, as the real model does.

A real model reads the instructions of ``session.update`` (the agent's, built by ``voice.agent``) and the
supervisor's system prompt (which quotes the same instructions) and answers for that business. The stand-in
reads the same text with a few patterns so that scripts can speak for whichever business is calling:

* ``{business.name}``: the name in "You are the … receptionist of NAME." (either prompt).
* ``{business.hours}``: a spoken sentence made from the "Opening hours (ZONE):" block ("We're open Monday to
  Friday, 8 am to noon and 1 pm to 5 pm, and Saturday, 9 am to 1 pm."), or one saying none are listed.
* ``{business.service}``: the first service of the "Services:" block, as said in a sentence ("cleaning" for
  "Cleaning"; a name with other capitals, such as "MRI scan", is kept), or "appointment" when none is listed;
  ``{business.a_service}`` the same with "a"/"an" ("a cleaning", "an appointment");
  ``{business.service_name}`` the name exactly as listed, "" when none is (for tool arguments).
* ``{response.verbatim}``: what a Realtime ``response.create``'s instructions (or, on GPT-Live, the content of a
  ``session.instructions.append``) ask to be said word for word ("… exactly this, then wait: TEXT"), as our
  server asks for the greeting.
* GPT-Live sessions read the business from the voice instructions and the backend prompt
  (``delegation.responses.instructions``) together.

``tests/test_demo_mode.py`` checks these patterns against the instructions ``voice.agent`` really builds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

_NAME = re.compile(r"receptionist of (.+?)\. (?:Speak |A junior voice agent)", re.DOTALL)
_HOURS_BLOCK = re.compile(r"^Opening hours \([^)\n]*\):\n((?:- [^\n]*\n?)+)", re.MULTILINE)
_HOURS_LINE = re.compile(r"^- (\w+): (.*)$")
_INTERVAL = re.compile(r"(\d{1,2}):(\d{2})\s*[–-]\s*(\d{1,2}):(\d{2})")
_SERVICES_BLOCK = re.compile(r"^Services:\n((?:- [^\n]*\n?)+)", re.MULTILINE)
_SERVICE_LINE = re.compile(r"^- (.+?): \d+ minutes")
_VERBATIM = re.compile(r"exactly this[^:\n]*:\s*(.+)\s*$", re.DOTALL | re.IGNORECASE)
_WIRE_TEMPLATE = re.compile(r"\{(business\.(?:name|hours|service|a_service|service_name)|response\.verbatim)\}")


@dataclass(frozen=True)
class BusinessFacts:
    """What the prompts say about the business; empty fields were not found."""

    name: str = ""
    hours: dict[str, list[tuple[str, str]]] | None = None  # weekday -> [(opens, closes)] "HH:MM"; None: no block
    services: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return bool(self.name or self.hours is not None or self.services)


def business_facts(text: str) -> BusinessFacts:
    """Read the business out of prompt text (the agent's instructions or the supervisor's system prompt)."""
    text = text or ""
    name = _NAME.search(text)
    hours: dict[str, list[tuple[str, str]]] | None = None
    block = _HOURS_BLOCK.search(text)
    if block:
        hours = {}
        for line in block.group(1).splitlines():
            m = _HOURS_LINE.match(line.strip())
            if m and m.group(1) in WEEKDAYS:
                hours[m.group(1)] = [(f"{a}:{b}", f"{c}:{d}") for a, b, c, d in _INTERVAL.findall(m.group(2))]
    services: list[str] = []
    block = _SERVICES_BLOCK.search(text)
    if block:
        services = [m.group(1).strip() for line in block.group(1).splitlines()
                    if (m := _SERVICE_LINE.match(line.strip()))]
    return BusinessFacts(name=name.group(1).strip() if name else "", hours=hours, services=services)


def spoken_clock(value: str) -> str:
    """"08:00" -> "8 am", "12:00" -> "noon", "13:30" -> "1:30 pm", "00:00" -> "midnight"."""
    hour, minute = (int(part) for part in value.split(":"))
    if minute == 0 and hour in (0, 24):
        return "midnight"
    if minute == 0 and hour == 12:
        return "noon"
    suffix = "am" if hour < 12 else "pm"
    hour12 = hour % 12 or 12
    return f"{hour12} {suffix}" if minute == 0 else f"{hour12}:{minute:02d} {suffix}"


def spoken_hours(hours: dict[str, list[tuple[str, str]]] | None) -> str:
    """A sentence with the week's opening hours, consecutive days with the same hours said together."""
    open_days = [(day, hours[day]) for day in WEEKDAYS if hours and hours.get(day)]
    if not open_days:
        return "We have no opening hours listed at the moment."
    groups: list[tuple[str, str, list[tuple[str, str]]]] = []  # (first day, last day, intervals)
    for day, intervals in open_days:
        if groups and groups[-1][2] == intervals and WEEKDAYS.index(day) == WEEKDAYS.index(groups[-1][1]) + 1:
            groups[-1] = (groups[-1][0], day, intervals)
        else:
            groups.append((day, day, intervals))
    parts = []
    for first, last, intervals in groups:
        days = first if first == last else (f"{first} and {last}" if WEEKDAYS.index(last) == WEEKDAYS.index(first) + 1
                                            else f"{first} to {last}")
        spans = " and ".join(f"{spoken_clock(a)} to {spoken_clock(b)}" for a, b in intervals)
        parts.append(f"{days}, {spans}")
    said = parts[0] if len(parts) == 1 else "; ".join(parts[:-1]) + "; and " + parts[-1]
    return f"We're open {said}."


def spoken_service(name: str) -> str:
    """A service name as said mid-sentence: "Cleaning" -> "cleaning", "Sports massage" -> "sports massage";
    a name with capitals beyond the first letter of each word ("MRI scan", "McKenzie therapy") is kept."""
    words = name.split()
    if words and all(w[:1].isupper() and w[1:] == w[1:].lower() for w in words[:1]) \
            and all(w == w.lower() for w in words[1:]):
        return name[:1].lower() + name[1:]
    return name


def _service(key: str, facts: BusinessFacts) -> str | None:
    if not facts.services and not facts.found:
        return None
    if key == "business.service_name":
        return facts.services[0] if facts.services else ""
    spoken = spoken_service(facts.services[0]) if facts.services else "appointment"
    if key == "business.service":
        return spoken
    return _article(spoken) + " " + spoken


def _article(phrase: str) -> str:
    """"a" or "an", by sound: "an appointment", "an MRI scan" (an acronym is spelt out), "a sports massage"."""
    first = phrase.split()[0] if phrase.split() else ""
    if len(first) > 1 and first.isupper():
        return "an" if first[0] in "AEFHILMNORSX" else "a"
    return "an" if first[:1].lower() in "aeiou" else "a"


def verbatim_request(instructions: str | None) -> str | None:
    """The text a response's instructions ask to be said word for word, if they ask for that."""
    m = _VERBATIM.search(instructions or "")
    return m.group(1).strip() if m else None


def fill_wire_templates(text: str, *, facts: BusinessFacts, verbatim: str | None = None,
                        warnings: list[str] | None = None) -> str:
    """Replace the ``{business.*}`` and ``{response.verbatim}`` templates in ``text``; anything else (JSON
    braces, other templates) is left alone. A value the wire did not carry renders as "" with a warning."""
    def sub(m: re.Match) -> str:
        key = m.group(1)
        value: str | None
        if key == "business.name":
            value = facts.name or None
        elif key == "business.hours":
            value = spoken_hours(facts.hours) if facts.hours is not None else None
        elif key in ("business.service", "business.a_service", "business.service_name"):
            value = _service(key, facts)
        else:
            value = verbatim
        if value is None:
            if warnings is not None:
                warnings.append(f"{{{key}}}: not found in what the client sent")
            return ""
        return value
    return _WIRE_TEMPLATE.sub(sub, text)


def has_wire_templates(text: str | None) -> bool:
    return bool(text and _WIRE_TEMPLATE.search(text))


class _WireText:
    """Script text filled from what the client sent (mixed into both sessions). Needs ``config["instructions"]``
    (the voice model's instructions) and ``record["warnings"]``."""

    def wire_prompt(self) -> str:
        """The prompt text the business is read from (the voice model's instructions)."""
        return self.config.get("instructions") or ""

    def fill_wire(self, text: str, verbatim: str | None = None) -> str:
        """Fill a script text's ``{business.*}`` / ``{response.verbatim}`` templates from what the client sent;
        a missing value is recorded in the session's warnings."""
        if not has_wire_templates(text):
            return text
        return fill_wire_templates(text, facts=business_facts(self.wire_prompt()),
                                   verbatim=verbatim, warnings=self.record["warnings"])

    def fill_wire_arguments(self, arguments: str) -> str:
        """The same for a tool call's JSON arguments: templates in its string values, so the JSON stays valid."""
        if not has_wire_templates(arguments):
            return arguments
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return self.fill_wire(arguments)

        def fill(value: Any) -> Any:
            if isinstance(value, str):
                return self.fill_wire(value)
            if isinstance(value, dict):
                return {key: fill(v) for key, v in value.items()}
            if isinstance(value, list):
                return [fill(v) for v in value]
            return value
        return json.dumps(fill(parsed))
