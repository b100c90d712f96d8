"""Calls and what happened in them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import DateTimeRangeField, RangeBoundary, RangeOperators
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import Func, Q
from django.utils import timezone

from accounts.models import Business, Service
from accounts.phone import validate_e164


class PostgresGinIndex(GinIndex):
    """A GIN index on PostgreSQL; elsewhere (SQLite, which has no GIN) a plain index of the same name.

    Unlike constraints, Django's schema editor runs whatever an index's `create_sql` returns (None would become
    the statement "None"), so the fallback is a real, harmless index: the dev mode never searches this column.
    """

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if schema_editor.connection.vendor != "postgresql":
            return models.Index(fields=self.fields, name=self.name).create_sql(model, schema_editor, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class Call(models.Model):
    class Channel(models.TextChoices):
        TWILIO = "twilio", "Phone (Twilio)"
        BROWSER = "browser", "Browser test call"

    class Direction(models.TextChoices):
        INBOUND = "inbound", "Inbound"
        OUTBOUND = "outbound", "Outbound"

    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    class ForwardStatus(models.TextChoices):
        """How a <Dial> of this call to the business's transfer number went (Twilio's DialCallStatus)."""

        NONE = "", "Not forwarded"
        DIALING = "dialing", "Dialing"  # emitted; Twilio has not reported the outcome yet
        COMPLETED = "completed", "Answered"
        BUSY = "busy", "Busy"
        NO_ANSWER = "no-answer", "No answer"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Cancelled"

    class VoicemailStatus(models.TextChoices):
        """The voicemail of a call the model could not answer (Twilio <Record>)."""

        NONE = "", "No voicemail"
        RECORDING = "recording", "Recording"  # <Record> emitted; Twilio has not sent the recording yet
        RECEIVED = "received", "Received"
        ABSENT = "absent", "Nothing recorded"

    FINAL_STATUSES = (Status.COMPLETED, Status.FAILED, Status.INTERRUPTED)

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="calls")
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.TWILIO)
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.INBOUND)
    twilio_call_sid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    from_number = models.CharField(max_length=32, blank=True)
    to_number = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RINGING)
    started_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Twilio's CallDuration from its final status callback (what Twilio bills); None until it has arrived.
    twilio_duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    # Set when the media stream first authenticates; a stream token is good for exactly one stream.
    stream_started_at = models.DateTimeField(null=True, blank=True)
    # Set once, by whichever path finalises the call first (session end, status callback, reaper).
    finalized_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True,
                                  help_text="caller_hung_up, agent_ended, transferred, upstream_failed, …")
    outcome = models.CharField(max_length=20, blank=True)
    # A forward to the business's transfer number (the agent's transfer, a billing refusal, a fallback).
    forwarded_to = models.CharField(max_length=16, blank=True)
    forward_status = models.CharField(max_length=12, choices=ForwardStatus.choices, blank=True, default="")
    forwarded_seconds = models.PositiveIntegerField(
        default=0, help_text="Connected time of the forward (Twilio's DialCallDuration); billed with the call.")
    voicemail_status = models.CharField(max_length=10, choices=VoicemailStatus.choices, blank=True, default="")
    voicemail_started_at = models.DateTimeField(null=True, blank=True)
    model = models.CharField(max_length=64, blank=True)
    engine = models.CharField(max_length=10, blank=True,
                              help_text="The voice engine that answered: realtime or live (empty before it started).")
    voice_seconds = models.DecimalField(
        max_digits=9, decimal_places=2, default=0,
        help_text="GPT-Live: the session's active seconds as OpenAI reported them (billed per second).")
    input_audio_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_cached_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    supervisor_input_tokens = models.PositiveIntegerField(default=0)
    supervisor_output_tokens = models.PositiveIntegerField(default=0)
    supervisor_cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0,
                                   help_text="Everything the call cost: the voice model plus the supervisor (or GPT-Live's backend).")
    error = models.TextField(blank=True)
    # --- after the call: summary and extraction (calls.postcall.summary), stored once -----------------------
    summary = models.TextField(blank=True)
    caller_name = models.CharField(max_length=120, blank=True)
    reason = models.TextField(blank=True, help_text="Why the caller called, in a sentence.")
    action_items = models.JSONField(default=list, blank=True)
    sentiment = models.CharField(max_length=16, blank=True)
    follow_up_needed = models.BooleanField(null=True, blank=True)
    follow_up_reason = models.TextField(blank=True)
    summary_model = models.CharField(max_length=64, blank=True)
    summary_input_tokens = models.PositiveIntegerField(default=0)
    summary_output_tokens = models.PositiveIntegerField(default=0)
    summary_cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    summary_error = models.TextField(blank=True, help_text="Why there is no summary (the model failed).")
    # Set once, by the compare-and-set that stores the summary (or records that there will be none).
    summarized_at = models.DateTimeField(null=True, blank=True)
    # The summary's claim: attempts so far, and until when the current attempt (or its backoff) owns it. The
    # post-call sweep hands a call whose claim has run out (a dead worker, a lost message) to another worker.
    summary_attempts = models.PositiveIntegerField(default=0)
    summary_claimed_until = models.DateTimeField(null=True, blank=True)
    # The dashboard's full-text search document: caller number (and its digit suffixes), caller name, summary,
    # reason and transcript. Rebuilt by `calls.services.search_document.call_search_refresh` wherever those
    # change; PostgreSQL only (NULL on SQLite, where the dashboard searches with icontains).
    search_vector = SearchVectorField(null=True, blank=True, editable=False)
    # The call's event sequence: the last `CallEvent.order` handed out. Every writer (the session's flushes, the
    # supervisor, Twilio's callbacks) takes its orders from here in the transaction that inserts its events
    # (`calls.services.recording.call_events_add`), so a call's events never share an order.
    last_event_order = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # The dashboard pages newest first by (started_at, id); the id makes the keyset unique.
            models.Index(fields=["business", "-started_at", "-id"], name="call_business_started_id"),
            PostgresGinIndex(fields=["search_vector"], name="call_search_vector"),
            # A customer's page lists the calls from their number.
            models.Index(fields=["business", "from_number", "-started_at"], name="call_business_caller"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=["ringing", "in_progress", "completed", "failed",
                                                           "interrupted"]), name="call_status_valid"),
            models.CheckConstraint(condition=Q(channel__in=["twilio", "browser"]), name="call_channel_valid"),
            models.CheckConstraint(condition=Q(engine__in=["", "realtime", "live"]), name="call_engine_valid"),
            models.CheckConstraint(condition=Q(finalized_at__isnull=True)
                                   | Q(status__in=["completed", "failed", "interrupted"]),
                                   name="call_finalized_has_final_status"),
            models.CheckConstraint(condition=Q(forward_status__in=["", "dialing", "completed", "busy", "no-answer",
                                                                   "failed", "canceled"]),
                                   name="call_forward_status_valid"),
            models.CheckConstraint(condition=Q(voicemail_status__in=["", "recording", "received", "absent"]),
                                   name="call_voicemail_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} call {self.pk} from {self.from_number or 'unknown'}"

    @property
    def is_live(self) -> bool:
        return self.status in (self.Status.RINGING, self.Status.IN_PROGRESS)

    @property
    def summary_pending(self) -> bool:
        """Over, and its summary (or the reason there is none) is still being written."""
        return self.finalized_at is not None and self.summarized_at is None and not self.summary_error

    @property
    def total_tokens(self) -> int:
        return (self.input_audio_tokens + self.input_text_tokens + self.output_audio_tokens
                + self.output_text_tokens)


class TranscriptEntry(models.Model):
    class Speaker(models.TextChoices):
        CALLER = "caller", "Caller"
        AGENT = "agent", "Agent"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcript")
    order = models.PositiveIntegerField()
    speaker = models.CharField(max_length=8, choices=Speaker.choices)
    text = models.TextField()
    start_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Offset from the call's start.")
    end_ms = models.PositiveIntegerField(null=True, blank=True)
    interrupted = models.BooleanField(default=False, help_text="The caller talked over this agent turn.")

    class Meta:
        ordering = ["call", "order"]
        verbose_name_plural = "transcript entries"
        constraints = [models.UniqueConstraint(fields=["call", "order"], name="transcript_order_unique")]

    def __str__(self) -> str:
        return f"{self.speaker}: {self.text[:60]}"


class CallEvent(models.Model):
    class Kind(models.TextChoices):
        TOOL_CALL = "tool_call", "Tool call"
        BARGE_IN = "barge_in", "Barge-in"
        LATENCY = "latency", "Turn latency"
        ERROR = "error", "Error"
        TRANSFER = "transfer", "Transfer"
        HANGUP = "hangup", "Hang-up"
        DTMF = "dtmf", "Keypad digit"
        STATUS = "status", "Status change"
        SUPERVISOR = "supervisor", "Supervisor step"
        USAGE = "usage", "Model usage"
        RECONNECT = "reconnect", "Reconnect to the model"
        FALLBACK = "fallback", "Fallback (model unavailable)"
        VOICEMAIL = "voicemail", "Voicemail"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="events")
    order = models.PositiveIntegerField()
    offset_ms = models.PositiveIntegerField(default=0, help_text="Milliseconds since the call started.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        # Events come from the call session and from workers (supervisor, Twilio's callbacks), each stamped with
        # its offset on its own clock; `order` is one sequence per call (Call.last_event_order), unique, in the
        # order the events were recorded. The timeline sorts by offset, and by order among equal offsets.
        ordering = ["call", "offset_ms", "order", "id"]
        indexes = [models.Index(fields=["call", "kind"], name="callevent_call_kind")]
        constraints = [models.UniqueConstraint(fields=["call", "order"], name="callevent_order_unique")]

    def __str__(self) -> str:
        return f"{self.kind} @{self.offset_ms}ms"


# --- customers, appointments and messages: what the receptionist's tools read and write ---------------------

class PostgresExclusionConstraint(ExclusionConstraint):
    """An `ExclusionConstraint` that exists on PostgreSQL only.

    The embedded dev mode runs on SQLite, which has no exclusion constraints: there the table is created without
    it and the booking service's per-business lock is the only guard. Every DDL path (create table, add, remove,
    SQLite's table remake) and model validation go through these methods, so no migration needs a vendor check.
    """

    def constraint_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return None
        return super().constraint_sql(model, schema_editor)

    def create_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return None
        return super().create_sql(model, schema_editor)

    def remove_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return None
        return super().remove_sql(model, schema_editor)

    def validate(self, model, instance, exclude=None, using=DEFAULT_DB_ALIAS):
        if connections[using].vendor != "postgresql":
            return
        super().validate(model, instance, exclude=exclude, using=using)


class TsTzRange(Func):
    """PostgreSQL's `tstzrange(start, end)`, half-open `[start, end)`: back-to-back appointments don't overlap."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


