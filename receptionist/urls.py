from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views
from receptionist import metrics_endpoint
from voice import views as voice_views

urlpatterns = [
    path("", account_views.landing, name="landing"),
    path("healthz/", account_views.healthz, name="healthz"),
    # Prometheus' default path; served without middleware (receptionist/bare_http.py).
    path("metrics", metrics_endpoint.metrics, name="metrics"),
    # Ahead of the admin's own URLs: the same login form, rate-limited (allauth's limits don't cover it).
    path("admin/login/", account_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("voice/", include("voice.urls")),
    path("dashboard/test-call/", voice_views.test_call, name="test_call"),
    path("settings/number/", include("voice.number_urls")),
    path("dashboard/messages/<int:message_id>/voicemail.wav", voice_views.voicemail_audio, name="voicemail_audio"),
    path("dashboard/test-call/minutes/", voice_views.test_call_minutes_left, name="test_call_minutes"),
    path("", include("calls.urls")),
    path("billing/", include("billing.urls")),
    path("", include("accounts.urls")),
]
