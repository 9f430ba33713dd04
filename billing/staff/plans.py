"""Staff moving an account to another plan (SPEC S2), and releasing a subaccount's included
allowance (docs/billing-rules.md, "No value from nothing")."""

from datetime import datetime

from django.db import transaction

from accounts.models import Account, ApiKey, User
from billing import events
from billing.ledger.locks import lock_account
from billing.models import AllowanceUnlock, Plan, StaffAction, Subscription
from billing.plans.allowances import keep_period_allowance, unlock_allowance
from billing.staff.audit import Audit, Outcome
from billing.staff.checks import StaffActionError, clean_reason, require_permission


def change_plan(
    *,
    account: Account,
    plan: Plan,
    when: str,
    reason: str,
    actor: User,
    key: str,
    now: datetime,
    note: str = "",
) -> Outcome:
    """Move an account to another plan, from the next period or now (S2).

    "now": usage rated from this moment uses the new plan's rates; what was charged before
    keeps its price. The current period keeps the included minutes it began with (the old
    plan's, used or not, or none) until it ends; the new plan's included minutes and rollover
    setting take effect from the next period. Billing mode follows the plan at once.
    "next_period": the change is recorded and period close applies all of it (rates, included
    minutes, rollover setting, billing mode) at the period end.
    """
    require_permission(actor, "billing.move_account_plan")
    audit = Audit(
        action=StaffAction.CHANGE_PLAN,
        actor=actor,
        reason=clean_reason(reason),
        key=key,
        now=now,
        note=note,
    )
    return _move(account=account, plan=plan, when=when, audit=audit)


def change_plan_by_key(
    *, account: Account, plan: Plan, when: str, api_key: ApiKey, key: str, now: datetime
) -> Outcome:
    """Move an account to another plan through the API with the platform key: the same rule
    as staff's (S2), audited as done by the key."""
    audit = Audit(
        action=StaffAction.CHANGE_PLAN,
        actor=None,
        actor_key=api_key,
        reason="Plan change through the API",
        key=key,
        now=now,
    )
    return _move(account=account, plan=plan, when=when, audit=audit)


def _move(*, account: Account, plan: Plan, when: str, audit: Audit) -> Outcome:
    now = audit.now
    if when not in ("now", "next_period"):
        raise StaffActionError("Choose 'now' or 'next_period'.")
    if repeat := audit.repeated():
        return repeat
    with transaction.atomic():
        locked = lock_account(account.pk).account
        # Asked again under the lock, for a double click's twin that committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        subscription = Subscription.objects.select_related("plan").get(account=locked)
        if subscription.plan_id == plan.pk and when == "now":
            raise StaffActionError("The account is already on that plan.")
        before = {
            "plan": subscription.plan.code,
            "pending_plan": subscription.pending_plan.code if subscription.pending_plan else None,
        }
        if when == "now":
            if plan.billing_mode != locked.billing_mode and locked.unbilled_micros:
                raise StaffActionError(
                    "Switching between prepaid and postpaid now would strand unbilled usage; "
                    "change it from the next period."
                )
            # Before the switch: fix this period's allowance from the plan it began on.
            keep_period_allowance(account=locked, subscription=subscription, new_plan=plan, now=now)
            subscription.plan = plan
            subscription.pending_plan = None
            # Read only when the next period's allowance is made, which is the new plan's.
            subscription.rollover_enabled = plan.rollover_available
            Account.objects.filter(pk=locked.pk).update(billing_mode=plan.billing_mode)
        else:
            subscription.pending_plan = plan
        subscription.save(update_fields=["plan", "pending_plan", "rollover_enabled"])
        pending = subscription.pending_plan.code if subscription.pending_plan else None
        record = audit.write(
            account=account,
            before=before,
            # What the subscription now says: a change made now leaves no pending plan.
            after={"plan": subscription.plan.code, "pending_plan": pending, "when": when},
            target=subscription,
        )
        if when == "now":
            events.customer_updated(account=locked, plan=plan, changed=["plan"], now=now)
    return Outcome(f"Plan change to {plan.code} ({when.replace('_', ' ')}).", record)


def approve_allowance(
    *, account: Account, reason: str, actor: User, key: str, now: datetime, note: str = ""
) -> Outcome:
    """Release the included minutes and credit of a subaccount a customer opened (audited).

    The same service releases them when the plan fee is paid: `unlock_allowance`, which does
    it once however often it is asked.
    """
    require_permission(actor, "billing.approve_allowance")
    reason = clean_reason(reason)
    audit = Audit(
        action=StaffAction.APPROVE_ALLOWANCE,
        actor=actor,
        reason=reason,
        key=key,
        now=now,
        note=note,
    )
    if repeat := audit.repeated():
        return repeat
    with transaction.atomic():
        lock_account(account.pk)
        # Asked again under the lock, for a double click's twin that committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        if not unlock_allowance(account=account, reason=AllowanceUnlock.STAFF_APPROVAL, now=now):
            raise StaffActionError("This account's included allowance is not waiting for approval.")
        record = audit.write(
            account=account,
            before={"allowance_locked": True},
            after={"allowance_locked": False},
            target=Subscription.objects.get(account=account),
        )
    return Outcome("Included allowance released.", record)
