"""What the settings and onboarding forms refuse, and that each refusal is a sentence on the field it is about.

The database keeps the same limits (constraints) for every other writer; those are checked at the end.
"""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import (FAQ_ANSWER_MAX_CHARS, FAQ_ENTRIES_MAX, FAQ_QUESTION_MAX_CHARS, GREETING_MAX_CHARS,
                             SERVICE_DESCRIPTION_MAX_CHARS, SERVICES_MAX, FAQEntry, Service)
from tests.factories import make_business, make_faq, make_service


def services_post(rows):
    data = {"services-TOTAL_FORMS": str(len(rows)), "services-INITIAL_FORMS": "0"}
    for i, row in enumerate(rows):
        data.update({f"services-{i}-{key}": value for key, value in row.items()})
    return data


def faq_post(rows):
    data = {"faq-TOTAL_FORMS": str(len(rows)), "faq-INITIAL_FORMS": "0"}
    for i, (question, answer) in enumerate(rows):
        data.update({f"faq-{i}-question": question, f"faq-{i}-answer": answer,
                     f"faq-{i}-position": str(i if question else 0)})  # a blank row keeps the initial 0
    return data


def profile_post(**overrides):
    data = {"name": "Alice Dental", "time_zone": "America/Los_Angeles", "greeting": "", "extra_instructions": "",
            "voice": "marin", "language": "en", "transfer_number": "", "notification_email": "", "address": "",
            "website": ""}
    return {**data, **overrides}


def first_row_errors(response, key="formset"):
    return response.context[key].forms[0].errors


