"""Usage pages of an account, mounted at app/a/<public_id>/usage/."""

from django.urls import path

from usage.pages import views

app_name = "usage"

urlpatterns = [
    path("", views.usage_page, name="page"),
    path("export.csv", views.usage_csv, name="csv"),
    path("log/", views.usage_log, name="log"),
    path("log/export.csv", views.usage_log_csv, name="log_csv"),
]
