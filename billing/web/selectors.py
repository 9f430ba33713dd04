"""What the dashboard's billing page shows (SPEC D3), as plain data: one selector.

Top-up and saved cards are changed through the payment flow's views (billing.web.payment_views);
alert settings and budgets are billing.alerts' and usage.spending.budgets'. This module only reads.
"""

from collections.abc import Iterable
from datetime import datetime

from accounts.models import Account, ApiKey, KeyKind
from billing.alerts.balance import alert_settings_for, low_balance_threshold_micros
from billing.invoicing.documents import invoice_summary, issued_invoices
from billing.models import (
    AutoTopUpSettings,
    BillingDetails,
    Budget,
    RecurringCreditPurchase,
    RecurringCreditSettings,
    Subscription,
    TopUp,
    TopUpKind,
)
from billing.money import usd_input
from billing.payments import cards
from billing.payments import topups as topups_service
from billing.periods import current_period, period_last_day
from usage.pages.runway import credit_runway_days, runway_sentence
from usage.reads.rollups import period_spend
from usage.spending.budgets import budget_label

AUTO_FIELDS = ("threshold", "amount", "target", "monthly_cap")


def billing_details_initial(account: Account) -> dict:
    """Return the billing details form's values as the account saved them."""
    details = BillingDetails.objects.filter(account=account).first()
    if details is None:
        return {}
    return {
        "legal_name": details.legal_name,
        "address": details.address,
        "country": details.country,
        "tax_id": details.tax_id,
    }


def auto_topup_initial(account: Account) -> dict:
    """Return the auto-top-up form's values as the account saved them."""
    row = AutoTopUpSettings.objects.filter(account=account).first()
    initial = {"enabled": bool(row and row.enabled)}
    for name in AUTO_FIELDS:
        initial[name] = usd_input(getattr(row, f"{name}_micros", None) if row else None)
    return initial


def recurring_credit_initial(account: Account) -> dict:
    """Return the recurring credit form's values as the account saved them."""
    row = RecurringCreditSettings.objects.filter(account=account).first()
    return {
        "enabled": bool(row and row.enabled),
        "amount": usd_input(row.amount_micros if row else None),
    }


def alert_initial(account: Account) -> dict:
    state = alert_settings_for(account=account)
    initial = {"threshold": usd_input(state.low_balance_threshold_micros)}
    for field in state._meta.fields:
        if field.name.startswith("email_"):
            initial[field.name] = getattr(state, field.name)
    return initial


def budgets_for(*, account: Account, now: datetime) -> dict:
    """Return the account's budgets with the period's spend against each."""
    subscription = Subscription.objects.get(account=account)
    start, end = current_period(subscription=subscription, now=now)
    spend = period_spend(account=account, start=start, end=end).net_micros
    budgets = list(Budget.objects.filter(account=account).select_related("api_key").order_by("pk"))
    return {
        "spend_micros": spend,
        "period_end": end,
        "period_last_day": period_last_day(end),
        "budgets": [
            {
                "budget": b,
                "label": budget_label(b),
                "percent": min(round(spend * 100 / b.amount_micros), 100),
                "reached": b.reached_period_start == start,
            }
            for b in budgets
        ],
        "keys": list(
            ApiKey.objects.filter(
                account=account, kind=KeyKind.CUSTOMER, revoked_at__isnull=True
            ).order_by("name")
        ),
    }


def billing_page(*, account: Account, now: datetime) -> dict:
    """Return the billing page's figures: balance, top-up, cards, auto-top-up, alerts, budgets."""
    plan = Subscription.objects.select_related("plan").get(account=account).plan
    runway = credit_runway_days(account=account, now=now)
    return {
        "plan": plan,
        "minimum_micros": topups_service.minimum_topup_micros(account),
        "cards": cards.active_cards(account),
        "topups": topup_rows(topup_history(account)[:10]),
        "invoices": [invoice_summary(i) for i in issued_invoices(account=account)[:5]],
        "threshold_micros": low_balance_threshold_micros(account=account),
        "plan_threshold_micros": plan.low_balance_threshold_micros,
        "runway_sentence": runway_sentence(runway),
        "recurring_purchases": list(
            RecurringCreditPurchase.objects.filter(account=account).select_related("topup")[:3]
        ),
        **budgets_for(account=account, now=now),
    }


def topup_rows(topups: Iterable[TopUp]) -> list[dict]:
    """Return top-ups as the payments tables show them: with whether each can still be paid
    (Resume) or canceled."""
    return [
        {
            "topup": topup,
            "can_resume": topups_service.can_resume(topup),
            "can_cancel": topups_service.can_resume(topup) and topup.kind == TopUpKind.MANUAL,
        }
        for topup in topups
    ]


def topup_history(account: Account):
    """Return every top-up of the account, newest first, for the payments history's pages."""
    return TopUp.objects.filter(account=account).select_related("receipt")
