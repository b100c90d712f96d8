"""The stand-in's call summary (structured output): a document that fits the request's schema, and what the
request says happened on the call, for the script's ``summary.document`` to quote.

A real summary model reads the request and says what happened; the stand-in reads the same request with a few
patterns (the stand-in only knows what it is sent). The summary request our server builds
(``calls/postcall/summary.py``) says the business's name ("Business: NAME. Call at …"), what the receptionist's
tools actually did ("What the receptionist did: booked, message_taken." or "nothing recorded") and quotes the
transcript as JSON between ``<caller_provided_data>`` markers. Templates a ``summary.document`` string may use:

* ``{call.business}``: the business's name.
* ``{call.outcome}``: the strongest thing done (the first of "what the receptionist did"), else "answered" when
  the caller said something, else "abandoned".
* ``{call.what_happened}``: one sentence saying what was and was not done ("No appointment was booked and no
  message was left.").
* ``{call.caller_name}``: the name the caller gave ("my name is …"), else "".
* ``{call.reason}``: the caller's first words, quoted.
* ``{call.action_items}`` (a list), ``{call.follow_up_needed}`` (true/false), ``{call.follow_up_reason}``: a
  message left means someone must call back.

A string that is exactly one template keeps the value's JSON type (``"{call.action_items}"`` is a list).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_BUSINESS = re.compile(r"^Business: (.+?)\. Call at ", re.MULTILINE)
_DID = re.compile(r"^What the receptionist did: (.+?)\.$", re.MULTILINE)
_DATA = re.compile(r"<caller_provided_data>\s*(\{.*?\})\s*</caller_provided_data>", re.DOTALL)
_CALLER_NAME = re.compile(r"\b(?i:my name is) ([A-Z][\w'’-]+(?: [A-Z][\w'’-]+)?)")
_CALL_TEMPLATE = re.compile(r"\{call\.(business|outcome|what_happened|caller_name|reason|action_items|"
                            r"follow_up_needed|follow_up_reason)\}")

ACTION_WORDS = {"booked": "An appointment was booked", "rescheduled": "An appointment was moved",
                "cancelled": "An appointment was cancelled", "message_taken": "A message was left for the team",
                "transferred": "The caller was transferred to a person"}


@dataclass
class CallFacts:
    business: str = ""
    actions: list[str] = field(default_factory=list)  # strongest first, as the request lists them
    caller_turns: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.actions:
            return self.actions[0]
        return "answered" if self.caller_turns else "abandoned"

    @property
    def caller_name(self) -> str:
        for text in self.caller_turns:
            if m := _CALLER_NAME.search(text):
                return m.group(1)
        return ""

    @property
    def what_happened(self) -> str:
        done = [ACTION_WORDS[a] for a in self.actions if a in ACTION_WORDS]
        said = [w[0].lower() + w[1:] for w in done]
        if not said:
            return "No appointment was booked and no message was left."
        sentence = said[0] if len(said) == 1 else ", ".join(said[:-1]) + " and " + said[-1]
        if "booked" not in self.actions:
            sentence += "; no appointment was booked"
        return sentence[0].upper() + sentence[1:] + "."

    @property
    def follow_up_needed(self) -> bool:
        return "message_taken" in self.actions

    def value(self, key: str) -> Any:
        name = self.caller_name or "the caller"
        if key == "reason":
            return f"The caller said: “{self.caller_turns[0][:200]}”" if self.caller_turns else "Nothing was said."
        if key == "action_items":
            return [f"Call {name} back about their message."] if self.follow_up_needed else []
        if key == "follow_up_reason":
            return f"{name[0].upper() + name[1:]} left a message and is waiting for a call back." \
                if self.follow_up_needed else ""
        return getattr(self, key)


def call_facts(request_text: str) -> CallFacts:
    """What a summary request says about the call (see the module docstring for the patterns)."""
    facts = CallFacts()
    if m := _BUSINESS.search(request_text):
        facts.business = m.group(1)
    if (m := _DID.search(request_text)) and m.group(1) != "nothing recorded":
        facts.actions = [a.strip() for a in m.group(1).split(",") if a.strip()]
    if m := _DATA.search(request_text):
        try:
            data = json.loads(m.group(1))
        except ValueError:
            data = {}
        turns = data.get("transcript") if isinstance(data, dict) else None
        facts.caller_turns = [str(t.get("text", "")) for t in turns or []
                              if isinstance(t, dict) and t.get("speaker") == "caller" and t.get("text")]
    return facts


def fill_call_templates(document: Any, facts: CallFacts) -> Any:
    """Render the ``{call.*}`` templates in the string leaves of ``document``."""
    if isinstance(document, str):
        whole = _CALL_TEMPLATE.fullmatch(document)
        if whole:
            return facts.value(whole.group(1))
        return _CALL_TEMPLATE.sub(lambda m: str(facts.value(m.group(1))), document)
    if isinstance(document, dict):
        return {key: fill_call_templates(value, facts) for key, value in document.items()}
    if isinstance(document, list):
        return [fill_call_templates(value, facts) for value in document]
    return document


def default_document(schema: Any, text: str) -> Any:
    """A value that fits a JSON schema: enums take "other"/"neutral" or their first value, strings quote the request."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return next((v for v in ("other", "neutral") if v in schema["enum"]), schema["enum"][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {key: default_document(sub, text) for key, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    if kind == "string":
        words = " ".join(text.split()[:30])
        return f"Stand-in summary: {words}" if words else "Stand-in summary."
    return None
