"""How a call ended up, in one vocabulary: the codes the summary model picks from (stored in `Call.outcome`,
sent in webhooks and CSV exports) and the one label each shows as on the dashboard, the analytics page and in
emails."""

from __future__ import annotations

OUTCOME_LABELS = {
    "booked": "Booked", "rescheduled": "Rescheduled", "cancelled": "Cancelled", "message_taken": "Message taken",
    "answered": "Question answered", "transferred": "Transferred", "abandoned": "Abandoned", "spam": "Spam",
    "other": "Other", "": "No outcome yet",
}
# The codes, in the order the summary's schema and the calls list's filter offer them ("" is a call not yet
# summarised, never a code to pick).
OUTCOMES = [code for code in OUTCOME_LABELS if code]


def outcome_label(code: str) -> str:
    """The label of an outcome code; a code from before this vocabulary reads as its words."""
    code = code or ""
    return OUTCOME_LABELS.get(code) or code.replace("_", " ").capitalize()
