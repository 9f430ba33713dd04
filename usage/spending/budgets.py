"""Spending budgets per account or per API key (SPEC G4, N2). Rules: docs/billing-rules.md.

A budget measures the account's spend in the current billing period: the net cost (cost less
refunds) of the usage that occurred in the period, from the daily rollups. Usage is reported by
the operator's platform key, not by the customer's key, so Meterline cannot tell which customer
key a call or request was spent through; a key budget therefore applies the account's spend to
one key: once the spend reaches it, that key is stopped (hard) or the customer is told (soft),
while the account's other keys go on. A customer caps a test key at 10 USD and production at 500.

When the spend reaches a budget, the budget is marked reached for the period (under the account
lock, in the transaction that charged the usage) and its email is sent once per period and amount.
`usage.spending.authorize.authorize` then refuses billable usage under a reached hard budget with
one indexed query and no sum.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Q

from accounts.models import Account, ApiKey, KeyKind
from billing.alerts.balance import alert_state
from billing.ledger.locks import LockedAccount, lock_account
from billing.models import AlertSettings, Budget, Subscription
from billing.money import format_usd, micros_to_api
from billing.notifications.links import billing_page_url
from billing.notifications.outbox import notify
from billing.periods import current_period
from usage.reads.rollups import period_spend
from webhooks.events import emit

BUDGET_REACHED = "budget_reached"
MAX_BUDGETS_PER_ACCOUNT = 50


class BudgetError(ValueError):
    """Refused budget input; nothing was written."""


def budget_label(budget: Budget) -> str:
    """Return how messages name a budget: "Production key: $50.00"."""
    return f"{budget.name}: {format_usd(budget.amount_micros)}"


def budget_refusal(budget: Budget) -> str:
    """Return the 402 message for billable usage stopped by a hard budget."""
    return (
        f"Monthly budget '{budget_label(budget)}' reached. Raise it at "
        f"{billing_page_url(budget.account)} or wait for the next billing period."
    )


# Customer changes -------------------------------------------------------------------------------


def create_budget(
    *,
    account: Account,
    name: str,
    amount_micros: int,
    hard: bool,
    now: datetime,
    api_key: ApiKey | None = None,
) -> Budget:
    """Add a budget; if the period's spend already reached it, it is reached at once."""
    name = _clean(name=name, amount_micros=amount_micros)
    if api_key is not None and (
        api_key.account_id != account.pk or api_key.kind != KeyKind.CUSTOMER
    ):
        raise BudgetError("That API key does not belong to this account.")
    with transaction.atomic():
        locked = lock_account(account.pk)
        account = locked.account
        if Budget.objects.filter(account=account).count() >= MAX_BUDGETS_PER_ACCOUNT:
            raise BudgetError(f"An account can have at most {MAX_BUDGETS_PER_ACCOUNT} budgets.")
        budget = Budget.objects.create(
            account=account,
            api_key=api_key,
            name=name,
            amount_micros=amount_micros,
            hard=hard,
            created_at=now,
            updated_at=now,
        )
        settings = alert_state(locked=locked, before_micros=account.balance_micros).settings
        if not settings.has_budgets:
            AlertSettings.objects.filter(pk=settings.pk).update(has_budgets=True)
            settings.has_budgets = True
        _evaluate(account=account, budgets=[budget], now=now)
    return budget


def delete_budget(*, budget: Budget) -> None:
    with transaction.atomic():
        account = lock_account(budget.account_id).account
        Budget.objects.filter(pk=budget.pk).delete()
        if not Budget.objects.filter(account=account).exists():
            AlertSettings.objects.filter(account=account).update(has_budgets=False)


def _clean(*, name: str, amount_micros: int) -> str:
    name = (name or "").strip()
    if not name:
        raise BudgetError("A budget needs a name.")
    if amount_micros <= 0:
        raise BudgetError("A budget is an amount above zero.")
    return name[:100]


# Usage side ---------------------------------------------------------------------------------------


def budgets_after_usage(
    *, locked: LockedAccount, subscription: Subscription, now: datetime
) -> None:
    """Mark and announce the budgets the period's spend reached (the account is locked)."""
    account = locked.account
    start, _ = current_period(subscription=subscription, now=now)
    open_budgets = list(
        Budget.objects.filter(account=account)
        .exclude(reached_period_start=start)
        .select_related("api_key")
    )
    if open_budgets:
        _evaluate(account=account, budgets=open_budgets, now=now, subscription=subscription)


def _evaluate(
    *,
    account: Account,
    budgets: list[Budget],
    now: datetime,
    subscription: Subscription | None = None,
) -> None:
    if subscription is None:
        subscription = Subscription.objects.get(account=account)
    start, end = current_period(subscription=subscription, now=now)
    budgets = [b for b in budgets if b.reached_period_start != start]
    if not budgets:
        return
    spend = period_spend(account=account, start=start, end=end).net_micros
    for budget in budgets:
        if spend < budget.amount_micros:
            continue
        Budget.objects.filter(pk=budget.pk).update(reached_period_start=start)
        budget.reached_period_start = start
        emit(
            "budget.reached",
            {
                "name": budget.name,
                "amount": micros_to_api(budget.amount_micros),
                "spend": micros_to_api(spend),
                "hard": budget.hard,
                "api_key": budget.api_key.key_id if budget.api_key_id else None,
                "period_start": start,
                "period_end": end,
            },
            account=account,
            now=now,
        )
        notify(
            account=account,
            kind=BUDGET_REACHED,
            # Once per period and amount: a budget raised and reached again emails again.
            key=f"{BUDGET_REACHED}:{budget.pk}:{start:%Y%m%d}:{budget.amount_micros}",
            context={
                "name": budget.name,
                "label": budget_label(budget),
                "amount": format_usd(budget.amount_micros),
                "spend": format_usd(spend),
                "hard": budget.hard,
                "key_name": budget.api_key.name if budget.api_key_id else "",
                "key_prefix": budget.api_key.key_id if budget.api_key_id else "",
                "period_end": f"{end:%d %B %Y}",
            },
            now=now,
        )


# Gateway side -------------------------------------------------------------------------------------


def reached_hard_budget(
    *, account: Account, api_key: ApiKey, subscription: Subscription, now: datetime
) -> Budget | None:
    """Return a hard budget that stops billable usage through this key now, if any."""
    start, _ = current_period(subscription=subscription, now=now)
    budget = (
        Budget.objects.filter(account=account, hard=True, reached_period_start=start)
        .filter(Q(api_key__isnull=True) | Q(api_key=api_key))
        .order_by("amount_micros")
        .first()
    )
    if budget is not None:
        budget.account = account
    return budget
