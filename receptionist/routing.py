"""WebSocket routes. Each endpoint applies the authentication its route needs."""

from django.urls import path

from voice.consumers import TwilioMediaStream

websocket_urlpatterns = [
    # No Origin check: Twilio sends none. Authenticated by the stream token in the `start` message.
    path("ws/twilio/media/", TwilioMediaStream()),
]