E164_REGEX = r"^\+[1-9][0-9]{6,14}$"


class Customer(models.Model):
    """Someone who called or booked, known to one business by their phone number."""

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="customers")
    phone = models.CharField(max_length=16, validators=[validate_e164], help_text="E.164, like +14155552671.")
    name = models.CharField(max_length=120, blank=True)
    notes = models.TextField(blank=True, help_text="Staff notes; the receptionist can read them.")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    call_count = models.PositiveIntegerField(default=0, help_text="Calls from this number, counted once each.")
    # The last call counted in call_count: recording the same call twice does not count it twice.
    last_call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["business", "-last_seen_at"], name="customer_business_seen")]
        constraints = [
            models.UniqueConstraint(fields=["business", "phone"], name="customer_business_phone_unique"),
            models.CheckConstraint(condition=Q(phone__regex=E164_REGEX), name="customer_phone_e164"),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'Unknown'} ({self.phone})"


class Appointment(models.Model):
    """A booked time for one service. Times are stored in UTC; the business's time zone is only for display."""

    class Status(models.TextChoices):
        BOOKED = "booked", "Booked"
        CANCELLED = "cancelled", "Cancelled"
        COMPLETED = "completed", "Completed"
        NO_SHOW = "no_show", "No-show"

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="appointments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="appointments")
    service = models.ForeignKey(Service, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    service_name = models.CharField(max_length=120, help_text="The service's name when booked; survives its deletion.")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.BOOKED)
    notes = models.TextField(blank=True)
    created_by_call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True,
                                        related_name="appointments_created")
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at"]
        indexes = [
            models.Index(fields=["business", "starts_at"], name="appointment_business_start"),
            models.Index(fields=["customer", "starts_at"], name="appointment_customer_start"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="appointment_ends_after_start"),
            models.CheckConstraint(condition=Q(status__in=["booked", "cancelled", "completed", "no_show"]),
                                   name="appointment_status_valid"),
            # Two booked appointments of one business never overlap, whatever writes them and however many at once.
            PostgresExclusionConstraint(
                name="appointment_no_overlap",
                expressions=[("business", RangeOperators.EQUAL),
                             (TsTzRange("starts_at", "ends_at", RangeBoundary()), RangeOperators.OVERLAPS)],
                condition=Q(status="booked"),
                violation_error_message="Another booked appointment overlaps this time.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_name} @ {self.starts_at:%Y-%m-%d %H:%M} UTC ({self.status})"


class Message(models.Model):
    """A message taken for the team, to call someone back."""

    class Urgency(models.TextChoices):
        LOW = "low", "Low"
        NORMAL = "normal", "Normal"
        HIGH = "high", "High"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        HANDLED = "handled", "Handled"

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="messages")
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    call = models.ForeignKey(Call, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    name = models.CharField(max_length=120)
    # Empty only on a voicemail from a withheld number: there is nobody to call back, but the recording stays.
    callback_number = models.CharField(max_length=16, blank=True, validators=[validate_e164])
    body = models.TextField()
    # A voicemail (Twilio <Record>) has its recording: played through our server, never by Twilio's URL.
    recording_sid = models.CharField(max_length=34, blank=True)
    recording_seconds = models.PositiveIntegerField(null=True, blank=True)
    # When the summary step wrote the recording's transcription into `body` (None: not transcribed yet).
    transcribed_at = models.DateTimeField(null=True, blank=True)
    urgency = models.CharField(max_length=8, choices=Urgency.choices, default=Urgency.NORMAL)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["business", "-created_at"], name="message_business_created"),
            models.Index(fields=["business", "status"], name="message_business_status"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(urgency__in=["low", "normal", "high"]), name="message_urgency_valid"),
            models.CheckConstraint(condition=Q(status="open", handled_at__isnull=True)
                                   | Q(status="handled", handled_at__isnull=False), name="message_handled_has_time"),
            models.CheckConstraint(condition=Q(callback_number__regex=E164_REGEX)
                                   | (Q(callback_number="") & ~Q(recording_sid="")), name="message_callback_e164"),
            models.UniqueConstraint(fields=["recording_sid"], condition=~Q(recording_sid=""),
                                    name="message_recording_sid_unique"),
            models.CheckConstraint(condition=Q(recording_sid="") | Q(recording_sid__regex=r"^RE[0-9a-fA-F]{32}$"),
                                   name="message_recording_sid_valid"),
        ]

    @property
    def is_voicemail(self) -> bool:
        return bool(self.recording_sid)

    def __str__(self) -> str:
        return f"{self.name}: {self.body[:60]}"


