from __future__ import annotations

from django.contrib import admin
from django.forms import ModelForm
from django.http import HttpRequest

from calls.models import (Appointment, Call, CallEvent, CallNotification, Customer, McpServer, McpTool, Message,
                          NotificationSettings, TranscriptEntry, WebhookAttempt, WebhookDelivery, WebhookEndpoint)
from calls.services.search_document import CALL_SEARCH_FIELDS, call_search_refresh
from receptionist.recorded_admin import RecordedAdmin, RecordedInline


class TranscriptInline(RecordedInline):
    model = TranscriptEntry
    fields = ["order", "speaker", "text", "start_ms", "end_ms", "interrupted"]
    readonly_fields = fields


class EventInline(RecordedInline):
    model = CallEvent
    fields = ["order", "offset_ms", "kind", "payload"]
    readonly_fields = fields


# Written by the system as the call happens and after it: the tenant's bill, analytics and timeline rest on them.
CALL_RECORDED_FIELDS = [
    "business", "channel", "direction", "twilio_call_sid",
    "status", "started_at", "answered_at", "ended_at", "duration_seconds", "twilio_duration_seconds",
    "stream_started_at", "finalized_at", "end_reason", "error",
    "forwarded_to", "forward_status", "forwarded_seconds",
    "model", "input_audio_tokens", "input_text_tokens", "input_cached_tokens", "output_audio_tokens",
    "output_text_tokens", "supervisor_input_tokens", "supervisor_output_tokens", "supervisor_cost_usd", "cost_usd",
    "summary_model", "summary_input_tokens", "summary_output_tokens", "summary_cost_usd", "summary_error",
    "summarized_at", "summary_attempts", "summary_claimed_until",
]


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "channel", "status", "from_number", "to_number", "started_at",
                    "duration_seconds", "end_reason", "outcome", "cost_usd"]
    list_filter = ["status", "channel", "direction", "end_reason", "outcome", "started_at"]
    search_fields = ["twilio_call_sid", "from_number", "to_number", "business__name"]
    date_hierarchy = "started_at"
    fieldsets = [
        (None, {"fields": ["business", "channel", "direction", "twilio_call_sid", "from_number", "to_number"]}),
        ("What the call was about (an operator may correct it)", {"fields": [
            "caller_name", "summary", "reason", "outcome", "action_items", "sentiment", "follow_up_needed",
            "follow_up_reason"]}),
        ("Recorded: status and timings", {"fields": [
            "status", "started_at", "answered_at", "ended_at", "duration_seconds", "twilio_duration_seconds",
            "stream_started_at", "finalized_at", "end_reason", "error", "forwarded_to", "forward_status",
            "forwarded_seconds"]}),
        ("Recorded: tokens and cost", {"fields": [
            "model", "input_audio_tokens", "input_text_tokens", "input_cached_tokens", "output_audio_tokens",
            "output_text_tokens", "supervisor_input_tokens", "supervisor_output_tokens", "supervisor_cost_usd",
            "cost_usd"]}),
        ("Recorded: the summary's run", {"fields": [
            "summary_model", "summary_input_tokens", "summary_output_tokens", "summary_cost_usd", "summary_error",
            "summarized_at", "summary_attempts", "summary_claimed_until"]}),
    ]
    readonly_fields = CALL_RECORDED_FIELDS
    inlines = [TranscriptInline, EventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # calls are recorded by Twilio's webhook and the browser test call, never typed in

    def save_model(self, request: HttpRequest, obj: Call, form: ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        # An operator's correction (a caller's name, the summary) must be what the dashboard's search finds.
        if set(form.changed_data) & set(CALL_SEARCH_FIELDS):
            call_search_refresh(call_id=obj.pk)


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(RecordedAdmin):
    list_display = ["call", "order", "speaker", "text", "start_ms"]
    list_filter = ["speaker", "interrupted"]
    search_fields = ["text", "call__twilio_call_sid"]
    raw_id_fields = ["call"]


@admin.register(CallEvent)
class CallEventAdmin(RecordedAdmin):
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
    raw_id_fields = ["business", "customer", "service"]
    readonly_fields = ["created_by_call", "cancelled_at", "created_at", "updated_at"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "business", "name", "callback_number", "urgency", "status", "created_at", "handled_at"]
    list_filter = ["status", "urgency", "created_at"]
    search_fields = ["name", "callback_number", "body", "business__name"]
    date_hierarchy = "created_at"
    raw_id_fields = ["business", "customer"]
    # Handled or open is the team's call, made on the dashboard, which writes status, time and who together.
    readonly_fields = ["call", "created_at", "status", "handled_at", "handled_by"]


# --- after the call -------------------------------------------------------------------------------------------

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
class CallNotificationAdmin(RecordedAdmin):
    list_display = ["call", "status", "recipient", "attempts", "sent_at"]
    list_filter = ["status"]
    raw_id_fields = ["call"]


class WebhookAttemptInline(RecordedInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "status_code", "ok", "duration_ms", "error"]
    readonly_fields = fields


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(RecordedAdmin):
    list_display = ["message_id", "call", "event_type", "status", "attempts", "created_at", "delivered_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["message_id"]
    raw_id_fields = ["call", "endpoint"]
    inlines = [WebhookAttemptInline]


class McpToolInline(admin.TabularInline):
    model = McpTool
    fields = ["name", "description", "enabled"]
    readonly_fields = ["name", "description"]
    extra = 0


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["business", "name", "url", "status", "checked_at"]
    list_filter = ["status"]
    raw_id_fields = ["business"]
    exclude = ["secret_encrypted"]  # the tenant's token: operators never need it, even encrypted
    # The URL and auth kind go with the (hidden) secret: only the owner, who can enter the token, changes them.
    readonly_fields = ["url", "auth_kind", "header_name", "status", "last_error", "checked_at"]
    inlines = [McpToolInline]
