"""The agent's tools (mixed into `CallSession`): ending the call, the transfer to a person, and the hand-off to the
supervisor, whose answer comes back over the channel layer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from django.conf import settings

from accounts.transfers import transfer_number_problem
from calls.caller_text import caller_data_block
from calls.models import Call, CallEvent
from receptionist import metrics as operator_metrics
from voice.session.shared import ResponseState, in_io_threads
from voice.supervisor import SUPERVISOR_FAILED_ANSWER

if TYPE_CHECKING:
    from voice.session.call import CallSession

log = logging.getLogger(__name__)

LATE_ACTION_WORDS = {"book_appointment": "an appointment was booked", "reschedule_appointment": "an appointment was "
                     "moved", "cancel_appointment": "an appointment was cancelled",
                     "take_message": "a message was saved for the team"}


def enqueue_supervisor(kwargs: dict[str, Any]) -> None:
    from voice.tasks import ENQUEUED_AT_HEADER, ask_supervisor

    # When it was queued travels as a message header, not an argument: a worker of the previous release (during
    # a deploy) ignores a header, but would refuse an argument it does not know.
    ask_supervisor.apply_async(kwargs=kwargs, headers={ENQUEUED_AT_HEADER: time.time()})


class _Tools:
    """end_call, transfer_to_human and ask_supervisor (`TOOLS`)."""

    async def _tool_end_call(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        reason = str(arguments.get("reason") or "conversation finished")[:200]
        if not state.spoke:
            state.follow_up = "Say a short, warm goodbye. Do not ask anything else."
        self._wait_for_playback(lambda: self._end_by_agent("agent_ended", reason))
        return {"ok": True, "status": "The call will end after your goodbye."}

    async def _end_by_agent(self, end_reason: str, detail: str = "") -> None:
        try:
            await self.transport.hang_up()
            self.add_event(CallEvent.Kind.HANGUP, by="agent", reason=detail or end_reason)
        except Exception as exc:
            self.add_event(CallEvent.Kind.ERROR, source="twilio", message=f"Hang-up failed: {exc}")
        await self.finish(status=Call.Status.COMPLETED, reason=end_reason)
        await self.transport.close()  # no socket outlives its call, whatever the provider does next

    def allowed_transfer_number(self) -> str:
        """The transfer number if the toll-fraud rules allow dialling it right now (settings may have changed
        since the call started, and the stored number may predate the rules), else ""."""
        number = self.profile.transfer_number if self.profile else ""
        if number and transfer_number_problem(number, home_number=self.profile.phone_number):
            return ""
        return number

    def unavailable_action(self) -> tuple[str, str]:
        """What the caller gets when the model is gone: ("transfer", number) if the business chose transfers and
        its number may be dialled now, else ("voicemail", "")."""
        if self.profile and self.profile.when_unavailable == "transfer":
            number = self.allowed_transfer_number()
            if number:
                return "transfer", number
        return "voicemail", ""

    def arm_transfer(self, reason: str) -> dict[str, Any] | None:
        """Transfer once the agent's words have played; or, when nobody may be dialled now, record why and return
        the error the model gets (either engine)."""
        stored = self.profile.transfer_number if self.profile else ""
        number = self.allowed_transfer_number()
        if not number:
            problem = (transfer_number_problem(stored, home_number=self.profile.phone_number) if stored
                       else "no transfer number")
            self.add_event(CallEvent.Kind.TRANSFER, ok=False, reason=reason, error=problem)
            return {"error": "Nobody is available to take the call right now. Apologise and offer to take a "
                             "message with the caller's name, number and what it is about."}
        self._wait_for_playback(lambda: self._transfer(number, reason))
        return None

    async def _tool_transfer(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
        refused = self.arm_transfer(str(arguments.get("reason") or "")[:200])
        if refused is not None:
            return refused
        if not state.spoke:
            state.follow_up = "Tell the caller in one sentence that you are connecting them to a person now."
        return {"ok": True, "status": "Transferring after you tell the caller."}

    async def _transfer(self, number: str, reason: str) -> None:
        try:
            await self.transport.transfer(number)
        except Exception as exc:
            self.add_event(CallEvent.Kind.TRANSFER, ok=False, to=number, reason=reason, error=str(exc))
            await self.request_speech("The transfer did not go through. Apologise briefly and offer to take a "
                                      "message with the caller's name, number and what it is about.")
            return
        self.add_event(CallEvent.Kind.TRANSFER, ok=True, to=number, reason=reason)
        await self.finish(status=Call.Status.COMPLETED, reason="transferred")
        await self.transport.close()  # the call now runs the <Dial>; our stream is done

    async def _tool_ask_supervisor(self, state: ResponseState, arguments: dict[str, Any], call_id: str) -> dict[str, Any] | None:
        request = str(arguments.get("request") or "").strip()[:2000]
        if not request:
            return {"error": "Put what the caller needs in `request` and call ask_supervisor again."}
        if not self.reply_channel:
            return {"error": "The supervisor is not available on this call. Offer to take a message."}
        # The worker gets the same deadline, as a wall-clock time (it runs elsewhere): after it, it must not book
        # or cancel anything, since the caller has been told it could not be done.
        deadline_at = time.time() + settings.SUPERVISOR_DEADLINE_SECONDS
        self.pending_supervisor[call_id] = asyncio.create_task(self._supervisor_deadline(call_id))
        self.supervisor_asked_at[call_id] = time.monotonic()
        self._tasks.append(asyncio.create_task(self._dispatch_supervisor(call_id, request, deadline_at)))
        return None

    async def _dispatch_supervisor(self, tool_call_id: str, request: str, deadline_at: float) -> None:
        kwargs = {"call_id": self.call_id, "tool_call_id": tool_call_id, "reply_channel": self.reply_channel,
                  "request": request, "conversation": self.conversation[-30:], "deadline_at": deadline_at}
        try:
            # Publishing to the broker (or, embedded, running the task) happens off the event loop's thread.
            await in_io_threads(enqueue_supervisor)(kwargs)
        except Exception as exc:
            log.exception("Call %s: could not hand the request to the supervisor", self.call_id)
            await self.supervisor_answer({"tool_call_id": tool_call_id, "ok": False,
                                          "answer": SUPERVISOR_FAILED_ANSWER, "error": f"queue unavailable: {exc}"})

    async def _supervisor_deadline(self, tool_call_id: str) -> None:
        await asyncio.sleep(settings.SUPERVISOR_DEADLINE_SECONDS)
        if self.pending_supervisor.pop(tool_call_id, None) is None:
            return
        self.add_event(CallEvent.Kind.SUPERVISOR, step="deadline_missed", tool_call_id=tool_call_id,
                       deadline_s=settings.SUPERVISOR_DEADLINE_SECONDS)
        await self._answer_tool(tool_call_id, {"error": "The lookup is taking too long."}, instructions=(
            "Apologise: you could not find that out right now. Offer to take a message with the caller's name, "
            "number and what it is about, so someone from the team calls back."))

    async def supervisor_answer(self, message: dict[str, Any]) -> None:
        """The supervisor's answer arrived over the channel layer."""
        tool_call_id = str(message.get("tool_call_id", ""))
        deadline = self.pending_supervisor.pop(tool_call_id, None)
        asked_at = self.supervisor_asked_at.pop(tool_call_id, None)
        if asked_at is not None:
            operator_metrics.supervisor_round_trip(
                time.monotonic() - asked_at,
                result="late" if deadline is None else "ok" if message.get("ok") else "failed")
        if deadline is None:
            acted = [str(name) for name in message.get("acted") or []][:10]
            if message.get("ok") and acted and not self._finishing:
                # It booked (or cancelled, or saved a message) in time but answered late: the caller heard that it
                # could not be done and might ask again. Tell them what did happen.
                self.add_event(CallEvent.Kind.SUPERVISOR, step="late_answer_relayed", tool_call_id=tool_call_id,
                               acted=acted)
                # The answer is model output shaped by what the caller said: quoted as data, never as instructions.
                note = caller_data_block({"supervisor_answer": str(message.get("answer") or ""), "done": acted},
                                         source="the supervisor's late answer, shaped by the conversation")
                await self._create_response(
                    "Correct what you said a moment ago: the caller's request did go through after all ("
                    + ", ".join(LATE_ACTION_WORDS.get(name, "done") for name in acted) + "). In one or two short "
                    "sentences, in the language of the conversation, tell the caller what was done, using the "
                    "supervisor's answer below, and do not do it again.\n\n" + note)
                return
            log.info("Call %s: dropped a supervisor answer that came after its deadline", self.call_id)
            self.add_event(CallEvent.Kind.SUPERVISOR, step="late_answer_dropped", tool_call_id=tool_call_id)
            return
        deadline.cancel()
        answer = str(message.get("answer") or SUPERVISOR_FAILED_ANSWER)
        if message.get("ok"):
            await self._answer_tool(tool_call_id, {"answer": answer}, instructions="")
        else:
            self.add_event(CallEvent.Kind.SUPERVISOR, step="failed", tool_call_id=tool_call_id,
                           error=str(message.get("error", ""))[:500])
            await self._answer_tool(tool_call_id, {"answer": answer, "error": "lookup failed"}, instructions=(
                f"Apologise and tell the caller: {answer}"))

    async def _answer_tool(self, tool_call_id: str, output: dict[str, Any], *, instructions: str) -> None:
        await self.send_upstream({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": tool_call_id, "output": json.dumps(output)}})
        await self._create_response(instructions)

    async def channel_message(self, message: dict[str, Any]) -> None:
        """A message for this call from elsewhere (workers, the dashboard), via the channel layer."""
        if message.get("type") == "supervisor.answer":
            await self.supervisor_answer(message)

    TOOLS: dict[str, Callable[["CallSession", ResponseState, dict[str, Any], str], Awaitable[dict[str, Any] | None]]] = {
        "ask_supervisor": _tool_ask_supervisor,
        "end_call": _tool_end_call,
        "transfer_to_human": _tool_transfer,
    }
