"""HTTP and WebSocket entry point for uvicorn (production) and daphne (development)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "receptionist.settings")
# The web process pools its PostgreSQL connections (see DB_POOL in settings.py) unless told otherwise.
if not os.environ.get("DB_POOL"):
    os.environ["DB_POOL"] = "true"
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from receptionist.bare_http import HttpRouter, MiddlewareFreeHandler  # noqa: E402
from receptionist.routing import websocket_urlpatterns  # noqa: E402
from receptionist.startup import lifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Twilio's webhooks skip Django's middleware (receptionist/bare_http.py says why).
        "http": HttpRouter(django_asgi_app, MiddlewareFreeHandler()),
        "websocket": URLRouter(websocket_urlpatterns),
        # uvicorn: loads and connects what calls need before listening, and installs the SIGTERM drain of live
        # calls (receptionist/startup.py, voice/drain.py).
        "lifespan": lifespan,
    }
)
