from django.conf import settings
from django.http import HttpRequest


def demo_mode(request: HttpRequest) -> dict:
    """Every page says when replies come from the local stand-in rather than OpenAI."""
    return {"demo_mode": settings.DEMO_MODE}


def current_business(request: HttpRequest) -> dict:
    """Expose what `business_view` resolved; pages outside a business get None (and no extra query)."""
    membership = getattr(request, "membership", None)
    return {"current_membership": membership, "current_business": membership.business if membership else None}
