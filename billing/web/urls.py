"""The billing page of an account, mounted at app/a/<public_id>/billing/."""

from django.urls import path

from billing.web import plan_views, views

app_name = "billing_dashboard"

urlpatterns = [
    path("", views.billing_home, name="home"),
    path("topup/", views.start_topup, name="topup"),
    path("payments/", views.payments, name="payments"),
    path("auto-topup/", views.save_auto_topup, name="auto_topup"),
    path("recurring-credit/", views.save_recurring_credit, name="recurring_credit"),
    path("alerts/", views.save_alerts, name="alerts"),
    path("details/", views.save_billing_details, name="billing_details"),
    path("budgets/", views.add_budget, name="add_budget"),
    path("budgets/<int:budget_id>/delete/", views.delete_budget, name="delete_budget"),
    path("statement/", views.statement, name="statement"),
    path("statement/export.csv", views.statement_csv, name="statement_csv"),
    path("plan/", plan_views.compare_plans, name="plans"),
    path("plan/preview/", plan_views.preview_change, name="plan_preview"),
    path("plan/confirm/", plan_views.confirm_change, name="plan_confirm"),
]
