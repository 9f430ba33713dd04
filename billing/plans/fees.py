"""Plan fees (SPEC F1): the fee in effect, its proration on a plan change, and its payment.

The fee of a period is charged in advance when the period starts (period close, in
billing.invoicing.period_close); the period's included minutes and credit wait until it is
paid (`allowance_locked`, released by `unlock_allowance`). This module holds the rules every
caller shares: which fee applies at a moment, how a plan change prorates it, and what paying a
fee's invoice releases.
"""

import contextlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import F

from accounts.models import Account
from billing.ledger.errors import DuplicatePosting
from billing.ledger.locks import LockedAccount, lock_account
from billing.ledger.posting import Posting, post_entries
from billing.models import (
    Allowance,
    AllowanceUnlock,
    EntryKind,
    FeeChargeKind,
    Invoice,
    Plan,
    PlanFee,
    PlanFeeCharge,
)
from billing.money import MICROS_PER_USD, round_micros
from billing.plans.allowances import unlock_allowance


class FeeSchedule:
    """Every plan's fees, loaded once (period close reads it for thousands of accounts)."""

    def __init__(self, *, plan_ids=None):
        fees = PlanFee.objects.order_by("-effective_from")
        if plan_ids is not None:
            fees = fees.filter(plan_id__in=list(plan_ids))
        self._fees: dict[int, list[PlanFee]] = defaultdict(list)
        for fee in fees:
            self._fees[fee.plan_id].append(fee)

    def at(self, *, plan_id: int, moment: datetime) -> int:
        """Return the plan's fee per period in micros at `moment` (0: no fee)."""
        for fee in self._fees.get(plan_id, ()):
            if fee.effective_from <= moment:
                return fee.amount_micros
        return 0


def plan_fee_micros(*, plan: Plan, at: datetime) -> int:
    """Return the fee per period of `plan` at the moment `at` (0: the plan has none)."""
    return FeeSchedule(plan_ids=[plan.pk]).at(plan_id=plan.pk, moment=at)


def prorated_fee_micros(*, fee_micros: int, start: datetime, end: datetime, at: datetime) -> int:
    """Return the part of a period's fee for the whole seconds of [at, end) in [start, end).

    WARNING (money rounding): the exact amount fee * remaining seconds / period seconds is
    rounded once, half-up to whole micro-dollars (billing.money.round_micros), so the credit
    of an old fee and the charge of a new one are each rounded once, never a difference.
    A part-second left over at `at` is not counted (the change takes effect from the next
    whole second).
    """
    period_seconds = (end - start) // timedelta(seconds=1)
    remaining_seconds = max((end - at) // timedelta(seconds=1), 0)
    exact_usd = Decimal(fee_micros) * remaining_seconds / period_seconds / MICROS_PER_USD
    return round_micros(exact_usd)


@dataclass(frozen=True)
class Proration:
    """What an immediate plan change does to the fee of the period it happens in (micros)."""

    credit_micros: int  # the unused part of the old plan's fee, given back
    charge_micros: int  # the remaining part of the new plan's fee
    remaining_seconds: int
    period_seconds: int

    @property
    def net_micros(self) -> int:
        """Positive: the customer pays this now; negative: credited."""
        return self.charge_micros - self.credit_micros

    @property
    def net_credit_micros(self) -> int:
        """What is credited now when the credit is the larger (0 otherwise)."""
        return max(-self.net_micros, 0)


def change_proration(
    *,
    account: Account,
    old_plan: Plan,
    new_plan: Plan,
    start: datetime,
    end: datetime,
    at: datetime,
) -> Proration:
    """Return the proration of a change from `old_plan` to `new_plan` at `at` in [start, end).

    The old plan's fee is credited only if this period was charged one (at its start, or by an
    earlier change this period that moved to it): a period that began before the plan had a
    fee, or whose fee was never charged, has nothing to give back. A prepaid account's fee must
    also be paid: its card invoice may never be, and a credit to the balance is spendable at
    once (value from nothing). A postpaid account's fee is owed on its invoice, which dunning
    collects, so the credit only lowers what it owes.
    """
    charges = PlanFeeCharge.objects.filter(account=account, period_start=start)
    if account.is_prepaid:
        charges = charges.filter(paid_at__isnull=False)
    charged = charges.exists()
    old_fee = plan_fee_micros(plan=old_plan, at=start) if charged else 0
    new_fee = plan_fee_micros(plan=new_plan, at=at)
    return Proration(
        credit_micros=prorated_fee_micros(fee_micros=old_fee, start=start, end=end, at=at),
        charge_micros=prorated_fee_micros(fee_micros=new_fee, start=start, end=end, at=at),
        remaining_seconds=max((end - at) // timedelta(seconds=1), 0),
        period_seconds=(end - start) // timedelta(seconds=1),
    )


def settle_fee_invoice(*, invoice: Invoice, now: datetime) -> bool:
    """Mark the plan fees billed on a paid invoice paid and release what they held back; return
    whether any did. Call with the account locked (billing.payments.collection).

    A period's fee releases the period's locked allowance (`unlock_allowance`); a plan change's
    prorated fee grants the new plan's prorated allowance (`grant_change_allowance`).
    """
    fees = list(PlanFeeCharge.objects.filter(invoice=invoice, paid_at__isnull=True))
    if not fees:
        return False
    PlanFeeCharge.objects.filter(pk__in=[fee.pk for fee in fees]).update(paid_at=now)
    for fee in fees:
        if fee.kind == FeeChargeKind.PERIOD:
            unlock_allowance(account=invoice.account, reason=AllowanceUnlock.PLAN_FEE_PAID, now=now)
        else:
            grant_change_allowance(locked=lock_account(fee.account_id), charge=fee, now=now)
    return True


def grant_change_allowance(*, locked: LockedAccount, charge: PlanFeeCharge, now: datetime) -> None:
    """Grant a plan change's prorated included credit and seconds, once (its key).

    Call with the account locked. The credit expires with the period like the period's own
    included credit; the seconds join the period's allowance row.
    """
    if charge.included_credit_micros:
        posting = Posting(
            amount_micros=charge.included_credit_micros,
            kind=EntryKind.ALLOWANCE,
            description=f"Included credit to {charge.period_end:%Y-%m-%d} (plan change)",
            idempotency_key=f"allowance-change:{charge.key}"[:120],
            grant_expires_at=charge.period_end,
            grant_priority=100,
        )
        with contextlib.suppress(DuplicatePosting):
            post_entries(locked=locked, postings=[posting], now=now)
    if charge.included_seconds:
        allowance, created = Allowance.objects.get_or_create(
            account_id=charge.account_id,
            period_start=charge.period_start,
            defaults={
                "period_end": charge.period_end,
                "included_seconds": charge.included_seconds,
            },
        )
        if not created:
            Allowance.objects.filter(pk=allowance.pk).update(
                included_seconds=F("included_seconds") + charge.included_seconds
            )
