"""Everything we say to and check from Twilio: signatures, TwiML, and the two REST calls we make.

The REST functions are synchronous (the twilio client uses requests); sessions call them through
`asyncio.to_thread` so the event loop never waits on Twilio.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, Dial, VoiceResponse

from voice.phrases import SAY_LANGUAGE, SAY_VOICE, language_or_default

log = logging.getLogger(__name__)

DIAL_RING_SECONDS = 25  # how long a transfer rings before Twilio reports no-answer


class TwilioError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


def public_url(path: str) -> str:
    """The URL Twilio signed: our configured public address, never the Host header we were given."""
    return settings.PUBLIC_BASE_URL + path


def media_stream_url() -> str:
    base = settings.PUBLIC_BASE_URL
    scheme = "wss" if base.startswith("https://") else "ws"
    return scheme + "://" + base.split("://", 1)[1] + "/ws/twilio/media/"


def signature_is_valid(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    return validator.validate(public_url(request.get_full_path()), request.POST, signature)


def connect_stream_twiml(*, call_id: int, token: str) -> str:
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=media_stream_url())
    stream.parameter(name="call_id", value=str(call_id))
    stream.parameter(name="token", value=token)
    response.append(connect)
    return str(response)


def dial_result_url() -> str:
    """Where Twilio reports how each <Dial> we emit ended (signature-checked like every webhook)."""
    return public_url("/voice/twilio/dial-result/")


def add_dial(response: VoiceResponse, number: str) -> None:
    """Append the one kind of <Dial> we ever emit: capped in length, with its outcome reported to us."""
    dial = Dial(answer_on_bridge=True, timeout=DIAL_RING_SECONDS,
                time_limit=settings.TRANSFER_TIME_LIMIT_MINUTES * 60,
                action=dial_result_url(), method="POST")
    dial.number(number)
    response.append(dial)


def add_say(response: VoiceResponse, message: str, language: str) -> None:
    language = language_or_default(language)
    response.say(message, voice=SAY_VOICE[language], language=SAY_LANGUAGE[language])


def say_twiml(message: str, *, language: str = "en", transfer_to: str = "") -> str:
    """A spoken message, then a transfer if there is a number, else hang up."""
    response = VoiceResponse()
    add_say(response, message, language)
    if transfer_to:
        add_dial(response, transfer_to)
    else:
        response.hangup()
    return str(response)


def transfer_twiml(number: str) -> str:
    response = VoiceResponse()
    add_dial(response, number)
    return str(response)


def hangup_twiml() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def rest_client() -> Client:
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=TwilioHttpClient(timeout=10))
    if settings.TWILIO_API_BASE_URL:
        client.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
    return client


def hang_up(call_sid: str) -> None:
    """End the call. A call that already ended (404/20404) counts as hung up."""
    try:
        rest_client().calls(call_sid).update(status="completed")
    except TwilioRestException as exc:
        if exc.status == 404 or exc.code == 21220:  # gone, or no longer in progress: already hung up
            return
        raise TwilioError(f"Twilio refused the hang-up: {exc.code} {exc.msg}", permanent=exc.status < 500) from exc
    except Exception as exc:  # network errors from requests
        raise TwilioError(f"Twilio could not be reached to hang up: {exc}") from exc


def redirect_call(call_sid: str, twiml: str) -> None:
    """Replace the call's running TwiML (our media stream) with `twiml`, e.g. a <Dial> transfer."""
    try:
        rest_client().calls(call_sid).update(twiml=twiml)
    except TwilioRestException as exc:
        raise TwilioError(f"Twilio refused the redirect: {exc.code} {exc.msg}", permanent=exc.status < 500) from exc
    except Exception as exc:
        raise TwilioError(f"Twilio could not be reached: {exc}") from exc
