from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.access import business_view
from calls import forms, services
from calls.models import NotificationSettings, WebhookEndpoint


@business_view(owner_only=True)
def settings_notifications(request: HttpRequest) -> HttpResponse:
    """Email switch and outbound webhook. A new signing secret is shown once, in the answer to the POST."""
    business = request.business
    current = NotificationSettings.objects.filter(business=business).first()
    endpoint = WebhookEndpoint.objects.filter(business=business).first()
    initial = {"email_mode": current.email_mode if current else NotificationSettings.EmailMode.ALL,
               "webhook_url": endpoint.url if endpoint and endpoint.is_active else ""}
    form = forms.NotificationSettingsForm(request.POST or None, initial=initial)
    new_secret = ""
    if request.method == "POST" and form.is_valid():
        endpoint, new_secret = services.notification_settings_save(
            business=business, email_mode=form.cleaned_data["email_mode"],
            webhook_url=form.cleaned_data["webhook_url"], rotate_secret=form.cleaned_data["rotate_secret"])
        if not new_secret:
            messages.success(request, "Notification settings saved.")
            return redirect("settings_notifications")
        form = forms.NotificationSettingsForm(initial={"email_mode": form.cleaned_data["email_mode"],
                                                       "webhook_url": endpoint.url if endpoint else ""})
    return render(request, "calls/settings_notifications.html",
                  {"form": form, "endpoint": endpoint, "new_secret": new_secret,
                   "deliveries": endpoint.deliveries.order_by("-created_at")[:10] if endpoint else []})
