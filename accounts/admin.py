from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from accounts.models import (CLOSED_DATES_MAX, FAQ_ENTRIES_MAX, OPENING_HOURS_MAX, SERVICES_MAX, Business, ClosedDate,
                             FAQEntry, Invite, Membership, OpeningHours, Service, User)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Profile", {"fields": ["full_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    readonly_fields = ["last_login", "date_joined"]  # recorded by sign-up and sign-in


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    extra = 0
    max_num = OPENING_HOURS_MAX


class ClosedDateInline(admin.TabularInline):
    model = ClosedDate
    extra = 0
    max_num = CLOSED_DATES_MAX


class ServiceInline(admin.TabularInline):
    model = Service
    extra = 0
    max_num = SERVICES_MAX


class FAQInline(admin.StackedInline):
    model = FAQEntry
    extra = 0
    max_num = FAQ_ENTRIES_MAX


@admin.register(Business)
class BusinessAdmin(admin.ModelAdmin):
    list_display = ["name", "phone_number", "time_zone", "language", "voice", "onboarded_at", "created_at"]
    list_filter = ["language", "voice", "time_zone", ("onboarded_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "phone_number", "phone_number_sid", "notification_email", "uuid", "memberships__user__email"]
    # What Twilio last said about the number is recorded by the number pages, never typed in.
    readonly_fields = ["uuid", "phone_number_checked_at", "phone_number_webhooks_base", "created_at", "updated_at"]
    inlines = [MembershipInline, OpeningHoursInline, ClosedDateInline, ServiceInline, FAQInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "business", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "business__name"]
    raw_id_fields = ["user", "business"]


@admin.register(OpeningHours)
class OpeningHoursAdmin(admin.ModelAdmin):
    list_display = ["business", "weekday", "opens", "closes"]
    list_filter = ["weekday"]
    search_fields = ["business__name"]


@admin.register(ClosedDate)
class ClosedDateAdmin(admin.ModelAdmin):
    list_display = ["business", "date", "reason"]
    list_filter = ["date"]
    search_fields = ["business__name", "reason"]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "business", "duration_minutes", "price"]
    search_fields = ["name", "business__name"]
    list_filter = ["duration_minutes"]


@admin.register(FAQEntry)
class FAQEntryAdmin(admin.ModelAdmin):
    list_display = ["question", "business", "position"]
    search_fields = ["question", "answer", "business__name"]


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["email", "business", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role", ("accepted_at", admin.EmptyFieldListFilter), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["email", "business__name"]
    raw_id_fields = ["business"]
    # Who invited, and whether and by whom it was accepted or revoked, are what happened to the invitation.
    readonly_fields = ["invited_by", "accepted_at", "accepted_by", "revoked_at"]
