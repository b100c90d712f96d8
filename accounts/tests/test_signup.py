import re

from allauth.account.models import EmailAddress
from django.core import mail
from django.urls import reverse

from accounts.models import Business, Membership, OpeningHours, User
from tests.factories import PASSWORD, make_business, make_user


def signup(client, email="new@example.com", password=PASSWORD):
    return client.post(reverse("account_signup"), {"email": email, "password1": password, "password2": password})


def test_email_signup_creates_user_business_and_owner_membership(client, db):
    signup(client)
    user = User.objects.get(email="new@example.com")
    membership = Membership.objects.get(user=user)
    assert membership.role == Membership.Role.OWNER
    assert membership.business.notification_email == "new@example.com"
    assert Business.objects.count() == 1


def test_email_signup_requires_verification_before_signing_in(client, db):
    response = signup(client)
    assert response.status_code == 302
    assert response["Location"] == reverse("account_email_verification_sent")
    assert "confirm" in mail.outbox[0].body.lower()
    assert client.get(reverse("dashboard")).status_code == 302  # not signed in yet


def test_confirming_the_email_signs_in_and_leads_to_onboarding(client, db):
    signup(client)
    link = re.search(r"http://testserver(/accounts/confirm-email/\S+/)", mail.outbox[0].body).group(1)
    client.post(link)
    assert EmailAddress.objects.get(email="new@example.com").verified
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("onboarding")


def test_signup_with_a_registered_email_creates_nothing_and_warns_the_owner(client, alice):
    # allauth's enumeration prevention: the visitor sees the usual "check your email" page.
    signup(client, email="ALICE@example.com")
    assert User.objects.filter(email__iexact="alice@example.com").count() == 1
    assert mail.outbox[0].to == ["alice@example.com"]
    assert "already" in mail.outbox[0].subject.lower()


def test_repeated_failed_logins_are_rate_limited(client, alice):
    for _ in range(5):
        client.post(reverse("account_login"), {"login": "alice@example.com", "password": "wrong"})
    response = client.post(reverse("account_login"), {"login": "alice@example.com", "password": PASSWORD})
    assert "Too many failed login attempts" in response.content.decode()


def test_password_reset_mails_a_working_link(client, alice):
    client.post(reverse("account_reset_password"), {"email": "alice@example.com"})
    path = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[0].body).group(1)
    form_page = client.get(path, follow=True)
    client.post(form_page.redirect_chain[-1][0], {"password1": "a-new-long-password-9", "password2": "a-new-long-password-9"})
    assert client.login(username="alice@example.com", password="a-new-long-password-9")


def test_logout_ends_the_session(client, alice, alices_business):
    client.force_login(alice)
    client.post(reverse("account_logout"))
    assert client.get(reverse("dashboard")).status_code == 302


def onboarding_data(**over):
    data = {"name": "Sunny Vet", "time_zone": "Europe/Paris",
            "greeting": "Bonjour, Sunny Vet!", "transfer_number": "", "notification_email": "desk@sunny.example",
            "open_days": ["0", "1", "2"], "opens": "08:30", "closes": "18:00"}
    data.update(over)
    return data


def new_owner(client):
    user = make_user("owner@sunny.example")
    make_business(owner=user, name="", onboarded=False)
    client.force_login(user)
    return user


def test_onboarding_saves_the_profile_and_weekly_hours(client, db):
    new_owner(client)
    response = client.post(reverse("onboarding"), onboarding_data())
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    business = Business.objects.get()
    assert (business.name, business.time_zone, business.phone_number) == ("Sunny Vet", "Europe/Paris", "")
    assert business.onboarded_at is not None
    assert sorted(OpeningHours.objects.values_list("weekday", flat=True)) == [0, 1, 2]


def test_onboarding_does_not_take_a_typed_in_phone_number(client, db):
    # Typing another business's number used to route its calls to you; numbers come from Twilio now.
    new_owner(client)
    page = client.get(reverse("onboarding")).content.decode()
    assert 'name="phone_number"' not in page
    response = client.post(reverse("onboarding"), onboarding_data(phone_number="+12025550143"))
    assert response.status_code == 302
    assert Business.objects.get().phone_number == ""


