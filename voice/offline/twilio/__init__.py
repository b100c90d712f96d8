"""A local stand-in for the slice of Twilio's REST API we call, for tests and demos.

Our code talks to Twilio through the official ``twilio`` client; point that client here and the same
code paths run, HTTP and all, with no network:

    standin = TwilioStandin()                       # or: with TwilioStandin() as standin / async with
    base_url = standin.start_in_thread()            # http://127.0.0.1:PORT
    call_sid = standin.add_call()                   # a live (in-progress) call
    client = Client(standin.account_sid, standin.auth_token)
    client.api.base_url = base_url                  # what standin.client() does
    client.calls(call_sid).update(twiml="<Response><Hangup/></Response>")
    assert standin.requests[-1].form["Twiml"] == "<Response><Hangup/></Response>"
    standin.stop()

The stand-in implements the ``/2010-04-01`` API (form-encoded, HTTP Basic auth = account SID : auth token):
Calls (``calls``), phone numbers (``numbers``) and recordings (``recordings``: the WAV a <Record> left, which a
test registers before posting the recording status callback itself), with Twilio's error shape (``common``), served by
``server`` (:class:`TwilioStandin`). ``manage.py twilio_standin`` runs it on its own.
"""

from voice.offline.twilio.common import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, RecordedRequest
from voice.offline.twilio.server import TwilioStandin

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "RecordedRequest", "TwilioStandin"]
