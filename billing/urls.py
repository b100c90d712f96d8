from django.urls import path

from billing import views

urlpatterns = [
    path("", views.billing_overview, name="billing"),
    path("checkout/", views.checkout, name="billing_checkout"),
    path("portal/", views.portal, name="billing_portal"),
    path("success/", views.checkout_success, name="billing_success"),
    path("webhooks/polar/", views.polar_webhook, name="polar_webhook"),
]
