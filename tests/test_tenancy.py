"""Tenancy: a member of one business never reaches another business's objects.

Every URL that names an object by id must appear in OBJECT_URLS; the first test fails when a new
such URL is added without a tenancy check here.
"""

import datetime as dt

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts import services
from accounts.models import Membership
from tests.factories import make_call, make_service
from tests.factories import make_appointment, make_customer, make_message

# url name -> (HTTP method, function building one of Alice's objects and returning its URL kwargs)
OBJECT_URLS = {
    "invite_revoke": ("post", lambda ctx: {"invite_id": services.invite_create(
        business=ctx["business"], email="x@example.com", role="staff", invited_by=ctx["alice"]).pk}),
    "member_remove": ("post", lambda ctx: {"membership_id": Membership.objects.get(user=ctx["bob"]).pk}),
    "business_switch": ("post", lambda ctx: {"business_id": ctx["business"].pk}),
    "appointment_cancel": ("post", lambda ctx: {"appointment_id": make_appointment(
        ctx["business"], timezone.now() + dt.timedelta(days=1)).pk}),
    "message_handle": ("post", lambda ctx: {"message_id": make_message(ctx["business"]).pk}),
    "message_reopen": ("post", lambda ctx: {"message_id": make_message(ctx["business"]).pk}),
    "customer_detail": ("get", lambda ctx: {"customer_id": make_customer(ctx["business"]).pk}),
    "call_detail": ("get", lambda ctx: {"call_id": make_call(ctx["business"]).pk}),
}
# Routes with an id-like parameter that is not a tenant object id.
NOT_TENANT_OBJECTS = {"invite_accept"}  # a signed token, tested in test_invites


def named_routes_with_parameters(resolver=None, prefix=""):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin" or str(entry.pattern).startswith("accounts/"):
                continue  # operators' admin and allauth's own views are not business-scoped
            yield from named_routes_with_parameters(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name and entry.pattern.converters:
            yield entry.name


def test_every_object_url_is_covered_by_the_tenancy_walk():
    routes = set(named_routes_with_parameters())
    assert routes - NOT_TENANT_OBJECTS == set(OBJECT_URLS)


@pytest.mark.parametrize("name", sorted(OBJECT_URLS))
def test_another_business_object_is_404(client, alice, bob, alices_business, charlie, name):
    method, build = OBJECT_URLS[name]
    url = reverse(name, kwargs=build({"alice": alice, "bob": bob, "business": alices_business}))
    client.force_login(charlie)
    assert getattr(client, method)(url).status_code == 404


@pytest.mark.parametrize("name", ["dashboard", "settings_profile", "settings_hours", "settings_services",
                                  "settings_faq", "team", "billing",
                                  "appointment_list", "message_list", "customer_list", "analytics",
                                  "test_call"])
def test_business_pages_show_only_the_members_business(client, alices_business, charlie, name):
    make_service(alices_business, name="Alice-only whitening")
    client.force_login(charlie)
    page = client.get(reverse(name)).content.decode()
    assert "Alice Dental" not in page and "Alice-only whitening" not in page


def test_a_formset_cannot_edit_another_business_service(client, alices_business, charlie):
    service = make_service(alices_business, name="Whitening")
    client.force_login(charlie)
    client.post(reverse("settings_services"), {
        "services-TOTAL_FORMS": "1", "services-INITIAL_FORMS": "1", "services-0-id": str(service.pk),
        "services-0-name": "Stolen", "services-0-duration_minutes": "5"})
    service.refresh_from_db()
    assert service.name == "Whitening"


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get(reverse("settings_profile"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_billing_acts_only_on_the_members_own_business(client, alices_business, charlie, settings):
    """Billing URLs name no object: checkout and portal always use the signed-in owner's current business."""
    from billing.models import BillingAccount

    settings.POLAR_ACCESS_TOKEN = ""  # Polar off: nothing leaves the process
    BillingAccount.objects.create(business=alices_business, trial_minutes=5, status="past_due", plan_key="alice-plan")
    client.force_login(charlie)
    page = client.get(reverse("billing")).content.decode()
    assert "Alice Dental" not in page and "alice-plan" not in page and "Past due" not in page
    assert client.post(reverse("billing_portal"), {"business": alices_business.pk}).status_code == 404
    assert BillingAccount.objects.get(business=alices_business).status == "past_due"
