"""Opening accounts: the account, its owner, its subscription and its signup credit."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from accounts.models import Account, Membership, Role, User
from accounts.team import is_invited
from billing import events
from billing.invoicing.plan_fees import charge_first_period_fee
from billing.ledger.locks import lock_account
from billing.ledger.posting import post_entry
from billing.models import Allowance, EntryKind, Plan, Subscription
from billing.plans.allowances import (
    grant_included_credit,
    period_included_credit_micros,
    period_included_seconds,
)
from billing.plans.signup_credit import claim_signup_credit
from billing.plans.subscriptions import subscribe

logger = logging.getLogger(__name__)


class OnboardingError(ValueError):
    """Bad input for a new account; nothing was written."""


def create_account(
    *,
    name: str,
    email: str,
    plan: Plan,
    now: datetime,
    owner: User | None = None,
    parent: Account | None = None,
    anchor_day: int | None = None,
    credit_micros: int = 0,
    actor: User | None = None,
    allowance_locked: bool = False,
    signup_credit: bool = True,
    external_id: str | None = None,
    metadata: dict[str, str] | None = None,
    extra_billing_emails: list[str] = (),
) -> Account:
    """Open an account on a plan, grant the plan's signup credit (not to a subaccount, and
    once per person) and any extra credit.

    A plan with a fee charges the first period's at once (`charge_first_period_fee`), and its
    included minutes and credit wait until it is paid.
    `allowance_locked`: the plan's included minutes and credit wait for staff approval or a
    paid plan fee (`billing.plans.allowances.unlock_allowance`).
    `signup_credit=False`: the operator's platform opens the account for a customer it
    already has (billing.customers), not a person signing up, so no welcome credit.
    An `external_id` already taken raises IntegrityError (account_external_id_unique).
    """
    name = name.strip()
    if not name:
        raise OnboardingError("An account needs a name.")
    if credit_micros < 0:
        raise OnboardingError("Initial credit cannot be negative.")
    if anchor_day is not None and not 1 <= anchor_day <= 31:
        raise OnboardingError("The billing anchor day is a day of the month, 1 to 31.")
    with transaction.atomic():
        account = Account.objects.create(
            name=name[:200],
            email=email.strip().lower(),
            extra_billing_emails="\n".join(extra_billing_emails),
            external_id=external_id,
            metadata=metadata or {},
            parent=parent,
            billing_mode=plan.billing_mode,
            created_at=now,
        )
        subscription = subscribe(
            account=account,
            plan=plan,
            now=now,
            anchor_day=anchor_day,
            allowance_locked=allowance_locked,
        )
        # Locked like any account whose balance changes, though no one else can see it yet.
        locked = lock_account(account.pk)
        account = locked.account
        start, end = subscription.current_period_start, subscription.current_period_end
        # The first period pays its fee like every later one, before any opening credit is
        # posted: welcome credit never pays for the included allowance (docs/billing-rules.md).
        fee = charge_first_period_fee(locked=locked, plan=plan, start=start, end=end, now=now)
        if fee is not None and fee.locks_allowance and not allowance_locked:
            allowance_locked = True
            Subscription.objects.filter(pk=subscription.pk).update(allowance_locked=True)
        if plan.included_minutes:
            Allowance.objects.create(
                account=account,
                period_start=start,
                period_end=end,
                included_seconds=period_included_seconds(
                    plan=plan, allowance_locked=allowance_locked
                ),
            )
        if period_included_credit_micros(plan=plan, allowance_locked=allowance_locked):
            grant_included_credit(locked=locked, plan=plan, start=start, end=end, now=now)
        if owner is not None:
            Membership.objects.create(user=owner, account=account, role=Role.OWNER, created_at=now)
        # Signup credit welcomes a new customer once. A subaccount is an existing customer's
        # (it can open dozens), so it gets none: otherwise every child would be free credit.
        # Nor does a second account of the same person, however the address is spelled.
        if (
            plan.signup_credit_micros
            and signup_credit
            and parent is None
            and claim_signup_credit(account=account, email=email, now=now)
        ):
            expires_at = (
                now + timedelta(days=plan.signup_credit_expiry_days)
                if plan.signup_credit_expiry_days
                else None
            )
            post_entry(
                locked=locked,
                amount_micros=plan.signup_credit_micros,
                kind=EntryKind.SIGNUP_CREDIT,
                now=now,
                description=f"Signup credit on {plan.name}",
                grant_expires_at=expires_at,
                # Free credit is spent before purchased credit that never expires.
                grant_priority=10,
                idempotency_key=f"signup:{account.public_id}",
            )
        if credit_micros:
            post_entry(
                locked=locked,
                amount_micros=credit_micros,
                kind=EntryKind.PROMOTIONAL,
                now=now,
                actor=actor,
                description="Initial credit",
                reason="Granted when the account was created",
            )
        events.customer_created(account=account, plan=plan, now=now)
    return account


def signup_plans() -> list[Plan]:
    """Return the plans a new customer may choose at sign-up (staff decide which)."""
    return list(Plan.objects.filter(selectable_at_signup=True).order_by("name"))


def open_account_for_new_user(*, user: User, now: datetime, plan_code: str = "") -> Account | None:
    """Give a user who just signed up their own account on their plan, as its owner.

    The plan is the one they chose, else `settings.SIGNUP_PLAN_CODE` (llm-api by default),
    and only if staff made it selectable at sign-up; its signup credit is on the balance at
    once (once per person). A site whose operator has not loaded that plan opens no account
    (the user sees an empty dashboard and staff can attach them to one) rather than refusing
    the sign-up.

    Someone who signs up to accept an invitation joins the inviting account by accepting it:
    they get no account of their own, and so no signup credit.
    """
    if Membership.objects.filter(user=user).exists() or is_invited(email=user.email, now=now):
        return None
    code = plan_code or settings.SIGNUP_PLAN_CODE
    # Only a plan staff made selectable at sign-up: a setting pointing at a sales-led plan
    # must not hand every new user its included minutes.
    plan = Plan.objects.filter(code=code, selectable_at_signup=True).first()
    if plan is None:
        logger.warning(
            "Sign-up plan %r does not exist or is not selectable at sign-up: %s has no account",
            code,
            user,
        )
        return None
    return create_account(
        name=user.name or user.email, email=user.email, plan=plan, now=now, owner=user
    )
