"""Everything we say to and check from Twilio: signatures, TwiML, and the REST calls we make (calls and
phone numbers).

The REST functions are synchronous (the twilio client uses requests); sessions call them through
`in_io_threads` (voice/session/shared.py) so neither the event loop nor the database hops wait on Twilio.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Connect, Dial, Record, VoiceResponse

from voice.phrases import SAY_LANGUAGE, SAY_VOICE, language_or_default, phrase

log = logging.getLogger(__name__)

DIAL_RING_SECONDS = 25  # how long a transfer rings before Twilio reports no-answer


class TwilioError(Exception):
    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.code = code  # Twilio's error code (21422, 20404, …) when Twilio answered
        self.status = status  # the HTTP status Twilio answered with


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


def connect_stream_twiml(*, call_id: int, token: str, language: str = "en") -> str:
    """The media stream, then what Twilio does if our server closes the socket without ending the call (a stream
    refused during a deploy's drain, a protocol error): apologise and hang up, never silence."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=media_stream_url())
    stream.parameter(name="call_id", value=str(call_id))
    stream.parameter(name="token", value=token)
    response.append(connect)
    add_say(response, phrase("unavailable", language), language)
    response.hangup()
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


def voicemail_twiml(*, language: str, to_number: str, from_number: str) -> str:
    """Ask for a message, then record it (bounded): Twilio posts the recording to our status callback (to which
    the call's numbers are added, signed with the rest of the URL: a call our database never saw, because the web
    process was down, is recorded from it), and asks `action` what to say once the caller has finished."""
    language = language_or_default(language)
    response = VoiceResponse()
    add_say(response, phrase("voicemail_prompt", language), language)
    response.append(Record(
        action=public_url(reverse("twilio_voicemail_done")) + "?" + urlencode({"lang": language}), method="POST",
        max_length=settings.VOICEMAIL_MAX_SECONDS, timeout=5, finish_on_key="#", play_beep=True,
        trim="trim-silence",
        recording_status_callback=public_url(reverse("twilio_voicemail_recording")) + "?" + urlencode(
            {"to": to_number, "from": from_number}),
        recording_status_callback_method="POST", recording_status_callback_event="completed absent"))
    # Reached only when <Record> heard nothing: Twilio then skips `action` and goes on with this document.
    add_say(response, phrase("voicemail_nothing", language), language)
    response.hangup()
    return str(response)


RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")


def fetch_recording(recording_sid: str) -> bytes:
    """The WAV of one of the account's recordings, fetched with the operator's credentials.

    The address is built from the SID, never taken from a callback's RecordingUrl: our Twilio credentials go to
    Twilio's API and nowhere else. Bounded by VOICEMAIL_MAX_BYTES. Raises TwilioError (permanent for a missing
    recording or a refused request)."""
    if not RECORDING_SID.match(recording_sid):
        raise TwilioError(f"Not a recording SID: {recording_sid[:40]!r}", permanent=True)
    base = (settings.TWILIO_API_BASE_URL or "https://api.twilio.com").rstrip("/")
    url = f"{base}/2010-04-01/Accounts/{settings.TWILIO_ACCOUNT_SID}/Recordings/{recording_sid}.wav"
    try:
        # Twilio may redirect media to its storage; httpx drops the credentials on a redirect to another host.
        with httpx.stream("GET", url, auth=(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN), timeout=15,
                          follow_redirects=True) as response:
            if response.status_code != 200:
                raise TwilioError(f"Twilio answered {response.status_code} for recording {recording_sid}",
                                  permanent=response.status_code < 500, status=response.status_code)
            data = bytearray()
            for chunk in response.iter_bytes(64 * 1024):
                data += chunk
                if len(data) > settings.VOICEMAIL_MAX_BYTES:
                    raise TwilioError(f"Recording {recording_sid} is larger than VOICEMAIL_MAX_BYTES",
                                      permanent=True)
            return bytes(data)
    except httpx.HTTPError as exc:
        raise TwilioError(f"Twilio could not be reached for recording {recording_sid}: {exc}") from exc


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


# --- phone numbers --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AvailableNumber:
    """A number Twilio offers for sale."""

    phone_number: str
    friendly_name: str
    locality: str
    region: str
    iso_country: str


@dataclass(frozen=True)
class AccountNumber:
    """A number the operator's Twilio account owns (an IncomingPhoneNumber)."""

    sid: str
    phone_number: str
    friendly_name: str
    voice_url: str
    voice_application_sid: str
    trunk_sid: str
    # The rest of its voice configuration, to tell whether all of it points at us.
    voice_method: str = ""
    voice_fallback_url: str = ""
    voice_fallback_method: str = ""
    status_callback: str = ""
    status_callback_method: str = ""

    def webhooks(self) -> dict[str, str]:
        """Its configuration in the shape of `number_webhooks()`; methods compared as Twilio writes them."""
        return {"voice_url": self.voice_url, "voice_method": self.voice_method.upper(),
                "voice_fallback_url": self.voice_fallback_url,
                "voice_fallback_method": self.voice_fallback_method.upper(),
                "status_callback": self.status_callback, "status_callback_method": self.status_callback_method.upper()}


def number_webhooks() -> dict[str, str]:
    """How every number we manage is configured: our incoming, fallback and status webhooks, all POST."""
    return {
        "voice_url": public_url(reverse("twilio_incoming")), "voice_method": "POST",
        "voice_fallback_url": public_url(reverse("twilio_fallback")), "voice_fallback_method": "POST",
        "status_callback": public_url(reverse("twilio_status")), "status_callback_method": "POST",
    }


def _account_number(number) -> AccountNumber:
    return AccountNumber(sid=number.sid or "", phone_number=number.phone_number or "",
                         friendly_name=number.friendly_name or "", voice_url=number.voice_url or "",
                         voice_application_sid=number.voice_application_sid or "", trunk_sid=number.trunk_sid or "",
                         voice_method=number.voice_method or "", voice_fallback_url=number.voice_fallback_url or "",
                         voice_fallback_method=number.voice_fallback_method or "",
                         status_callback=number.status_callback or "",
                         status_callback_method=number.status_callback_method or "")


def _number_error(exc: Exception, doing: str) -> TwilioError:
    """A TwilioError saying what failed; keeps Twilio's code so callers can tell "not available" from an outage."""
    if isinstance(exc, TwilioRestException):
        return TwilioError(f"Twilio refused to {doing}: {exc.code} {exc.msg}", permanent=exc.status < 500,
                           code=exc.code, status=exc.status)
    if isinstance(exc, TwilioException) and len(exc.args) > 1 and hasattr(exc.args[1], "status_code"):
        # List pages raise a bare TwilioException carrying the HTTP response.
        response = exc.args[1]
        try:
            code = json.loads(response.text).get("code")
        except (ValueError, AttributeError):
            code = None
        return TwilioError(f"Twilio refused to {doing}: HTTP {response.status_code} {code}",
                           permanent=response.status_code < 500, code=code, status=response.status_code)
    return TwilioError(f"Twilio could not be reached to {doing}: {exc}")


def search_local_numbers(*, country: str, area_code: str = "", limit: int = 20) -> list[AvailableNumber]:
    """Voice-capable local numbers for sale in `country` (ISO code), optionally in a US/Canadian area code."""
    params: dict[str, object] = {"voice_enabled": True, "limit": limit, "page_size": limit}
    if area_code:
        params["area_code"] = area_code
    try:
        found = rest_client().available_phone_numbers(country).local.list(**params)
    except Exception as exc:
        raise _number_error(exc, "search for numbers") from exc
    return [AvailableNumber(phone_number=n.phone_number or "", friendly_name=n.friendly_name or n.phone_number or "",
                            locality=n.locality or "", region=n.region or "", iso_country=n.iso_country or country)
            for n in found]


def buy_number(phone_number: str) -> AccountNumber:
    """Buy `phone_number` for the account and point it at us in the same request."""
    try:
        number = rest_client().incoming_phone_numbers.create(phone_number=phone_number, **number_webhooks())
    except Exception as exc:
        raise _number_error(exc, "sell this number") from exc
    return _account_number(number)


def list_account_numbers(*, limit: int = 1000) -> list[AccountNumber]:
    """The numbers the account owns (at most `limit`, paging through Twilio's list)."""
    try:
        return [_account_number(n) for n in rest_client().incoming_phone_numbers.stream(limit=limit, page_size=100)]
    except Exception as exc:
        raise _number_error(exc, "list the account's numbers") from exc


def fetch_account_number(sid: str) -> AccountNumber | None:
    """One of the account's numbers by SID; None if the account has no such number."""
    try:
        return _account_number(rest_client().incoming_phone_numbers(sid).fetch())
    except Exception as exc:
        error = _number_error(exc, "look up the number")
        if error.status == 404:
            return None
        raise error from exc


def configure_number(sid: str) -> AccountNumber:
    """Point one of the account's numbers at our webhooks."""
    try:
        return _account_number(rest_client().incoming_phone_numbers(sid).update(**number_webhooks()))
    except Exception as exc:
        raise _number_error(exc, "configure the number") from exc


def unconfigure_number(sid: str) -> None:
    """Stop Twilio calling us for a number the account keeps: clear its voice, fallback and status URLs.
    A number that is already gone counts as done."""
    try:
        rest_client().incoming_phone_numbers(sid).update(voice_url="", voice_fallback_url="", status_callback="")
    except Exception as exc:
        error = _number_error(exc, "disconnect the number")
        if error.status != 404:
            raise error from exc


def release_number(sid: str) -> None:
    """Give a number back to Twilio (it leaves the account and stops being billed). Already gone counts as done."""
    try:
        rest_client().incoming_phone_numbers(sid).delete()
    except Exception as exc:
        error = _number_error(exc, "release the number")
        if error.status != 404:
            raise error from exc
