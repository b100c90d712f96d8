from django.contrib import admin

from calls.models import Appointment, Call, CallEvent, Customer, Message, TranscriptEntry
from calls.services import call_search_refresh


class TranscriptInline(admin.TabularInline):
    model = TranscriptEntry
    extra = 0
    fields = ["order", "speaker", "text", "start_ms", "end_ms", "interrupted"]
    readonly_fields = fields


class EventInline(admin.TabularInline):
    model = CallEvent
    extra = 0
    fields = ["order", "offset_ms", "kind", "payload"]
    readonly_fields = fields


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "channel", "status", "from_number", "to_number", "started_at",
                    "duration_seconds", "end_reason", "outcome", "cost_usd"]
    list_filter = ["status", "channel", "direction", "end_reason", "outcome", "started_at"]
    search_fields = ["twilio_call_sid", "from_number", "to_number", "business__name"]
    date_hierarchy = "started_at"
    raw_id_fields = ["business"]
    readonly_fields = ["stream_started_at", "finalized_at"]
    inlines = [TranscriptInline, EventInline]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        # An operator's edit (caller name, summary, transcript) must be what the dashboard's search finds.
        call_search_refresh(call_id=form.instance.pk)


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(admin.ModelAdmin):
    list_display = ["call", "order", "speaker", "text", "start_ms"]
    list_filter = ["speaker", "interrupted"]
    search_fields = ["text", "call__twilio_call_sid"]
    raw_id_fields = ["call"]


@admin.register(CallEvent)
class CallEventAdmin(admin.ModelAdmin):
    list_display = ["call", "order", "offset_ms", "kind", "created_at"]
    list_filter = ["kind"]
    search_fields = ["call__twilio_call_sid"]
    raw_id_fields = ["call"]


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["phone", "name", "business", "call_count", "first_seen_at", "last_seen_at"]
    list_filter = ["last_seen_at"]
    search_fields = ["phone", "name", "business__name"]
    raw_id_fields = ["business", "last_call"]
    readonly_fields = ["first_seen_at", "last_seen_at", "call_count", "last_call"]


@admin.register(Appointment)
class AppointmentAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "customer", "service_name", "starts_at", "ends_at", "status", "created_at"]
    list_filter = ["status", "starts_at"]
    search_fields = ["customer__phone", "customer__name", "service_name", "business__name"]
    date_hierarchy = "starts_at"
    raw_id_fields = ["business", "customer", "service", "created_by_call"]
    readonly_fields = ["cancelled_at", "created_at", "updated_at"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "name", "callback_number", "urgency", "status", "created_at", "handled_at"]
    list_filter = ["status", "urgency", "created_at"]
    search_fields = ["name", "callback_number", "body", "business__name"]
    date_hierarchy = "created_at"
    raw_id_fields = ["business", "customer", "call", "handled_by"]


# --- after the call -------------------------------------------------------------------------------------------

from calls.models import (CallNotification, NotificationSettings, WebhookAttempt,  # noqa: E402
                          WebhookDelivery, WebhookEndpoint)


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ["business", "email_mode", "updated_at"]
    raw_id_fields = ["business"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["business", "url", "is_active", "created_at"]
    raw_id_fields = ["business"]
    exclude = ["secret"]  # operators never need to read a tenant's signing secret


@admin.register(CallNotification)
class CallNotificationAdmin(admin.ModelAdmin):
    list_display = ["call", "status", "recipient", "attempts", "sent_at"]
    list_filter = ["status"]
    raw_id_fields = ["call"]


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    fields = ["number", "started_at", "status_code", "ok", "duration_ms", "error"]
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "call", "event_type", "status", "attempts", "created_at", "delivered_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id"]
    raw_id_fields = ["call", "endpoint"]
    inlines = [WebhookAttemptInline]
