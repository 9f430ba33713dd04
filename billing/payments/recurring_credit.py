"""Recurring credit: a set amount bought at the start of every billing period (SPEC section 10,
`credits-monthly`: "extra credit purchasable one-time or recurring"; P2's machinery).

The customer chooses an amount (at least the plan's minimum top-up). At the start of each of the
account's own periods (`billing.periods`, from the subscription's anchor day) the saved default
card is charged off-session once and the credit is posted as a purchased grant
(`EntryKind.RECURRING_TOPUP`, by `fulfil_topup`).

Exactly once per account and period: the purchase starts by inserting the period's
`RecurringCreditPurchase`, whose unique (account, period start) is the idempotency claim, so the job
run twice or concurrently, or the customer saving the settings while it runs, makes one purchase.
Each attempt is a top-up of kind `recurring` whose key names the account, the period and the
attempt; it is charged by the auto-top-up's task (`billing.tasks.charge_auto_topup`),
and a decline, a card that needs authentication and a lost task are handled there too: the decline
backs off 1 h, 6 h, 24 h on the purchase row, then waits for the customer (saving the settings tries
again). Retries stop when the period ends; the next period is a new purchase.

The plan's `auto_topup_allowed` governs it as well: both are off-session charges of the saved
card for prepaid credit, and a plan that refuses one (llm-api) refuses the other. Only prepaid
accounts buy credit.
"""

from datetime import datetime
from functools import partial

from django.db import IntegrityError, transaction

from accounts.models import Account
from billing.ledger.locks import lock_account
from billing.models import (
    PaymentMethod,
    RecurringCreditPurchase,
    RecurringCreditSettings,
    Subscription,
    TopUp,
    TopUpKind,
)
from billing.money import MoneyError, format_usd, micros_to_cents
from billing.payments.off_session import WAITING_STATUSES, queue_charge
from billing.payments.topups import MAXIMUM_TOPUP_MICROS, minimum_topup_micros, new_topup
from billing.periods import period_containing


class RecurringCreditError(ValueError):
    """Recurring credit settings were refused; the message is for the customer."""


def save_recurring_credit(
    *, account: Account, enabled: bool, amount_micros: int | None, now: datetime
) -> RecurringCreditSettings:
    """Validate and save the account's recurring credit; turning it on buys the current period
    at once (once: a period already bought or being bought is not bought again)."""
    plan = account.subscription.plan
    if enabled and not (plan.auto_topup_allowed and account.is_prepaid):
        raise RecurringCreditError(f"Recurring credit is not available on the {plan.name} plan.")
    if amount_micros is None:
        raise RecurringCreditError("Enter the amount to buy every period.")
    minimum = minimum_topup_micros(account)
    if amount_micros < minimum:
        raise RecurringCreditError(
            f"The amount must be at least the minimum top-up, {format_usd(minimum)}."
        )
    if amount_micros > MAXIMUM_TOPUP_MICROS:
        raise RecurringCreditError(f"The amount can be at most {format_usd(MAXIMUM_TOPUP_MICROS)}.")
    try:
        micros_to_cents(amount_micros)
    except MoneyError:
        raise RecurringCreditError("The amount must be a whole number of cents.") from None
    if (
        enabled
        and not PaymentMethod.objects.filter(account=account, removed_at__isnull=True).exists()
    ):
        raise RecurringCreditError("Add a card first: recurring credit charges your saved card.")
    with transaction.atomic():
        account = lock_account(account.pk).account
        row, _ = RecurringCreditSettings.objects.update_or_create(
            account=account,
            defaults={"enabled": enabled, "amount_micros": amount_micros, "updated_at": now},
        )
        if enabled:
            _buy_period(account=account, settings_row=row, now=now, resume=True)
    return row


def buy_recurring_credit(*, now: datetime) -> int:
    """The scheduled job: buy every period that has begun and is not bought yet, and start the
    retries whose back-off has passed. Return how many charges it started."""
    accounts = set(
        RecurringCreditSettings.objects.filter(enabled=True)
        .exclude(account__recurring_credit_purchases__period_end__gt=now)
        .values_list("account_id", flat=True)
    )
    accounts.update(
        RecurringCreditPurchase.objects.filter(
            next_attempt_at__lte=now,
            period_end__gt=now,
            account__recurring_credit_settings__enabled=True,
        ).values_list("account_id", flat=True)
    )
    started = 0
    for account_id in sorted(accounts):
        with transaction.atomic():
            account = lock_account(account_id).account
            row = RecurringCreditSettings.objects.filter(account=account, enabled=True).first()
            if row is not None and _buy_period(account=account, settings_row=row, now=now):
                started += 1
    return started


def _buy_period(
    *, account: Account, settings_row: RecurringCreditSettings, now: datetime, resume=False
) -> TopUp | None:
    """Start a charge for the period containing `now` if one is due; the caller locked the account.

    Due: the period is not claimed yet, or its purchase is unpaid, nothing waits, and either its
    back-off has passed or the customer saved the settings (`resume`).
    """
    if not account.is_prepaid or not account.subscription.plan.auto_topup_allowed:
        return None
    anchor_day = Subscription.objects.values_list("anchor_day", flat=True).get(account=account)
    start, end = period_containing(anchor_day=anchor_day, moment=now)
    purchase = _claim(account=account, start=start, end=end, settings_row=settings_row, now=now)
    if purchase is None:
        purchase = RecurringCreditPurchase.objects.get(account=account, period_start=start)
        latest = purchase.topup
        if latest is not None and (latest.is_paid or latest.status in WAITING_STATUSES):
            return None
        retry_due = purchase.next_attempt_at is not None and purchase.next_attempt_at <= now
        if not (retry_due or resume):
            return None
    attempt = purchase.attempts + 1
    topup = new_topup(
        account=account,
        kind=TopUpKind.RECURRING,
        amount_micros=purchase.amount_micros,
        now=now,
        key=f"recurring-credit:{account.public_id}:{start:%Y%m%d}:{attempt}",
    )
    purchase.topup = topup
    purchase.attempts = attempt
    purchase.next_attempt_at = None
    if resume:
        # The customer acted (a new amount, another card): start the back-off afresh.
        purchase.amount_micros = settings_row.amount_micros
        purchase.consecutive_failures = 0
    purchase.updated_at = now
    purchase.save(
        update_fields=[
            "topup",
            "amount_micros",
            "attempts",
            "next_attempt_at",
            "consecutive_failures",
            "updated_at",
        ]
    )
    transaction.on_commit(partial(queue_charge, topup.pk))
    return topup


def _claim(*, account, start, end, settings_row, now) -> RecurringCreditPurchase | None:
    """Insert the period's purchase, or return None if the period is already claimed.

    The unique constraint decides, not a read before the insert: a concurrent claimer that the
    account lock did not serialise (another process) fails here.
    """
    try:
        with transaction.atomic():
            return RecurringCreditPurchase.objects.create(
                account=account,
                period_start=start,
                period_end=end,
                amount_micros=settings_row.amount_micros,
                created_at=now,
                updated_at=now,
            )
    except IntegrityError:
        return None