def test_the_profile_form_ignores_a_typed_in_number_and_reveals_no_holder(client, alice, alices_business, charlie):
    client.force_login(alice)
    assert 'name="phone_number"' not in client.get(reverse("settings_profile")).content.decode()
    data = {"name": "Alice Dental", "time_zone": "America/Los_Angeles", "phone_number": "+12025550143",
            "greeting": "", "extra_instructions": "", "voice": "marin", "language": "en", "transfer_number": "",
            "notification_email": "", "address": "", "website": ""}
    response = client.post(reverse("settings_profile"), data)
    assert response.status_code == 302  # saved, and the typed number was not even looked at
    alices_business.refresh_from_db()
    assert alices_business.phone_number == "+14155552671"
    assert Business.objects.get(phone_number="+12025550143").name == "Charlie Plumbing"


def hours_post(rows):
    data = {"hours-TOTAL_FORMS": str(len(rows)), "hours-INITIAL_FORMS": "0",
            "closed-TOTAL_FORMS": "0", "closed-INITIAL_FORMS": "0"}
    for i, (day, opens, closes) in enumerate(rows):
        data.update({f"hours-{i}-weekday": str(day), f"hours-{i}-opens": opens, f"hours-{i}-closes": closes})
    return data


def test_hours_settings_accept_a_split_day(client, alice, alices_business):
    client.force_login(alice)
    client.post(reverse("settings_hours"), hours_post([(0, "09:00", "12:00"), (0, "13:00", "17:00")]))
    assert alices_business.opening_hours.count() == 2


def test_hours_settings_reject_overlapping_intervals(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_hours"), hours_post([(0, "09:00", "12:00"), (0, "11:00", "14:00")]))
    assert "Monday: 09:00–12:00 overlaps 11:00–14:00" in response.content.decode()
    assert alices_business.opening_hours.count() == 0


def test_hours_settings_reject_closing_before_opening(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_hours"), hours_post([(2, "17:00", "09:00")]))
    assert "Closing time must be after opening time" in response.content.decode()


def test_services_reject_two_with_the_same_name(client, alice, alices_business):
    client.force_login(alice)
    data = {"services-TOTAL_FORMS": "2", "services-INITIAL_FORMS": "0",
            "services-0-name": "Cleaning", "services-0-duration_minutes": "30",
            "services-1-name": "cleaning", "services-1-duration_minutes": "45"}
    response = client.post(reverse("settings_services"), data)
    assert "two services called" in response.content.decode()
    assert alices_business.services.count() == 0


def test_staff_can_read_settings(client, bob, alices_business):
    client.force_login(bob)
    response = client.get(reverse("settings_profile"))
    assert response.status_code == 200
    assert "Alice Dental" in response.content.decode()
    assert "Only owners can change" in response.content.decode()


def test_staff_cannot_change_settings(client, bob, alices_business):
    client.force_login(bob)
    response = client.post(reverse("settings_profile"), {"name": "Hijacked", "time_zone": "UTC",
                                                         "voice": "marin", "language": "en"})
    assert response.status_code == 403
    alices_business.refresh_from_db()
    assert alices_business.name == "Alice Dental"


def test_owner_updates_the_profile(client, alice, alices_business):
    client.force_login(alice)
    data = {"name": "Alice Dental & Co", "time_zone": "America/New_York",
            "greeting": "Hi!", "extra_instructions": "", "voice": "coral", "language": "es",
            "transfer_number": "+12025550100", "notification_email": "a@example.com", "address": "", "website": ""}
    assert client.post(reverse("settings_profile"), data).status_code == 302
    alices_business.refresh_from_db()
    assert (alices_business.name, alices_business.voice, alices_business.transfer_number) == (
        "Alice Dental & Co", "coral", "+12025550100")
