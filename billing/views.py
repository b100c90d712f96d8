from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.access import business_view
from accounts.http import client_ip
from billing import polar_client, selectors
from billing.plans import plan_by_key
from billing.services import gate, subscription
from billing.services.account import account_for_business

log = logging.getLogger(__name__)


def _require_polar() -> None:
    if not polar_client.is_configured():
        raise Http404("Billing is not configured")


@business_view()
def billing_overview(request: HttpRequest) -> HttpResponse:
    account = account_for_business(request.business)
    minutes_used = selectors.minutes_used(account)
    plan = plan_by_key(account.plan_key)
    return render(request, "billing/overview.html", {
        "account": account,
        "decision": gate.can_take_call(request.business),
        "minutes_used": minutes_used,
        "trial_minutes_left": max(0, account.trial_minutes - minutes_used),
        "plan_name": plan.name if plan else account.plan_key.capitalize(),
        "days": selectors.usage_by_day(account),
        "plans": selectors.priced_plans(),
        "polar_configured": polar_client.is_configured(),
        "is_owner": request.membership.is_owner,
    })


@require_POST
@business_view(owner_only=True)
def checkout(request: HttpRequest) -> HttpResponse:
    _require_polar()
    try:
        url = subscription.checkout_url(business=request.business, email=request.user.email,
                                    plan_key=request.POST.get("plan", ""), customer_ip=client_ip(request))
    except subscription.BillingUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("billing")
    return redirect(url)


@require_POST
@business_view(owner_only=True)
def portal(request: HttpRequest) -> HttpResponse:
    _require_polar()
    try:
        url = subscription.portal_url(business=request.business)
    except subscription.BillingUnavailable as exc:
        messages.error(request, str(exc))
        return redirect("billing")
    return redirect(url)


@business_view()
def checkout_success(request: HttpRequest) -> HttpResponse:
    # Not proof of payment: the plan changes when Polar's webhook confirms it.
    messages.success(request, "Thank you! Your plan is active as soon as Polar confirms the payment (usually "
                              "within a minute).")
    return redirect("billing")


@csrf_exempt
@require_POST
def polar_webhook(request: HttpRequest) -> HttpResponse:
    if not settings.POLAR_WEBHOOK_SECRET:
        raise Http404("Billing webhooks are not configured")
    try:
        event = polar_client.validate_webhook(request.body, dict(request.headers))
    except polar_client.WebhookSignatureInvalid as exc:
        log.warning("Refused a Polar webhook: %s", exc)
        return HttpResponse(status=403)
    except polar_client.WebhookUnknownType:
        return HttpResponse(status=202)  # signed, but a type this SDK doesn't know: acknowledge and ignore
    except polar_client.WebhookMalformed as exc:
        log.warning("Malformed Polar webhook: %s", exc)
        return HttpResponse(status=400)
    subscription.webhook_receive(webhook_id=request.headers["webhook-id"], event=event,
                             payload=json.loads(request.body))
    return HttpResponse(status=202)
