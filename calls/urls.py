from django.urls import path

from calls import views
from calls.mcp import views as mcp_views

urlpatterns = [
    path("settings/notifications/", views.settings_notifications, name="settings_notifications"),
    path("settings/tools/", mcp_views.settings_tools, name="settings_tools"),
    path("settings/tools/<int:server_id>/refresh/", mcp_views.mcp_server_refresh, name="mcp_server_refresh"),
    path("settings/tools/<int:server_id>/delete/", mcp_views.mcp_server_delete, name="mcp_server_delete"),
    path("settings/tools/tool/<int:tool_id>/", mcp_views.mcp_tool_toggle, name="mcp_tool_toggle"),
    # dashboard: home and calls
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/calls/", views.call_list, name="call_list"),
    path("dashboard/calls/export.csv", views.call_export, name="call_export"),
    path("dashboard/calls/<int:call_id>/", views.call_detail, name="call_detail"),
    # dashboard: appointments, messages, customers
    path("dashboard/appointments/", views.appointment_list, name="appointment_list"),
    path("dashboard/appointments/<int:appointment_id>/cancel/", views.appointment_cancel, name="appointment_cancel"),
    path("dashboard/messages/", views.message_list, name="message_list"),
    path("dashboard/messages/<int:message_id>/handle/", views.message_handle, name="message_handle"),
    path("dashboard/messages/<int:message_id>/reopen/", views.message_reopen, name="message_reopen"),
    path("dashboard/customers/", views.customer_list, name="customer_list"),
    path("dashboard/customers/<int:customer_id>/", views.customer_detail, name="customer_detail"),
    path("dashboard/analytics/", views.analytics_page, name="analytics"),
    path("dashboard/analytics/export.csv", views.analytics_export, name="analytics_export"),
]
