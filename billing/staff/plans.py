"""Moving an account to another plan, by staff (SPEC S2) or by its customer (F2), and
releasing a subaccount's included allowance (docs/billing-rules.md, "No value from nothing").

Both plan changes go through one service (billing.payments.plan_changes.apply_plan_change),
with one audit record and one email each; the customer's is here because it is audited.
"""

from datetime import datetime

from django.db import transaction

from accounts.models import Account, ApiKey, User
from billing import events
from billing.ledger.locks import lock_account
from billing.models import AllowanceUnlock, FeePaidBy, Plan, StaffAction, Subscription
from billing.payments.cards import has_usable_card
from billing.payments.plan_changes import (
    NEXT_PERIOD,
    NOW,
    PREVIEW_LIFETIME,
    PlanChangeError,
    apply_plan_change,
    collect_fee_invoice,
    plan_changed_email,
    preview_plan_change,
    self_serve_timing,
)
from billing.plans.allowances import unlock_allowance
from billing.staff.audit import Audit, Outcome, audit_key
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
    """Move an account to another plan, from the next period or now (S2), as staff.

    The rules are those of every plan change (billing.payments.plan_changes): "now" rates the
    usage from this moment at the new plan and prorates the plan fee by the second; the period
    keeps the included minutes it began with; "next_period" is applied by period close.
    """
    require_permission(actor, "billing.move_account_plan")
    reason = clean_reason(reason)
    audit = Audit(
        action=StaffAction.CHANGE_PLAN, actor=actor, reason=reason, key=key, now=now, note=note
    )
    return _change(account=account, plan=plan, when=when, audit=audit, fingerprint=None)


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
    return _change(account=account, plan=plan, when=when, audit=audit, fingerprint=None)


def change_own_plan(
    *,
    account: Account,
    plan: Plan,
    user: User,
    fingerprint: str,
    previewed_at: datetime,
    key: str,
    now: datetime,
) -> Outcome:
    """Move an account to a plan its owner or billing member chose on the Billing page (F2).

    Only plans open to customers (`selectable_for_change`) in the account's billing mode;
    upgrades at once, downgrades at the next period unless the plan says otherwise
    (`self_serve_timing`). `fingerprint` is the preview the customer confirmed: a stale one is
    refused. The view checked the user's role (accounts.permissions, manage billing).
    """
    if now - previewed_at > PREVIEW_LIFETIME:
        raise StaffActionError("This preview is out of date. Review the change again.")
    if not plan.selectable_for_change or plan.billing_mode != account.billing_mode:
        raise StaffActionError("That plan is not open to this account.")
    subscription = Subscription.objects.select_related("plan").get(account=account)
    if plan.pk in (subscription.plan_id, subscription.pending_plan_id):
        raise StaffActionError("The account is already on that plan.")
    when = self_serve_timing(old_plan=subscription.plan, new_plan=plan, at=now)
    preview = preview_plan_change(
        account=account, subscription=subscription, plan=plan, when=when, now=now
    )
    if preview.paid_by == FeePaidBy.CARD and not has_usable_card(account=account, now=now):
        # Without a card the fee would go straight to dunning and pause the account's usage.
        raise StaffActionError(
            "Add a card on the Billing page first: this change's fee is charged to your card."
        )
    audit = Audit(
        action=StaffAction.SELF_SERVE_PLAN,
        actor=user,
        reason="Changed by the customer on the Billing page.",
        key=key,
        now=now,
    )
    return _change(account=account, plan=plan, when=when, audit=audit, fingerprint=fingerprint)


def _change(
    *, account: Account, plan: Plan, when: str, audit: Audit, fingerprint: str | None
) -> Outcome:
    """The plan change both callers make: audited, emailed, once per form key."""
    if when not in (NOW, NEXT_PERIOD):
        raise StaffActionError("Choose 'now' or 'next_period'.")
    if repeat := audit.repeated():
        return repeat
    with transaction.atomic():
        locked = lock_account(account.pk)
        # Asked again under the lock, for a double click's twin that committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        subscription = Subscription.objects.select_related("plan", "pending_plan").get(
            account=account
        )
        before = {
            "plan": subscription.plan.code,
            "pending_plan": subscription.pending_plan.code if subscription.pending_plan else None,
        }
        try:
            result = apply_plan_change(
                locked=locked,
                plan=plan,
                when=when,
                key=audit_key(audit.action, audit.key),
                now=audit.now,
                fingerprint=fingerprint,
            )
        except PlanChangeError as error:
            raise StaffActionError(str(error)) from None
        subscription.refresh_from_db()
        pending = subscription.pending_plan.code if subscription.pending_plan else None
        proration = result.preview.proration
        record = audit.write(
            account=account,
            before=before,
            # What the subscription now says: a change made now leaves no pending plan.
            after={
                "plan": subscription.plan.code,
                "pending_plan": pending,
                "when": when,
                # The net of a prorated fee, when the change prorated one.
                **(
                    {"prorated_fee_micros": proration.net_micros}
                    if proration and (proration.credit_micros or proration.charge_micros)
                    else {}
                ),
            },
            target=subscription,
        )
        if when == NOW:
            events.customer_updated(
                account=locked.account, plan=plan, changed=["plan"], now=audit.now
            )
        plan_changed_email(
            account=account, preview=result.preview, key=record.idempotency_key, now=audit.now
        )
    if result.fee_invoice_id is not None:
        # The card pays the prorated fee now; a decline is dunned like any invoice (P5).
        collect_fee_invoice(invoice_id=result.fee_invoice_id, now=audit.now)
    if when == NOW:
        message = f"The plan is now {plan.name}."
    else:
        message = f"The plan changes to {plan.name} on {result.preview.effective_at:%Y-%m-%d}."
    return Outcome(message, record)


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