# --- after the call: per-business settings, and status rows that make every side effect happen once ---------

class NotificationSettings(models.Model):
    """Which calls the business hears about by email (to `Business.notification_email`)."""

    class EmailMode(models.TextChoices):
        ALL = "all", "Every call"
        FOLLOW_UP = "follow_up", "Only calls that need a follow-up"
        OFF = "off", "Off"

    business = models.OneToOneField(Business, on_delete=models.CASCADE, related_name="notification_settings")
    email_mode = models.CharField(max_length=10, choices=EmailMode.choices, default=EmailMode.ALL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"
        constraints = [models.CheckConstraint(condition=Q(email_mode__in=["all", "follow_up", "off"]),
                                              name="notification_email_mode_valid")]

    def __str__(self) -> str:
        return f"{self.business}: email {self.email_mode}"


class WebhookEndpoint(models.Model):
    """Where a business wants its `call.completed` events (Standard Webhooks, signed with `secret`)."""

    business = models.OneToOneField(Business, on_delete=models.CASCADE, related_name="webhook_endpoint")
    url = models.URLField(max_length=500)
    # whsec_<base64>; needed in clear to sign, shown to the owner once when created or rotated.
    secret = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.business}: {self.url}"


class CallNotification(models.Model):
    """The email about one call: claimed QUEUED -> SENDING by compare-and-set, then SENT, SKIPPED or FAILED.

    At most once: a worker that dies inside the SMTP exchange leaves SENDING and nothing resends it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="notification")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    recipient = models.EmailField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A queued email is not sent before this (the backoff after a mail server's passing failure).
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(
            condition=Q(status__in=["queued", "sending", "sent", "skipped", "failed"]), name="notification_status_valid")]

    def __str__(self) -> str:
        return f"email for call {self.call_id}: {self.status}"


class WebhookDelivery(models.Model):
    """One event for one endpoint, delivered at least once under a stable `message_id` (receivers dedupe on it).

    The body is fixed when the row is created, so every attempt sends the same bytes (re-signed per attempt).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="deliveries")
    event_type = models.CharField(max_length=40)
    message_id = models.CharField(max_length=64, unique=True)
    url = models.URLField(max_length=500)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Until when the attempt in flight (or the backoff before the next one) owns the delivery; claimed by
    # compare-and-set and committed before any network I/O, so no row lock is held across DNS and HTTP.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["call", "event_type"], name="webhook_delivery_once_per_call_event"),
            models.CheckConstraint(condition=Q(status__in=["pending", "delivered", "failed"]),
                                   name="webhook_delivery_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}: {self.status}"


class WebhookAttempt(models.Model):
    """One HTTP attempt of a delivery: what came back and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error[:40]}"


# --- a business's own tools over MCP (calls/mcp/) -----------------------------------------------------------------

# A server's name prefixes its tools' names for the model (`server__tool`): lower-case words joined by single
# underscores, so the double underscore always marks where the server's name ends.
MCP_SERVER_NAME_RE = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
MCP_SERVER_NAME_MAX = 24


class McpServer(models.Model):
    """A business's own MCP server (Streamable HTTP), whose tools the supervisor may call during its calls.

    The bearer token or header value is stored only encrypted (calls/mcp/secrets.py) and never shown again."""

    class Status(models.TextChoices):
        NEW = "new", "Not checked yet"
        OK = "ok", "Answering"
        UNREACHABLE = "unreachable", "Not answering"

    class AuthKind(models.TextChoices):
        NONE = "none", "No authentication"
        BEARER = "bearer", "Bearer token"
        HEADER = "header", "Custom header"

    business = models.ForeignKey(Business, on_delete=models.CASCADE, related_name="mcp_servers")
    name = models.CharField(max_length=MCP_SERVER_NAME_MAX)
    url = models.URLField(max_length=500)
    auth_kind = models.CharField(max_length=6, choices=AuthKind.choices, default=AuthKind.NONE)
    header_name = models.CharField(max_length=100, blank=True)  # AuthKind.HEADER only
    secret_encrypted = models.TextField(blank=True)  # Fernet token of the bearer token or header value
    status = models.CharField(max_length=11, choices=Status.choices, default=Status.NEW)
    last_error = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["business", "name"], name="mcp_server_name_unique_per_business"),
            models.CheckConstraint(condition=Q(name__regex=MCP_SERVER_NAME_RE), name="mcp_server_name_valid"),
            models.CheckConstraint(condition=Q(status__in=["new", "ok", "unreachable"]), name="mcp_server_status_valid"),
            models.CheckConstraint(condition=Q(auth_kind__in=["none", "bearer", "header"]),
                                   name="mcp_server_auth_kind_valid"),
            # A secret belongs to an auth kind, and a custom header has a name.
            models.CheckConstraint(condition=Q(auth_kind="none", secret_encrypted="") | ~Q(auth_kind="none"),
                                   name="mcp_server_secret_needs_auth"),
            models.CheckConstraint(condition=~Q(auth_kind="header") | ~Q(header_name=""),
                                   name="mcp_server_header_named"),
        ]

    def __str__(self) -> str:
        return f"{self.business}: {self.name}"


class McpTool(models.Model):
    """One tool a server listed at its last refresh; the business switches each on or off."""

    server = models.ForeignKey(McpServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="mcp_tool_name_unique_per_server"),
            # What OpenAI accepts in a function's name (with the server's name and "__" in front).
            models.CheckConstraint(condition=Q(name__regex=r"^[A-Za-z0-9_-]+$"), name="mcp_tool_name_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.server.name}__{self.name}"
