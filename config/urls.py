from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts.web.portal import portal_entry
from accounts.web.views import admin_login_redirect
from billing.payments.webhooks import stripe_webhook
from config.views import brand_css, healthz
from operations.views import metrics, readyz
from usage.admin import support_search_view
from usage.api.app import api

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("brand.css", brand_css, name="brand_css"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    # Browsers ask for /favicon.ico whatever the page says; the icon is a static file.
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}img/favicon.svg")),
    # Staff sign in through allauth so its login throttling guards the admin too (SPEC A1).
    path("admin/login/", admin_login_redirect, name="admin_login_redirect"),
    # The support home's search box (on the admin index), before the admin's own URLs.
    path("admin/find/", admin.site.admin_view(support_search_view), name="support_search"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    # Checks the signature before dj-stripe's own view stores and processes the event (P3).
    path("stripe/webhook/<uuid:uuid>/", stripe_webhook, name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("api/v1/", api.urls),
    path("app/a/<public_id:public_id>/payments/", include("billing.web.payment_urls")),
    path("app/", include("accounts.web.urls")),
    # One-time sign-in links made by the platform (POST /api/v1/customers/{id}/portal_sessions).
    path("portal/<str:token>/", portal_entry, name="portal_entry"),
    path("app/a/<public_id:public_id>/invoices/", include("billing.web.invoice_urls")),
    path("app/a/<public_id:public_id>/billing/", include("billing.web.urls")),
    path("app/a/<public_id:public_id>/usage/", include("usage.pages.urls")),
    path("", RedirectView.as_view(pattern_name="dashboard:home", permanent=False)),
]
