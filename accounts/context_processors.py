from django.http import HttpRequest


def current_business(request: HttpRequest) -> dict:
    """Expose what `business_view` resolved; pages outside a business get None (and no extra query)."""
    membership = getattr(request, "membership", None)
    return {"current_membership": membership, "current_business": membership.business if membership else None}
