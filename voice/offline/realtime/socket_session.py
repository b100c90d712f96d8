"""What every stand-in WebSocket session does whatever protocol it speaks (Realtime or GPT-Live): its tasks,
the received-events log, reading one client event, dropping the connection and the close record.

A subclass calls :meth:`attach` first and provides ``record``, ``tasks``, ``server_closing``, ``input_ms``, ``public_config()`` and
``send_error(err, client_event_id)`` (the error envelope differs between the protocols).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, Awaitable

from voice.offline.realtime.protocol import MAX_LOGGED_EVENTS, _Error

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from voice.offline.realtime.server import RealtimeStandin


class _SocketSession:
    """Protocol-independent plumbing of one WebSocket session (mixed into ``_Session`` and ``_LiveSession``)."""

    def spawn(self, coro: Awaitable) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def attach(self, standin: RealtimeStandin, ws: ServerConnection) -> None:
        """Take the connection and the stand-in's current script; count the session for the ``fail`` knobs."""
        self.standin = standin
        self.ws = ws
        self.ids = standin._ids
        self.script = standin.script
        standin._accepted += 1
        fail = self.script.fail
        # The failure knobs hold for every session, or only for the first `sessions` ones (a reconnect then works).
        self.fail = fail if standin._accepted <= int(fail.get("sessions") or 10**9) else {}

    # server event types sent without an ``event_id`` (GPT-Live's primary-socket output audio)
    _WITHOUT_EVENT_ID: frozenset[str] = frozenset()

    async def send(self, event: dict) -> None:
        if event["type"] not in self._WITHOUT_EVENT_ID:
            event["event_id"] = self.ids.new("event")
        sent = self.record["events_sent"]
        sent[event["type"]] = sent.get(event["type"], 0) + 1
        await self.ws.send(json.dumps(event, separators=(",", ":")))

    def note_received(self, etype: str) -> None:
        rec = self.record
        rec["events_received_total"] += 1
        counts = rec["event_counts"]
        counts[etype] = counts.get(etype, 0) + 1
        if len(rec["events_received"]) < MAX_LOGGED_EVENTS:
            rec["events_received"].append(etype)

    async def read_event(self, message: str | bytes) -> tuple[dict, str, str | None] | None:
        """Parse one client message into ``(event, type, client event_id)``, noting it in the log; a message that is
        not a JSON object with a ``type`` is answered with an ``error`` (the socket stays open) and gives None."""
        try:
            event: Any = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self.note_received("(invalid json)")
            await self.send_error(_Error("invalid_json", "The server could not parse the event: invalid JSON."))
            return None
        if not isinstance(event, dict):
            self.note_received("(invalid event)")
            await self.send_error(_Error("invalid_type", "Invalid event: expected a JSON object.", None))
            return None
        etype = event.get("type")
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        self.note_received(etype if isinstance(etype, str) else "(missing type)")
        if not isinstance(etype, str) or not etype:
            await self.send_error(_Error("missing_required_parameter", "Missing required parameter: 'type'.", "type"),
                                  client_event_id)
            return None
        return event, etype, client_event_id

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (simulated upstream failure)."""
        self.server_closing = True
        self.ws.transport.abort()

    async def _drop_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.abort()

    async def close_log(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        ws = self.ws
        rec = self.record
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        if rec["closed_by"] is None:
            if self.server_closing:
                rec["closed_by"] = "server"
            elif rcvd is not None and (ws.protocol.close_rcvd_then_sent or sent is None):
                rec["closed_by"] = "client"
            elif sent is not None:
                rec["closed_by"] = "server"
            else:
                rec["closed_by"] = "client"  # the peer dropped the TCP connection
        if rec["close_code"] is None:
            frame = rcvd if rec["closed_by"] == "client" else (sent or rcvd)
            frame = frame or rcvd or sent
            rec["close_code"] = frame.code if frame is not None else 1006
            rec["close_reason"] = frame.reason if frame is not None else ""
        rec["ended_at"] = time.time()
        rec["session"] = self.public_config()
        rec["input_audio_ms"] = int(self.input_ms)
