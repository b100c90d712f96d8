from django.urls import path

from voice import views

urlpatterns = [
    path("twilio/incoming/", views.twilio_incoming, name="twilio_incoming"),
    path("twilio/status/", views.twilio_status, name="twilio_status"),
    path("twilio/fallback/", views.twilio_fallback, name="twilio_fallback"),
    path("twilio/dial-result/", views.twilio_dial_result, name="twilio_dial_result"),
    path("twilio/voicemail/done/", views.twilio_voicemail_done, name="twilio_voicemail_done"),
    path("twilio/voicemail/recording/", views.twilio_voicemail_recording, name="twilio_voicemail_recording"),
]
