"""The summary step's part for voicemail: a call's recorded message is fetched from Twilio and transcribed, so
the summary (and the email, and the message on the dashboard) says what the caller said.

Runs inside the summary attempt: while the model or Twilio is away it raises TransientError, and the attempt is
retried with the summary's own backoff ("transcribed when the model is back").
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from openai import APIConnectionError, APIStatusError, APITimeoutError, OpenAI, OpenAIError

from calls.models import Call, Message, TranscriptEntry
from calls.postcall.queueing import TransientError
from calls.services.search_document import call_search_refresh

log = logging.getLogger(__name__)

VOICEMAIL_LABEL = "Voicemail ({seconds} s): "


def _recording_audio(message: Message) -> bytes | None:
    """The recording's WAV; None when Twilio no longer has it (the message then says so)."""
    # voice owns the Twilio client; imported here because voice imports this app at module level.
    from voice.twilio_api import TwilioError, fetch_recording

    try:
        return fetch_recording(message.recording_sid)
    except TwilioError as exc:
        if not exc.permanent:
            raise TransientError(f"Voicemail recording unavailable: {exc}") from exc
        log.warning("Voicemail %s of message %s cannot be fetched: %s", message.recording_sid, message.id, exc)
        return None


def _transcription(client: OpenAI, audio: bytes, language: str) -> str:
    try:
        result = client.audio.transcriptions.create(model=settings.OPENAI_TRANSCRIPTION_MODEL,
                                                    file=("voicemail.wav", audio, "audio/wav"), language=language)
    except (APIConnectionError, APITimeoutError) as exc:
        raise TransientError(f"Transcription model unreachable: {exc.__class__.__name__}: {exc}") from exc
    except APIStatusError as exc:
        if exc.status_code == 429 or exc.status_code >= 500:
            raise TransientError(f"Transcription model error {exc.status_code}: {exc.message}") from exc
        raise
    return (result.text or "").strip()


def voicemail_transcribe(call: Call, client: OpenAI) -> int:
    """Transcribe the call's voicemails not transcribed yet; how many were. The words go into the message's body
    and into the call's transcript as the caller's (so the summary and search see them)."""
    done = 0
    for message in Message.objects.filter(call=call, transcribed_at__isnull=True).exclude(recording_sid=""):
        audio = _recording_audio(message)
        label = VOICEMAIL_LABEL.format(seconds=message.recording_seconds or 0)
        text = ""
        if audio is None:
            body = label + "the recording is no longer available at Twilio."
        else:
            try:
                text = _transcription(client, audio, call.business.language)
            except OpenAIError as exc:  # refused for good (a bad file, a bad model): said, not retried
                log.warning("Voicemail %s could not be transcribed: %s", message.recording_sid, exc)
                body = label + "it could not be transcribed; listen to the recording."
            else:
                body = label + (text or "no words could be made out; listen to the recording.")
        with transaction.atomic():
            if not Message.objects.filter(id=message.id, transcribed_at__isnull=True).update(
                    body=body, transcribed_at=timezone.now()):
                continue  # another attempt got there first
            if text:
                last = TranscriptEntry.objects.filter(call=call).aggregate(last=Max("order"))["last"] or 0
                TranscriptEntry.objects.create(call=call, order=last + 1, speaker=TranscriptEntry.Speaker.CALLER,
                                               text=f"[voicemail] {text}")
        if text:
            call_search_refresh(call_id=call.id)
        done += 1
    return done
