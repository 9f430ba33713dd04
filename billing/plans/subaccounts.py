"""Subaccounts: child accounts with their own plan, balance and keys (SPEC A3, D4).

The parent's members manage the children through the roles they hold on the parent
(`accounts.permissions.role_for` walks up the tree), so a new child needs no membership.
"""

from datetime import datetime

from django.db import transaction

from accounts.models import Account, User
from accounts.permissions import MAX_ACCOUNT_DEPTH
from billing.ledger.locks import lock_account
from billing.models import Plan, Subscription
from billing.plans.onboarding import OnboardingError, create_account

MAX_CHILDREN = 100


class SubaccountError(ValueError):
    """A refused subaccount; nothing was written."""


def offered_plans() -> list[Plan]:
    """Return the plans a customer may choose for a subaccount (staff decide which)."""
    return list(Plan.objects.filter(selectable_for_subaccount=True).order_by("name"))


def default_plan_code(*, parent: Account, plans: list[Plan]) -> str:
    """The plan a new subaccount starts on in the form: the parent's own when it is open to
    subaccounts (a team usually wants its sibling on the same rates), else none chosen."""
    parent_plan_id = (
        Subscription.objects.filter(account=parent).values_list("plan_id", flat=True).first()
    )
    return next((plan.code for plan in plans if plan.pk == parent_plan_id), "")


def account_depth(account: Account) -> int:
    depth, current = 1, account
    while current.parent_id is not None and depth <= MAX_ACCOUNT_DEPTH:
        current = Account.objects.only("parent_id").get(pk=current.parent_id)
        depth += 1
    return depth


def create_subaccount(
    *, parent: Account, name: str, plan_code: str, email: str, actor: User | None, now: datetime
) -> Account:
    """Open a child account of `parent` on a plan selectable for subaccounts.

    No customer action creates spendable value (docs/billing-rules.md): the child gets no
    signup credit (see create_account), and its plan's included minutes and credit stay locked
    until staff approve it or its plan fee is paid (billing.plans.allowances.unlock_allowance).
    """
    plan = Plan.objects.filter(code=plan_code, selectable_for_subaccount=True).first()
    if plan is None:
        raise SubaccountError("Choose one of the plans.")
    if account_depth(parent) >= MAX_ACCOUNT_DEPTH:
        raise SubaccountError("Subaccounts can be nested at most a few levels deep.")
    with transaction.atomic():
        # Under the parent's row lock, two requests for the same name (a double click, two
        # tabs) are checked one after the other, so only one of them opens the subaccount.
        # A check, not a unique constraint: names are compared ignoring case and spaces, and
        # existing data may already hold duplicates.
        lock_account(parent.pk)
        children = Account.objects.filter(parent=parent)
        if children.count() >= MAX_CHILDREN:
            raise SubaccountError(f"An account can have at most {MAX_CHILDREN} subaccounts.")
        if children.filter(name__iexact=name.strip()).exists():
            raise SubaccountError(f"{parent.name} already has a subaccount named {name.strip()}.")
        try:
            return create_account(
                name=name,
                email=(email or "").strip() or parent.email,
                plan=plan,
                now=now,
                parent=parent,
                actor=actor,
                allowance_locked=True,
            )
        except OnboardingError as error:
            raise SubaccountError(str(error)) from None
