"""The minutes a call may still use (free trial, hard-capped plan, test-call quota), read off the audio path; near
the end the agent says goodbye, at the end the call ends (mixed into `CallSession`)."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from billing.services.gate import CallAllowance, call_allowance
from calls.models import CallEvent
from voice.session.shared import in_db_pool

log = logging.getLogger(__name__)

# When the call's minutes (free trial, hard-capped plan, test-call quota) are about to run out, the agent is asked
# for a goodbye this long before; the call ends when they run out, goodbye finished or not.
ALLOWANCE_GOODBYE_LEAD_S = 12.0
ALLOWANCE_GOODBYE = {
    "billing_cap_reached": (
        "You have to end this call now: the receptionist's call minutes have run out. In one or two short "
        "sentences, in the language of the conversation, apologise, say that you have to end the call now and "
        "that the caller is welcome to call back later, and say goodbye. Do not ask anything else."),
    "test_call_quota_reached": (
        "You have to end this test call now: today's test-call minutes are used up. In one short sentence, in the "
        "language of the conversation, say so and say goodbye. Do not ask anything else."),
}


class _Allowance:
    """Reading the minutes left and ending the call when they run out."""

    async def _check_allowance(self) -> None:
        """Re-read the minutes this call has left (the database, on the pool: never on the audio path). Other
        calls of the business share them, so the deadline can move either way."""
        asked_at = time.monotonic()
        try:
            allowance: CallAllowance | None = await in_db_pool(call_allowance)(call_id=self.call_id)
        except Exception:
            log.exception("Call %s: could not read the minutes left; keeping the last deadline", self.call_id)
            allowance = None
        if allowance is not None:
            self._apply_allowance(allowance, asked_at=asked_at)
        else:
            self._allowance_checked_at = asked_at

    def allowance_recheck_due(self, now: float) -> bool:
        """Time to read the minutes left again: a capped call every CALL_ALLOWANCE_RECHECK_SECONDS; an uncapped
        one (a metered plan) only every CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS, as only a plan change can cap it."""
        every = (settings.CALL_ALLOWANCE_RECHECK_SECONDS if self.allowance_deadline is not None
                 else settings.CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS)
        return now - self._allowance_checked_at >= every

    def _apply_allowance(self, allowance: CallAllowance, *, asked_at: float) -> None:
        self._allowance_checked_at = asked_at
        if allowance.seconds_left is None:
            self.allowance_deadline, self.allowance_reason = None, ""
        else:
            self.allowance_deadline = asked_at + allowance.seconds_left
            self.allowance_reason = allowance.end_reason

    async def _enforce_allowance(self) -> bool:
        """Ask for the goodbye shortly before the deadline, end the call at it. True once the call is ended."""
        if self.allowance_deadline is None or self._finishing:
            return False
        now = time.monotonic()
        if now >= self.allowance_deadline:
            await self._end_by_agent(self.allowance_reason)
            return True
        # Not before the greeting has started: until its response.created arrives, another response.create
        # would be refused by OpenAI (one response at a time) and the goodbye lost.
        greeting_started = bool(self.items) or self.active_response is not None
        if not self._allowance_goodbye and greeting_started \
                and now >= self.allowance_deadline - ALLOWANCE_GOODBYE_LEAD_S:
            self._allowance_goodbye = True
            self.add_event(CallEvent.Kind.STATUS, step="minutes_running_out", reason=self.allowance_reason,
                           seconds_left=round(self.allowance_deadline - now, 1))
            self._wait_for_playback(lambda: self._end_by_agent(self.allowance_reason))
            await self.request_speech(ALLOWANCE_GOODBYE.get(self.allowance_reason,
                                                            ALLOWANCE_GOODBYE["billing_cap_reached"]))
        return False
