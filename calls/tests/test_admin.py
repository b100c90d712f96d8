"""The operator's admin for calls: what the system recorded (status, timings, tokens, cost, transcript, events,
deliveries) is read-only there; what the call was about can be corrected, and a correction is what the tenant's
dashboard search finds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from calls.models import Call, CallEvent, TranscriptEntry
from calls.services.search_document import call_search_refresh
from tests.admin_forms import admin_form_data
from tests.factories import make_business, make_call, make_event, make_message, make_transcript


def finished_call(business) -> Call:
    ended = timezone.now() - dt.timedelta(minutes=5)
    call = make_call(business, status="completed", started_at=ended - dt.timedelta(seconds=90), ended_at=ended,
                     finalized_at=ended, duration_seconds=90, end_reason="caller_hung_up", outcome="booked",
                     model="gpt-realtime", input_audio_tokens=1200, output_audio_tokens=800,
                     cost_usd=Decimal("0.123456"), summary_cost_usd=Decimal("0.000900"),
                     summary="Booked a cleaning for Tuesday.", caller_name="Walter", summarized_at=ended)
    make_transcript(call, [("caller", "I'd like a cleaning", 0), ("agent", "Tuesday at ten works.", 1800)])
    make_event(call, "latency", 1700, ms=640)
    call_search_refresh(call_id=call.id)
    return call


def change_url(call: Call) -> str:
    return reverse("admin:calls_call_change", args=[call.id])


def post_change(admin_client, call: Call, **changes: object):
    data = admin_form_data(admin_client.get(change_url(call)))
    data.update(changes)
    return admin_client.post(change_url(call), data)


@pytest.mark.parametrize(("field", "posted"), [
    ("cost_usd", "99.000000"), ("summary_cost_usd", "5.000000"), ("input_audio_tokens", "1"),
    ("output_audio_tokens", "999999"), ("status", "failed"), ("duration_seconds", "3600"),
    ("end_reason", "agent_ended"), ("model", "something-cheaper"), ("summary_attempts", "7"),
])
def test_an_operator_cannot_change_what_the_system_recorded_for_a_call(admin_client, alices_business, field, posted):
    call = finished_call(alices_business)
    before = getattr(call, field)

    response = post_change(admin_client, call, **{field: posted})

    assert response.status_code == 302  # the form was saved, without that field
    call.refresh_from_db()
    assert getattr(call, field) == before


def test_an_operator_cannot_move_a_call_to_another_business(admin_client, alices_business, charlie):
    call = finished_call(alices_business)
    other = make_business(name="Elsewhere")

    assert post_change(admin_client, call, business=str(other.id)).status_code == 302

    call.refresh_from_db()
    assert call.business_id == alices_business.id


def test_an_operator_can_correct_what_the_call_was_about(admin_client, alices_business):
    call = finished_call(alices_business)

    response = post_change(admin_client, call, summary="Booked a whitening for Tuesday.", outcome="answered")

    assert response.status_code == 302
    call.refresh_from_db()
    assert (call.summary, call.outcome) == ("Booked a whitening for Tuesday.", "answered")


def test_a_corrected_summary_makes_the_call_findable_by_its_new_words(admin_client, alice, alices_business):
    call = finished_call(alices_business)
    owner = Client()
    owner.force_login(alice)
    assert call.id not in [c.id for c in owner.get(reverse("call_list"), {"q": "whitening"}).context["page"].calls]

    assert post_change(admin_client, call, summary="Booked a whitening for Tuesday.").status_code == 302

    found = owner.get(reverse("call_list"), {"q": "whitening"}).context["page"].calls
    assert [c.id for c in found] == [call.id]


def test_a_transcript_line_cannot_be_changed_from_the_calls_page(admin_client, alices_business):
    call = finished_call(alices_business)

    response = post_change(admin_client, call, **{"transcript-0-text": "Something never said",
                                                  "transcript-0-speaker": "agent"})

    assert response.status_code == 302
    assert list(call.transcript.values_list("speaker", "text")) == [
        ("caller", "I'd like a cleaning"), ("agent", "Tuesday at ten works.")]


def test_the_calls_page_offers_no_new_or_deleted_transcript_lines_or_events(admin_client, alices_business):
    call = finished_call(alices_business)

    html = admin_client.get(change_url(call)).content.decode()

    assert 'name="transcript-0-DELETE"' not in html and 'name="events-0-DELETE"' not in html
    assert 'name="transcript-MAX_NUM_FORMS" value="0"' in html and 'name="events-MAX_NUM_FORMS" value="0"' in html


@pytest.mark.parametrize("model", [TranscriptEntry, CallEvent])
def test_transcript_lines_and_events_cannot_be_changed_in_their_own_admin(admin_client, alices_business, model):
    row = model.objects.filter(call=finished_call(alices_business)).first()
    url = reverse(f"admin:calls_{model._meta.model_name}_change", args=[row.id])

    response = admin_client.post(url, {"order": "99", "text": "edited", "offset_ms": "1"})

    assert response.status_code == 403
    assert model.objects.get(pk=row.pk).order == row.order


@pytest.mark.parametrize("name", ["calls_call", "calls_transcriptentry", "calls_callevent", "calls_webhookdelivery",
                                  "calls_callnotification"])
def test_recorded_rows_cannot_be_added_by_hand(admin_client, db, name):
    assert admin_client.get(reverse(f"admin:{name}_add")).status_code == 403


def test_an_operator_can_still_delete_a_call_with_its_transcript_and_events(admin_client, alices_business):
    call = finished_call(alices_business)

    response = admin_client.post(reverse("admin:calls_call_delete", args=[call.id]), {"post": "yes"})

    assert response.status_code == 302
    assert not Call.objects.filter(pk=call.pk).exists()
    assert not TranscriptEntry.objects.filter(call_id=call.pk).exists()


def test_a_message_is_marked_handled_on_the_dashboard_not_in_the_admin(admin_client, alices_business):
    message = make_message(alices_business)
    url = reverse("admin:calls_message_change", args=[message.id])
    data = admin_form_data(admin_client.get(url))
    data.update(status="handled", body="Please call me back after five.")

    assert admin_client.post(url, data).status_code == 302

    message.refresh_from_db()
    assert (message.status, message.handled_at, message.body) == ("open", None, "Please call me back after five.")
