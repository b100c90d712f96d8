from django.urls import path

from voice import number_views

urlpatterns = [
    path("", number_views.number_settings, name="settings_number"),
    path("new/", number_views.number_search, name="number_search"),
    path("existing/", number_views.number_existing, name="number_existing"),
    path("release/", number_views.number_release, name="number_release"),
    path("check/", number_views.number_check, name="number_check"),
    path("reconnect/", number_views.number_reconnect, name="number_reconnect"),
]
