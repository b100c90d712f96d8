"""``POST /v1/audio/transcriptions`` of the stand-in: OpenAI's transcription endpoint as the official SDK calls it
(multipart form: ``file``, ``model``, optional ``language`` / ``response_format``), for the summary step's
voicemail transcription.

The stand-in cannot understand speech: it answers `standin.transcription_text` (set by a test), or, unset, a
sentence saying how much audio it got. It checks what OpenAI checks that matters here: a model, a non-empty
file in a format it accepts. Requests are kept in `standin.transcription_requests`.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from voice.offline.realtime.transport import HTTPRequest

ACCEPTED_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")


def multipart_fields(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name → (filename, bytes) of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def _error(message: str, param: str | None = None) -> tuple[int, Any]:
    return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}


def handle_transcription(standin: Any, req: HTTPRequest) -> tuple[int, Any]:
    content_type = req.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        return _error("Expected a multipart/form-data request.")
    fields = multipart_fields(content_type, req.body)
    model = fields.get("model", (None, b""))[1].decode(errors="replace")
    if not model:
        return _error("you must provide a model parameter", "model")
    filename, audio = fields.get("file", (None, b""))
    if not audio:
        return _error("you must provide a file parameter", "file")
    extension = (filename or "").rsplit(".", 1)[-1].lower()
    if extension not in ACCEPTED_EXTENSIONS:
        return _error(f"Invalid file format. Supported formats: {list(ACCEPTED_EXTENSIONS)}", "file")
    language = fields.get("language", (None, b""))[1].decode(errors="replace")
    standin.transcription_requests.append({"model": model, "filename": filename, "bytes": len(audio),
                                           "language": language})
    text = standin.transcription_text
    if text is None:
        text = f"(stand-in transcription of {len(audio)} bytes of {extension} audio)"
    return 200, {"text": text, "usage": {"type": "duration", "seconds": 1}}
