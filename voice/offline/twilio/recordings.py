"""Recordings: what a <Record> left, served like Twilio's Recording resource (mixed into ``TwilioStandin``).

A test plays Twilio's part: it registers the recording Twilio would have made (`add_recording`, WAV bytes) and
posts the recording status callback itself, with `recording_callback_params` as the form. Our server then
fetches the media with the account's credentials: ``GET /2010-04-01/Accounts/{AC}/Recordings/{RE}.wav`` (or
without an extension, which Twilio also answers with WAV) gives the bytes, ``.json`` the resource; a recording
that was never made, or was deleted, is 404/20404. The stand-in keeps WAV only: ``.mp3`` is 404 here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from voice.offline.twilio.common import API_VERSION, RecordedRequest, _now_rfc2822

_RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Recordings/(?P<recording>[^/.]+)"
                             r"(?P<ext>\.wav|\.mp3|\.json)?$")


@dataclass(frozen=True)
class Media:
    """A non-JSON answer: bytes with their content type."""

    data: bytes
    content_type: str


class _Recordings:
    """Recording resources and their routes of a :class:`~voice.offline.twilio.server.TwilioStandin`."""

    def add_recording(self, call_sid: str, audio: bytes, *, duration: int = 5, sid: str | None = None) -> str:
        """Keep `audio` (WAV bytes) as a recording of `call_sid`; returns its SID (RE…)."""
        sid = sid or "RE" + secrets.token_hex(16)
        with self._lock:
            self.recordings[sid] = {"sid": sid, "call_sid": call_sid, "duration": str(duration), "audio": audio,
                                    "date_created": _now_rfc2822(), "status": "completed"}
        return sid

    def delete_recording(self, sid: str) -> None:
        with self._lock:
            self.recordings.pop(sid, None)

    def recording_callback_params(self, sid: str, *, status: str = "completed") -> dict[str, str]:
        """The form Twilio posts to a <Record>'s recordingStatusCallback for this recording."""
        with self._lock:
            recording = self.recordings[sid]
        base = self.base_url or "https://api.twilio.com"
        return {"AccountSid": self.account_sid, "CallSid": recording["call_sid"], "RecordingSid": sid,
                "RecordingUrl": f"{base}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/{sid}",
                "RecordingStatus": status, "RecordingDuration": recording["duration"] if status == "completed" else "0",
                "RecordingChannels": "1", "RecordingStartTime": recording["date_created"],
                "RecordingSource": "RecordVerb"}

    def _handle_recording(self, record: RecordedRequest, match: re.Match,
                          not_found: tuple[int, dict[str, Any]]) -> tuple[int, Any]:
        if record.method != "GET":
            return 405, {"code": 20004, "message": "Method not allowed", "status": 405}
        recording = self.recordings.get(match["recording"])
        if recording is None or match["ext"] == ".mp3":
            return not_found
        if match["ext"] == ".json":
            return 200, {key: value for key, value in recording.items() if key != "audio"} | {
                "account_sid": self.account_sid, "api_version": API_VERSION, "channels": 1, "source": "RecordVerb",
                "media_url": f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Recordings/"
                             f"{recording['sid']}"}
        return 200, Media(recording["audio"], "audio/x-wav")
