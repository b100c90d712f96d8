"""WebSocket routes. Each consumer applies the authentication its route needs."""

from django.urls import path  # noqa: F401

websocket_urlpatterns: list = []
