"""Auto-top-up when a deduction leaves the balance below the customer's threshold (SPEC P2).

`balance_changed` runs inside every balance change, holding the account's row lock (see
`billing.ledger.watchers`). A deduction that leaves the balance below the threshold while the
settings are *armed* records the crossing there and then: it disarms, numbers the crossing and
inserts a pending auto-top-up whose key names the account, the crossing and the attempt. Because
all of that happens under the lock, 50 concurrent deductions crossing the threshold see one
crossing and make one charge. The charge itself runs after commit, in a task, through the payment
gateway (Stripe off-session, or the test-mode cards), and its result goes through the same
`fulfil_topup` as a webhook.

Rules:
- one charge per crossing; none while one is pending or waits for the customer's authentication;
- a decline backs off (1 h, 6 h, 24 h), then waits for the customer; the retry job and the next
  deduction after the back-off try again with a new attempt of the same crossing;
- a card that needs authentication gets the customer an email with a link, never a retry;
- at most `monthly_cap_micros` per calendar month (UTC) of auto-top-ups that were not declined;
- the balance rising back to the threshold re-arms it; so does saving the settings.

The charge task, the decline back-off, the authentication email and the retry of lost charges
also serve the recurring credit purchases of `billing.payments.recurring_credit` (top-ups of kind
`recurring`): their back-off lives on the period's `RecurringCreditPurchase` instead of the
settings (`_retry_state`).
"""