def test_a_zero_minute_service_is_refused_on_the_minutes_field(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_services"), services_post([{"name": "Cleaning", "duration_minutes": "0"}]))
    assert first_row_errors(response) == {"duration_minutes": ["A service takes at least 1 minute."]}
    assert "Constraint" not in response.content.decode()
    assert alices_business.services.count() == 0


def test_a_service_longer_than_a_day_is_refused_on_the_minutes_field(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_services"),
                           services_post([{"name": "Cleaning", "duration_minutes": "1441"}]))
    assert first_row_errors(response) == {"duration_minutes": ["A service can take at most 1,440 minutes (a day)."]}


def test_a_negative_price_is_refused_on_the_price_field(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_services"),
                           services_post([{"name": "Cleaning", "duration_minutes": "30", "price": "-5"}]))
    assert first_row_errors(response) == {"price": ["A price can't be negative; leave it empty if there is none."]}
    assert "Constraint" not in response.content.decode()
    assert response.context["formset"].non_form_errors() == []


def test_a_service_description_over_the_limit_is_refused_on_the_description(client, alice, alices_business):
    client.force_login(alice)
    too_long = "x" * (SERVICE_DESCRIPTION_MAX_CHARS + 1)
    response = client.post(reverse("settings_services"), services_post(
        [{"name": "Cleaning", "duration_minutes": "30", "description": too_long}]))
    assert list(first_row_errors(response)) == ["description"]
    assert f"{SERVICE_DESCRIPTION_MAX_CHARS} characters or fewer" in first_row_errors(response)["description"][0]


def test_services_beyond_the_limit_are_refused_in_words(client, alice, alices_business):
    client.force_login(alice)
    rows = [{"name": f"Service {i}", "duration_minutes": "30"} for i in range(SERVICES_MAX + 1)]
    response = client.post(reverse("settings_services"), services_post(rows))
    assert response.context["formset"].non_form_errors() == [
        f"You can list up to {SERVICES_MAX} services. Remove one before you add another."]
    assert alices_business.services.count() == 0


def test_an_faq_answer_over_the_limit_is_refused_on_the_answer(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_faq"), faq_post([("Parking?", "y" * 5000)]))
    assert first_row_errors(response) == {"answer": [
        f"Keep the answer to {FAQ_ANSWER_MAX_CHARS} characters or fewer (it has 5000): the receptionist reads it "
        "aloud."]}
    assert alices_business.faq_entries.count() == 0


def test_an_faq_question_over_the_limit_is_refused_on_the_question(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_faq"), faq_post([("q" * (FAQ_QUESTION_MAX_CHARS + 1), "Yes.")]))
    assert list(first_row_errors(response)) == ["question"]


def test_faq_entries_beyond_the_limit_are_refused_in_words(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_faq"),
                           faq_post([(f"Question {i}?", "Yes.") for i in range(FAQ_ENTRIES_MAX + 1)]))
    assert response.context["formset"].non_form_errors() == [
        f"You can list up to {FAQ_ENTRIES_MAX} questions. Remove one before you add another."]
    assert alices_business.faq_entries.count() == 0


def test_blank_extra_rows_do_not_count_towards_the_faq_limit(client, alice, alices_business):
    client.force_login(alice)
    rows = [(f"Question {i}?", "Yes.") for i in range(FAQ_ENTRIES_MAX)] + [("", "")]
    assert client.post(reverse("settings_faq"), faq_post(rows)).status_code == 302
    assert alices_business.faq_entries.count() == FAQ_ENTRIES_MAX


def test_the_faq_page_states_its_limits(client, alice, alices_business):
    client.force_login(alice)
    page = client.get(reverse("settings_faq")).content.decode()
    assert f"Up to {FAQ_ENTRIES_MAX} questions" in page
    assert f"answers up to {FAQ_ANSWER_MAX_CHARS} characters" in page
    assert f'maxlength="{FAQ_ANSWER_MAX_CHARS}"' in page


def test_the_services_page_states_its_limits(client, alice, alices_business):
    client.force_login(alice)
    page = client.get(reverse("settings_services")).content.decode()
    assert f"Up to {SERVICES_MAX} services" in page
    assert 'min="1"' in page and 'max="1440"' in page


def test_a_greeting_over_the_limit_is_refused_on_the_greeting(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_profile"), profile_post(greeting="g" * (GREETING_MAX_CHARS + 1)))
    assert list(response.context["form"].errors) == ["greeting"]
    assert f"{GREETING_MAX_CHARS} characters or fewer" in response.context["form"].errors["greeting"][0]


def test_onboarding_without_an_opening_time_marks_the_opening_time(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("onboarding"), {"name": "Alice Dental", "time_zone": "UTC", "greeting": "",
                                                   "notification_email": "", "open_days": ["0"], "opens": "",
                                                   "closes": "17:00"})
    form = response.context["form"]
    assert form.errors == {"opens": ["Give the opening time for the days you are open."]}


def test_a_closed_date_listed_twice_is_refused_in_words(client, alice, alices_business):
    client.force_login(alice)
    data = {"hours-TOTAL_FORMS": "0", "hours-INITIAL_FORMS": "0", "closed-TOTAL_FORMS": "2",
            "closed-INITIAL_FORMS": "0", "closed-0-date": "2026-12-24", "closed-1-date": "2026-12-24"}
    response = client.post(reverse("settings_hours"), data)
    assert response.context["closed"].non_form_errors() == [
        "Two of your closed dates are the same. Remove one of them."]


def test_model_validation_puts_a_bad_duration_on_its_field(db):
    # The admin and any other ModelForm validate through the model: the message must still name the field.
    service = Service(business=make_business(), name="Cleaning", duration_minutes=0, price=-5)
    with pytest.raises(ValidationError) as raised:
        service.full_clean()
    assert raised.value.message_dict == {"duration_minutes": ["A service takes at least 1 minute."],
                                         "price": ["A price can't be negative; leave it empty if there is none."]}


def test_the_database_refuses_an_overlong_faq_answer(db):
    entry = make_faq(make_business())
    entry.answer = "a" * (FAQ_ANSWER_MAX_CHARS + 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        entry.save()


def test_the_database_refuses_an_overlong_service_description(db):
    service = make_service(make_business())
    service.description = "d" * (SERVICE_DESCRIPTION_MAX_CHARS + 1)
    with pytest.raises(IntegrityError), transaction.atomic():
        service.save()


def test_the_database_refuses_a_zero_minute_service(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Service.objects.create(business=make_business(), name="Nothing", duration_minutes=0)


def test_an_faq_answer_at_the_limit_is_kept(db):
    entry = FAQEntry.objects.create(business=make_business(), question="Parking?", answer="a" * FAQ_ANSWER_MAX_CHARS)
    entry.full_clean()


def test_an_answer_without_its_question_asks_for_the_question(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_faq"), faq_post([("", "Free parking behind the building.")]))
    assert first_row_errors(response) == {"question": ["Write the question callers ask."]}


def test_an_hours_row_without_a_closing_time_asks_for_it(client, alice, alices_business):
    client.force_login(alice)
    data = {"hours-TOTAL_FORMS": "1", "hours-INITIAL_FORMS": "0", "closed-TOTAL_FORMS": "0",
            "closed-INITIAL_FORMS": "0", "hours-0-weekday": "0", "hours-0-opens": "09:00", "hours-0-closes": ""}
    response = client.post(reverse("settings_hours"), data)
    assert first_row_errors(response, "hours") == {"closes": ["Give the closing time."]}


def test_a_price_too_large_to_store_is_refused_on_the_price_field(client, alice, alices_business):
    client.force_login(alice)
    response = client.post(reverse("settings_services"),
                           services_post([{"name": "Cleaning", "duration_minutes": "30", "price": "123456789"}]))
    assert first_row_errors(response) == {
        "price": ["That price is too large: use at most 8 digits before the decimal point."]}
