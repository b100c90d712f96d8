"""The one way a request reaches business data: through the signed-in user's current membership.

Views never query tenant data by id alone; they call `business_view` (which resolves the current
membership) and `get_for_business`, so another business's object is always a 404.
"""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from accounts.models import Business, Membership

SESSION_KEY = "current_business_id"
M = TypeVar("M", bound=Model)


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership the signed-in user is working in: the one chosen in the session, else the oldest."""
    return session_membership(request.user, request.session)


def session_membership(user: Any, session: Any) -> Membership | None:
    """`current_membership` for anything with a user and a session (a WebSocket's scope as well as a request)."""
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.select_related("business").filter(user=user)
    chosen = session.get(SESSION_KEY)
    if chosen is not None:
        membership = memberships.filter(business_id=chosen).first()
        if membership is not None:
            return membership
    return memberships.order_by("created_at", "id").first()


def select_business(request: HttpRequest, business_id: int) -> Business:
    """Make `business_id` the session's current business; 404 unless the user is a member."""
    membership = get_object_or_404(Membership.objects.select_related("business"),
                                   user=request.user, business_id=business_id)
    request.session[SESSION_KEY] = membership.business_id
    return membership.business


def get_for_business(queryset: QuerySet[M] | type[M], business: Business, **lookup: Any) -> M:
    """Fetch one object of `business` or raise 404, whoever else owns an object with that id."""
    return get_object_or_404(queryset, business=business, **lookup)


def business_view(*, owner_only: bool = False, require_onboarding: bool = True) -> Callable:
    """Decorate a view that works on the current business.

    Sets `request.membership` and `request.business`. A user with no business, or an owner who has
    not finished onboarding, is sent to onboarding; `owner_only` views refuse staff with 403.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = current_membership(request)
            if membership is None:
                return redirect("onboarding")
            if require_onboarding and membership.business.onboarded_at is None and membership.is_owner:
                return redirect("onboarding")
            if owner_only and not membership.is_owner:
                raise PermissionDenied("Only the business's owners can do this.")
            request.membership = membership  # type: ignore[attr-defined]
            request.business = membership.business  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
