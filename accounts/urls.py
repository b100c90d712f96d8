from django.urls import path

from accounts import views

urlpatterns = [
    path("onboarding/", views.onboarding, name="onboarding"),
    path("settings/", views.settings_profile, name="settings_profile"),
    path("settings/hours/", views.settings_hours, name="settings_hours"),
    path("settings/services/", views.settings_services, name="settings_services"),
    path("settings/faq/", views.settings_faq, name="settings_faq"),
    path("team/", views.team, name="team"),
    path("team/invites/<int:invite_id>/revoke/", views.invite_revoke, name="invite_revoke"),
    path("team/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("business/<int:business_id>/switch/", views.business_switch, name="business_switch"),
    path("invites/<str:token>/", views.invite_accept, name="invite_accept"),
]
