from django.urls import path

from calls import views

urlpatterns = [
    path("settings/notifications/", views.settings_notifications, name="settings_notifications"),
]
