"""WebSocket routes. Each endpoint applies the authentication its route needs."""

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

from calls.consumers import CallListSocket, CallSocket
from voice.browser_call import BrowserCall
from voice.twilio_stream import TwilioMediaStream

websocket_urlpatterns = [
    # No Origin check: Twilio sends none. Authenticated by the stream token in the `start` message.
    path("ws/twilio/media/", TwilioMediaStream()),
    # The dashboard's test call: the session's user; Origin and membership are checked in BrowserCall itself so
    # that a refusal reaches the page as a close code (4401 not signed in, 4403 other site or no business).
    path("ws/browser/call/", AuthMiddlewareStack(BrowserCall())),
    # Dashboard live updates: our own pages only (Origin), the signed-in user's session, membership and tenant
    # checked in the consumers.
    path("ws/dashboard/calls/", AllowedHostsOriginValidator(AuthMiddlewareStack(CallListSocket.as_asgi()))),
    path("ws/dashboard/calls/<int:call_id>/",
         AllowedHostsOriginValidator(AuthMiddlewareStack(CallSocket.as_asgi()))),
]
