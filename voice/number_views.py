"""The business's phone-number pages: get one from the operator's Twilio account, or release it.

Thin views over voice/numbers.py. Everyone on the team can see the number; only owners change it.
"""

from __future__ import annotations

from typing import Any, Callable

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import business_view
from accounts.models import Business
from voice import numbers
from voice.forms import NumberBuyForm, NumberClaimForm, NumberSearchForm


def _require_twilio() -> None:
    if not numbers.twilio_configured():
        raise Http404("Twilio is not configured on this server.")


def _redirect_if_numbered(request: HttpRequest, business) -> HttpResponse | None:
    """Getting a number needs Twilio and a business without one: else back to the number page."""
    _require_twilio()
    if business.phone_number:
        messages.info(request, numbers.ALREADY_HAS_NUMBER)
        return redirect("settings_number")
    return None


@business_view()
def number_settings(request: HttpRequest) -> HttpResponse:
    return render(request, "voice/number.html", {
        "business": request.business,  # type: ignore[attr-defined]
        "twilio_configured": numbers.twilio_configured(),
        "twilio_standin": bool(settings.TWILIO_API_BASE_URL),
        "search_form": NumberSearchForm(),
    })


def _take_number(request: HttpRequest, form: Any, success: str,
                 take: Callable[[dict], Business]) -> HttpResponse | None:
    """A posted, valid form: take the number with `take` and go back to the number page with `success` (its
    `{number}` filled in). None when there is nothing to take yet or Twilio refused (the reason is on the form)."""
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        business = take(form.cleaned_data)
    except numbers.NumberError as exc:
        form.add_error(None, str(exc))
        return None
    messages.success(request, success.format(number=business.phone_number))
    return redirect("settings_number")


@business_view(owner_only=True)
def number_search(request: HttpRequest) -> HttpResponse:
    """GET: search Twilio's numbers for sale; POST: buy one of them."""
    business = request.business  # type: ignore[attr-defined]
    if (numbered := _redirect_if_numbered(request, business)) is not None:
        return numbered
    search_form = NumberSearchForm(request.GET or None)
    buy_form = NumberBuyForm(request.POST or None)
    taken = _take_number(request, buy_form, "{number} is yours. Calls to it now reach your receptionist.",
                         lambda data: numbers.number_buy(business=business, phone_number=data["phone_number"]))
    if taken is not None:
        return taken
    results = None
    if search_form.is_bound and search_form.is_valid():
        try:
            results = numbers.search_numbers(country=search_form.cleaned_data["country"],
                                             area_code=search_form.cleaned_data["area_code"])
        except numbers.NumberError as exc:
            search_form.add_error(None, str(exc))
    return render(request, "voice/number_search.html",
                  {"search_form": search_form, "buy_form": buy_form, "results": results})


@business_view(owner_only=True)
def number_existing(request: HttpRequest) -> HttpResponse:
    """GET: the account's numbers no business holds; POST: take one of them."""
    business = request.business  # type: ignore[attr-defined]
    if (numbered := _redirect_if_numbered(request, business)) is not None:
        return numbered
    claim_form = NumberClaimForm(request.POST or None)
    taken = _take_number(request, claim_form, "{number} is connected. Calls to it now reach your receptionist.",
                         lambda data: numbers.number_claim(business=business, sid=data["sid"]))
    if taken is not None:
        return taken
    available, error = [], ""
    try:
        available = numbers.claimable_numbers()
    except numbers.NumberError as exc:
        error = str(exc)
    return render(request, "voice/number_existing.html",
                  {"claim_form": claim_form, "available": available, "list_error": error})


@require_POST
@business_view(owner_only=True)
def number_release(request: HttpRequest) -> HttpResponse:
    try:
        released = numbers.number_release(business=request.business)  # type: ignore[attr-defined]
    except numbers.NumberError as exc:
        messages.error(request, str(exc))
        return redirect("settings_number")
    if released.twilio_done:
        messages.success(request, f"{released.phone_number} no longer reaches your receptionist.")
    else:
        messages.warning(request, f"{released.phone_number} no longer reaches your receptionist. Twilio could not "
                                  "be told just now; the people who run this service have been notified.")
    return redirect("settings_number")


NOT_HERE = ("Twilio does not send this number's calls to this server, so callers don't reach your receptionist. "
            "An owner can point it here again below.")


def _ask_twilio_about_the_number(request: HttpRequest, ask: Callable[..., bool], *, reaches_us: str,
                                 does_not: str) -> HttpResponse:
    """Run a number check or reconnect and tell the member what Twilio said, back on the number page."""
    _require_twilio()
    try:
        here = ask(business=request.business)  # type: ignore[attr-defined]
    except numbers.NumberError as exc:
        messages.error(request, str(exc))
    else:
        if here:
            messages.success(request, reaches_us)
        else:
            messages.error(request, does_not)
    return redirect("settings_number")


@require_POST
@business_view()
def number_check(request: HttpRequest) -> HttpResponse:
    """Ask Twilio again where the number's calls go (the page otherwise shows what it said last)."""
    return _ask_twilio_about_the_number(
        request, numbers.number_check, does_not=NOT_HERE,
        reaches_us="Checked with Twilio: calls to your number reach your receptionist.")


@require_POST
@business_view(owner_only=True)
def number_reconnect(request: HttpRequest) -> HttpResponse:
    """Point the business's own number at this server again (its settings at Twilio were changed or moved)."""
    return _ask_twilio_about_the_number(
        request, numbers.number_reconnect,
        reaches_us="Your number is connected again: calls to it reach your receptionist.",
        does_not="Twilio took the change but still does not send the number's calls here. The people who run this "
                 "service need to look at it in the Twilio console.")
