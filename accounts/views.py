from __future__ import annotations

from django.contrib import admin, messages
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import forms, login_limits, services
from accounts.access import business_view, current_membership, get_for_business, select_business
from accounts.adapters import PENDING_INVITE_SESSION_KEY
from accounts.http import client_ip
from accounts.models import Invite, Membership
from receptionist import startup


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html")


async def healthz(request: HttpRequest) -> HttpResponse:
    """Ready to take calls: everything a call needs is loaded (receptionist/startup.py). Connections that fail
    (PostgreSQL, Redis) are named after `ok` but keep the 200: an outage of a shared dependency must not take every
    process out of the load balancer. Async, so a probe never waits behind a page on Django's sync thread."""
    problems = await startup.health()
    text = "ok" if not problems else "ok; failing: " + "; ".join(problems)
    return HttpResponse(text, content_type="text/plain")


@sensitive_post_parameters()
@never_cache
def admin_login(request: HttpRequest) -> HttpResponse:
    """Django admin's login form, refused with 429 (before any password check) after too many failures."""
    if request.method != "POST":
        return admin.site.login(request)
    ip, username = client_ip(request), request.POST.get("username", "")
    if login_limits.admin_login_locked(ip=ip, username=username):
        minutes = max(1, settings.ADMIN_LOGIN_FAILURE_WINDOW_SECONDS // 60)
        response = render(request, "accounts/admin_login_locked.html",
                          {**admin.site.each_context(request), "title": "Too many attempts", "minutes": minutes},
                          status=429)
        response["Retry-After"] = str(settings.ADMIN_LOGIN_FAILURE_WINDOW_SECONDS)
        return response
    response = admin.site.login(request)
    # The admin's LoginView redirects only when the credentials were accepted; otherwise it shows the form again.
    if response.status_code == 302:
        login_limits.admin_login_succeeded(username=username)
    elif response.status_code == 200:
        login_limits.admin_login_failed(ip=ip, username=username)
    return response


@login_required
def onboarding(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    if membership is None:  # e.g. a superuser made on the command line
        services.business_create_for_owner(user=request.user)
        membership = current_membership(request)
    if not membership.is_owner:
        return redirect("dashboard")
    request.membership = membership
    business = membership.business
    form = forms.OnboardingForm(request.POST or None, instance=business,
                                initial={"notification_email": business.notification_email or request.user.email})
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            services.business_complete_onboarding(business=business, hours=form.weekly_hours())
        messages.success(request, "Your receptionist is set up. Add services and answers to common questions next.")
        return redirect("dashboard")
    return render(request, "accounts/onboarding.html", {"form": form})


def _settings_page(request: HttpRequest, *, template: str, build, save) -> HttpResponse:
    """Shared GET/POST flow of the settings pages: owners edit, staff read."""
    is_owner = request.membership.is_owner
    if request.method == "POST" and not is_owner:
        raise PermissionDenied("Only owners can change the business settings.")
    parts = build(request.POST if request.method == "POST" else None)
    if request.method == "POST" and all(part.is_valid() for part in parts.values()):
        with transaction.atomic():
            save(parts)
        messages.success(request, "Saved.")
        return redirect(request.path)
    if not is_owner:
        forms.disable_all(*parts.values())
    return render(request, template, {**parts, "read_only": not is_owner})


@business_view()
def settings_profile(request: HttpRequest) -> HttpResponse:
    return _settings_page(
        request, template="accounts/settings_profile.html",
        build=lambda data: {"form": forms.BusinessProfileForm(data, instance=request.business)},
        save=lambda parts: parts["form"].save(),
    )


@business_view()
def settings_hours(request: HttpRequest) -> HttpResponse:
    def save(parts):
        parts["hours"].save()
        parts["closed"].save()

    return _settings_page(
        request, template="accounts/settings_hours.html",
        build=lambda data: {"hours": forms.HoursFormSet(data, instance=request.business, prefix="hours"),
                            "closed": forms.ClosedDateFormSet(data, instance=request.business, prefix="closed")},
        save=save,
    )


@business_view()
def settings_services(request: HttpRequest) -> HttpResponse:
    return _settings_page(
        request, template="accounts/settings_services.html",
        build=lambda data: {"formset": forms.ServiceFormSet(data, instance=request.business, prefix="services")},
        save=lambda parts: parts["formset"].save(),
    )


@business_view()
def settings_faq(request: HttpRequest) -> HttpResponse:
    return _settings_page(
        request, template="accounts/settings_faq.html",
        build=lambda data: {"formset": forms.FAQFormSet(data, instance=request.business, prefix="faq")},
        save=lambda parts: parts["formset"].save(),
    )


@business_view()
def team(request: HttpRequest) -> HttpResponse:
    business = request.business
    form = forms.InviteForm(request.POST or None, business=business)
    if request.method == "POST":
        if not request.membership.is_owner:
            raise PermissionDenied("Only owners can invite people.")
        if form.is_valid():
            try:
                invite = services.invite_create(business=business, invited_by=request.user, **form.cleaned_data)
            except services.InviteLimitReached as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Invitation sent to {invite.email}.")
                return redirect("team")
    context = {
        "form": form,
        "members": business.memberships.select_related("user").order_by("role", "user__email"),
        "invites": [invite for invite in business.invites.all() if invite.is_pending],
    }
    return render(request, "accounts/team.html", context)


@require_POST
@business_view(owner_only=True)
def invite_revoke(request: HttpRequest, invite_id: int) -> HttpResponse:
    invite = get_for_business(Invite, request.business, pk=invite_id)
    services.invite_revoke(invite=invite)
    messages.success(request, f"Invitation for {invite.email} withdrawn.")
    return redirect("team")


@require_POST
@business_view(owner_only=True)
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    membership = get_for_business(Membership, request.business, pk=membership_id)
    try:
        services.membership_remove(membership=membership)
    except services.MembershipError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.email} no longer has access.")
    return redirect("team")


@require_POST
@login_required
def business_switch(request: HttpRequest, business_id: int) -> HttpResponse:
    business = select_business(request, business_id)
    messages.success(request, f"Now working in {business.name}.")
    return redirect("dashboard")


def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invite = services.invite_from_token(token)
    except services.InviteError as exc:
        return render(request, "accounts/invite.html", {"error": str(exc)}, status=410)
    if not request.user.is_authenticated:
        # Remembered so that signing up from here joins this business instead of creating a new one.
        request.session[PENDING_INVITE_SESSION_KEY] = token
        return render(request, "accounts/invite.html", {"invite": invite})
    if request.method == "POST":
        try:
            membership = services.invite_accept(token=token, user=request.user)
        except services.InviteError as exc:
            return render(request, "accounts/invite.html", {"error": str(exc), "invite": invite}, status=403)
        select_business(request, membership.business_id)
        messages.success(request, f"Welcome to {membership.business.name}.")
        return redirect("dashboard")
    return render(request, "accounts/invite.html", {"invite": invite})