import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from billing.ledger.locks import lock_account
from billing.models import (
    OFF_SESSION_KINDS,
    AutoTopUpSettings,
    PaymentMethod,
    RecurringCreditPurchase,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.money import MICROS_PER_CENT, MoneyError, format_usd, micros_to_cents
from billing.notifications.outbox import notify
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import ChargeOutcome
from billing.task_queue import enqueue

logger = logging.getLogger(__name__)

BACKOFF = [timedelta(hours=1), timedelta(hours=6), timedelta(hours=24)]
# A pending charge older than this had its task lost: the retry job asks again, same key.
STALE_PENDING = timedelta(minutes=15)
WAITING_STATUSES = (TopUpStatus.PENDING, TopUpStatus.REQUIRES_ACTION)


class AutoTopUpError(ValueError):
    """Auto-top-up settings were refused; the message is for the customer."""


def save_auto_topup_settings(
    *,
    account: Account,
    enabled: bool,
    threshold_micros: int,
    now: datetime,
    amount_micros: int | None = None,
    target_micros: int | None = None,
    monthly_cap_micros: int | None = None,
) -> AutoTopUpSettings:
    """Validate and save the account's auto-top-up; saving re-arms it."""
    from billing.payments.topups import minimum_topup_micros

    plan = account.subscription.plan
    if enabled and not plan.auto_topup_allowed:
        raise AutoTopUpError(f"Auto-top-up is not available on the {plan.name} plan.")
    if (amount_micros is None) == (target_micros is None):
        raise AutoTopUpError("Choose either an amount to add or a balance to reach.")
    if threshold_micros < 0:
        raise AutoTopUpError("The threshold cannot be negative.")
    minimum = minimum_topup_micros(account)
    for label, value in (("amount", amount_micros), ("target", target_micros)):
        if value is None:
            continue
        try:
            micros_to_cents(value)
        except MoneyError:
            raise AutoTopUpError(f"The {label} must be a whole number of cents.") from None
    if amount_micros is not None and amount_micros < minimum:
        raise AutoTopUpError(
            f"The amount must be at least the minimum top-up, {format_usd(minimum)}."
        )
    if target_micros is not None and target_micros <= threshold_micros:
        raise AutoTopUpError("The balance to reach must be above the threshold.")
    if monthly_cap_micros is not None and monthly_cap_micros < (amount_micros or minimum):
        raise AutoTopUpError("The monthly cap must allow at least one top-up.")
    if (
        enabled
        and not PaymentMethod.objects.filter(account=account, removed_at__isnull=True).exists()
    ):
        raise AutoTopUpError("Add a card first: auto-top-up charges your saved card.")
    with transaction.atomic():
        lock_account(account.pk)
        row, _ = AutoTopUpSettings.objects.update_or_create(
            account=account,
            defaults={
                "enabled": enabled,
                "threshold_micros": threshold_micros,
                "amount_micros": amount_micros,
                "target_micros": target_micros,
                "monthly_cap_micros": monthly_cap_micros,
                "armed": True,
                "attempts": 0,
                "consecutive_failures": 0,
                "next_attempt_at": None,
                "updated_at": now,
            },
        )
    return row


def rearm(*, account: Account, now: datetime) -> None:
    """Let the next deduction below the threshold charge again (a new or changed card)."""
    with transaction.atomic():
        lock_account(account.pk)
        AutoTopUpSettings.objects.filter(account=account).update(
            armed=True, attempts=0, consecutive_failures=0, next_attempt_at=None, updated_at=now
        )
        # A charge that waited for the old card's authentication gives way to the new card. If
        # the customer still pays it, `fulfil_topup` credits it all the same.
        TopUp.objects.filter(
            account=account, kind=TopUpKind.AUTO, status=TopUpStatus.REQUIRES_ACTION
        ).update(status=TopUpStatus.CANCELED, error="Replaced by a new card.", completed_at=now)


def balance_changed(*, account: Account, before_micros: int, now: datetime) -> None:
    """Start one off-session charge per crossing of the auto-top-up threshold.

    Called with the account locked, inside the transaction that changed the balance.
    """
    if not account.is_prepaid:
        return
    if Account.auto_topup_settings.related.is_cached(account):
        # Read with the account's lock (usage.charging.lock.lock_for_charge): no query.
        row = Account.auto_topup_settings.related.get_cached_value(account)
        row = row if row is not None and row.enabled else None
    else:
        row = AutoTopUpSettings.objects.filter(account_id=account.pk, enabled=True).first()
    if row is not None:
        _balance_moved(account=account, row=row, before_micros=before_micros, now=now)


def balances_changed(*, changes, now: datetime) -> None:
    """`balance_changed` for many locked accounts: (account, before) pairs, one query."""
    watched = [(a, before) for a, before in changes if a.is_prepaid]
    if not watched:
        return
    rows = {
        row.account_id: row
        for row in AutoTopUpSettings.objects.filter(
            account_id__in=[a.pk for a, _ in watched], enabled=True
        )
    }
    for account, before in watched:
        if account.pk in rows:
            _balance_moved(account=account, row=rows[account.pk], before_micros=before, now=now)


def _balance_moved(
    *, account: Account, row: AutoTopUpSettings, before_micros: int, now: datetime
) -> None:
    after = account.balance_micros
    if after >= row.threshold_micros:
        if not row.armed or row.next_attempt_at or row.consecutive_failures or row.attempts:
            _update(row, now, armed=True, attempts=0, consecutive_failures=0, next_attempt_at=None)
        return
    if after < before_micros:
        _start_charge(account=account, row=row, now=now)


def _update(row: AutoTopUpSettings | RecurringCreditPurchase, now: datetime, **fields) -> None:
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = now
    row.save(update_fields=[*fields, "updated_at"])


def _start_charge(*, account: Account, row: AutoTopUpSettings, now: datetime) -> TopUp | None:
    """Record one auto-top-up if one is due; the account is locked by the caller."""
    from billing.payments.topups import minimum_topup_micros, new_topup

    due = row.armed or (row.next_attempt_at is not None and row.next_attempt_at <= now)
    if not due:
        return None
    if TopUp.objects.filter(
        account=account, kind=TopUpKind.AUTO, status__in=WAITING_STATUSES
    ).exists():
        return None
    if not account.subscription.plan.auto_topup_allowed:
        return None
    amount = _charge_amount(row, balance_micros=account.balance_micros)
    amount = max(amount, minimum_topup_micros(account))
    if row.monthly_cap_micros is not None:
        spent = _spent_this_month(account=account, now=now)
        if spent + amount > row.monthly_cap_micros:
            _update(row, now, armed=False, next_attempt_at=None)
            notify(
                account=account,
                kind="auto_topup_failed",
                key=f"auto_topup_cap:{account.public_id}:{now:%Y-%m}",
                context={
                    "reason": "monthly_cap",
                    "amount": format_usd(amount),
                    "cap": format_usd(row.monthly_cap_micros),
                    "error": "This month's auto-top-up cap is reached.",
                },
                now=now,
            )
            return None
    if row.armed:
        crossing, attempt = row.crossings + 1, 1
    else:
        crossing, attempt = row.crossings, row.attempts + 1
    topup = new_topup(
        account=account,
        kind=TopUpKind.AUTO,
        amount_micros=amount,
        now=now,
        key=f"auto-topup:{account.public_id}:{crossing}:{attempt}",
    )
    _update(row, now, armed=False, crossings=crossing, attempts=attempt, next_attempt_at=None)
    transaction.on_commit(partial(queue_charge, topup.pk))
    return topup


def _charge_amount(row: AutoTopUpSettings, *, balance_micros: int) -> int:
    if row.amount_micros is not None:
        return row.amount_micros
    # Enough to reach the target, rounded up to whole cents (a card is charged in cents).
    missing = max(row.target_micros - balance_micros, 0)
    return -(-missing // MICROS_PER_CENT) * MICROS_PER_CENT


def _spent_this_month(*, account: Account, now: datetime) -> int:
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = (
        TopUp.objects.filter(account=account, kind=TopUpKind.AUTO, created_at__gte=month_start)
        .exclude(status__in=[TopUpStatus.FAILED, TopUpStatus.CANCELED])
        .aggregate(total=Sum("amount_micros"))["total"]
    )
    return total or 0


def queue_charge(topup_id: int) -> None:
    """Charge after commit: in a worker, or inline where there is none (tests, PAYMENTS_SYNC)."""
    if getattr(settings, "PAYMENTS_SYNC", False):
        charge_auto_topup(topup_id)
        return
    # A refused task leaves the top-up pending; retry_auto_topups asks again after STALE_PENDING.
    enqueue("billing.tasks.charge_auto_topup", topup_id=topup_id)


def charge_auto_topup(topup_id: int) -> str:
    """Charge a pending auto-top-up once (task billing.tasks.charge_auto_topup; its key makes
    a repeat ask Stripe again for the same answer) and apply the result."""
    now = timezone.now()
    topup = TopUp.objects.select_related("account").get(pk=topup_id)
    if topup.status != TopUpStatus.PENDING:
        return f"{topup.get_kind_display()} {topup.public_id} is {topup.status}"
    outcome = get_gateway().charge_saved_card(
        account=topup.account,
        amount_micros=topup.amount_micros,
        idempotency_key=topup.key,
        description=f"{topup.get_kind_display()} {topup.public_id}",
        metadata={"topup": topup.public_id, "account": topup.account.public_id},
    )
    record_charge_outcome(topup_id=topup.pk, outcome=outcome, now=now)
    return f"{topup.get_kind_display()} {topup.public_id}: {outcome.status}"


def record_charge_outcome(*, topup_id: int, outcome: ChargeOutcome, now: datetime) -> None:
    """Apply the gateway's answer (or a webhook's) to an auto-top-up. Idempotent."""
    from billing.payments.topups import fulfil_topup

    if outcome.status == "succeeded":
        fulfil_topup(topup_id=topup_id, now=now, payment_intent_id=outcome.reference)
    elif outcome.status == "requires_action":
        charge_requires_action(topup_id=topup_id, now=now, payment_intent_id=outcome.reference)
    elif outcome.status == "failed":
        charge_failed(
            topup_id=topup_id, now=now, error=outcome.error, payment_intent_id=outcome.reference
        )
    elif outcome.reference:
        # Still processing: the webhook will say how it ended.
        TopUp.objects.filter(pk=topup_id, payment_intent_id__isnull=True).update(
            payment_intent_id=outcome.reference
        )


def _retry_state(topup: TopUp):
    """Return the row that holds the back-off of an off-session top-up: the auto-top-up
    settings, or the recurring purchase of the period whose latest attempt it is."""
    if topup.kind == TopUpKind.RECURRING:
        return RecurringCreditPurchase.objects.filter(topup=topup)
    return AutoTopUpSettings.objects.filter(account_id=topup.account_id)


def _lock_waiting_topup(topup_id: int) -> tuple[Account, TopUp] | None:
    account_id = TopUp.objects.values_list("account_id", flat=True).get(pk=topup_id)
    account = lock_account(account_id)
    topup = TopUp.objects.select_for_update().get(pk=topup_id)
    if topup.status not in WAITING_STATUSES:
        return None
    return account, topup


def charge_failed(*, topup_id: int, now: datetime, error: str, payment_intent_id: str = "") -> None:
    """A declined auto-top-up or recurring purchase: back off, and tell the customer."""
    with transaction.atomic():
        locked = _lock_waiting_topup(topup_id)
        if locked is None:
            return
        account, topup = locked
        topup.status = TopUpStatus.FAILED
        topup.error = error or "The card was declined."
        topup.completed_at = now
        if payment_intent_id and not topup.payment_intent_id:
            topup.payment_intent_id = payment_intent_id
        topup.save(update_fields=["status", "error", "completed_at", "payment_intent_id"])
        row = _retry_state(topup).first()
        retry_at = None
        if row is not None:
            failures = row.consecutive_failures + 1
            retry_at = now + BACKOFF[failures - 1] if failures <= len(BACKOFF) else None
            _update(row, now, consecutive_failures=failures, next_attempt_at=retry_at)
        notify(
            account=account,
            kind="auto_topup_failed",
            key=f"auto_topup_failed:{topup.public_id}",
            context={
                "topup": topup.public_id,
                "amount": format_usd(topup.amount_micros),
                "reason": "declined",
                "topup_kind": topup.kind,
                "error": topup.error,
                "retry_at": retry_at.isoformat() if retry_at else "",
            },
            now=now,
        )


def charge_requires_action(*, topup_id: int, now: datetime, payment_intent_id: str = "") -> None:
    """The card needs the customer: email them a link instead of retrying."""
    with transaction.atomic():
        locked = _lock_waiting_topup(topup_id)
        if locked is None:
            return
        account, topup = locked
        if topup.status == TopUpStatus.REQUIRES_ACTION:
            return
        topup.status = TopUpStatus.REQUIRES_ACTION
        topup.error = "The card needs authentication."
        if payment_intent_id and not topup.payment_intent_id:
            topup.payment_intent_id = payment_intent_id
        topup.save(update_fields=["status", "error", "payment_intent_id"])
        _retry_state(topup).update(next_attempt_at=None, updated_at=now)
        path = reverse("payments:resume_topup", args=[account.public_id, topup.public_id])
        notify(
            account=account,
            kind="auto_topup_action_required",
            key=f"auto_topup_action:{topup.public_id}",
            context={
                "topup": topup.public_id,
                "amount": format_usd(topup.amount_micros),
                "topup_kind": topup.kind,
                "action_url": f"{settings.SITE_URL}{path}",
            },
            now=now,
        )


def charge_succeeded(*, topup: TopUp, now: datetime) -> None:
    """Called by `fulfil_topup` under the account lock when an off-session top-up is paid."""
    if topup.kind == TopUpKind.RECURRING:
        # `attempts` keeps numbering the period's keys; only the back-off ends.
        _retry_state(topup).update(consecutive_failures=0, next_attempt_at=None, updated_at=now)
        return
    _retry_state(topup).update(
        consecutive_failures=0, attempts=0, next_attempt_at=None, updated_at=now
    )


def retry_auto_topups(*, now: datetime) -> int:
    """The scheduled job: start retries whose back-off has passed; re-ask for lost charges."""
    started = 0
    due = AutoTopUpSettings.objects.filter(enabled=True, next_attempt_at__lte=now).values_list(
        "account_id", flat=True
    )
    for account_id in sorted(due):
        with transaction.atomic():
            account = lock_account(account_id)
            row = AutoTopUpSettings.objects.filter(account=account, enabled=True).first()
            if (
                row is not None
                and account.is_prepaid
                and account.balance_micros < row.threshold_micros
                and _start_charge(account=account, row=row, now=now) is not None
            ):
                started += 1
    # Recurring purchases share the charge task, so a lost one is asked again here as well.
    stale = TopUp.objects.filter(
        kind__in=OFF_SESSION_KINDS,
        status=TopUpStatus.PENDING,
        created_at__lte=now - STALE_PENDING,
    ).values_list("pk", flat=True)
    for topup_id in stale:
        queue_charge(topup_id)
        started += 1
    return started
