"""Subaccounts: child accounts with their own plan, balance and keys (SPEC A3, D4).

The parent's members manage the children through the roles they hold on the parent
(`accounts.permissions.role_for` walks up the tree), so a new child needs no membership.
"""

from datetime import datetime

from django.db.models import Q, Sum

from accounts.models import Account, User
from accounts.onboarding import OnboardingError, create_account
from accounts.permissions import MAX_ACCOUNT_DEPTH
from billing.models import Plan, Subscription

MAX_CHILDREN = 100


class SubaccountError(ValueError):
    """A refused subaccount; nothing was written."""


def offered_plans() -> list[Plan]:
    """Return the plans a customer may choose for a subaccount: the public ones."""
    return list(Plan.objects.filter(is_public=True).order_by("name"))


def _depth(account: Account) -> int:
    depth, current = 1, account
    while current.parent_id is not None and depth <= MAX_ACCOUNT_DEPTH:
        current = Account.objects.only("parent_id").get(pk=current.parent_id)
        depth += 1
    return depth


def create_subaccount(
    *, parent: Account, name: str, plan_code: str, email: str, actor: User | None, now: datetime
) -> Account:
    """Open a child account of `parent` on a public plan (no signup credit: see create_account)."""
    plan = Plan.objects.filter(code=plan_code, is_public=True).first()
    if plan is None:
        raise SubaccountError("Choose one of the plans.")
    if _depth(parent) >= MAX_ACCOUNT_DEPTH:
        raise SubaccountError("Subaccounts can be nested at most a few levels deep.")
    if Account.objects.filter(parent=parent).count() >= MAX_CHILDREN:
        raise SubaccountError(f"An account can have at most {MAX_CHILDREN} subaccounts.")
    try:
        return create_account(
            name=name,
            email=(email or "").strip() or parent.email,
            plan=plan,
            now=now,
            parent=parent,
            actor=actor,
        )
    except OnboardingError as error:
        raise SubaccountError(str(error)) from None


def subaccount_rows(*, parent: Account) -> list[dict]:
    """Return each child of `parent` with its plan, balance and current period's usage.

    Two queries whatever the number of children: their subscriptions, and one aggregate over
    the daily rollups that picks each child's own period.
    """
    from usage.models import UsageRollup  # usage depends on accounts, not the other way round

    subscriptions = list(
        Subscription.objects.filter(account__parent=parent)
        .select_related("account", "plan")
        .order_by("account__name")
    )
    if not subscriptions:
        return []
    periods = Q()
    for subscription in subscriptions:
        periods |= Q(
            account_id=subscription.account_id,
            day__gte=subscription.current_period_start.date(),
            day__lt=subscription.current_period_end.date(),
        )
    totals = {
        row["account_id"]: row
        for row in UsageRollup.objects.filter(periods, is_line=False)
        .values("account_id")
        .annotate(
            seconds=Sum("quantity", filter=Q(component="call")),
            cost=Sum("cost_micros"),
            refunded=Sum("refunded_micros"),
        )
    }
    rows = []
    for subscription in subscriptions:
        account = subscription.account
        total = totals.get(account.pk, {})
        rows.append(
            {
                "account": account,
                "plan": subscription.plan,
                "period_start": subscription.current_period_start,
                "period_end": subscription.current_period_end,
                "minutes": (total.get("seconds") or 0) // 60,
                "cost_micros": (total.get("cost") or 0) - (total.get("refunded") or 0),
            }
        )
    return rows
