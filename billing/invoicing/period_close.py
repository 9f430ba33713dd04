"""Period close: every account's invoice or statement at period end (SPEC I3, I4, S2, U9).

At the end of its period an account is invoiced (postpaid) or sent a statement (prepaid), its
included minutes are reset (with rollover), its included credit expires and the next period's
is granted, a plan change staff scheduled takes effect (rates, included minutes, rollover
setting, billing mode), and its subscription moves on.

Accounts are closed in chunks: one transaction per chunk, the chunk's accounts locked with one
`SELECT ... FOR UPDATE` in primary-key order, and every step done for the whole chunk with a
few statements (about 25 per chunk, whatever its size) rather than a few per account. That is
what closes 100,000 accounts in about a minute. Running it twice, concurrently, or again after
a crash is safe: each chunk re-reads its subscriptions under the locks and skips those already
advanced, and the invoices' idempotency keys (one per account and period) are unique.
"""

from collections import defaultdict
from datetime import datetime

from django.db import connection, transaction
from django.db.models import F, Q, Sum

from accounts.models import Account, BillingMode
from billing.invoicing.invoices import (
    UNITS,
    Draft,
    LineDraft,
    draft_invoice,
    lines_from_unbilled,
    save_drafts,
    unbilled_by_account,
)
from billing.invoicing.plan_fees import fee_line, period_fee, record_period_fees
from billing.ledger.batch import BalanceBatch
from billing.ledger.locks import lock_accounts
from billing.models import (
    Allowance,
    EntryKind,
    FeePaidBy,
    Invoice,
    InvoiceKind,
    InvoiceReason,
    LedgerEntry,
    Plan,
    Subscription,
)
from billing.periods import period_after
from billing.plans.allowances import (
    included_credit_posting,
    new_period_allowance,
    next_period_terms,
    period_included_credit_micros,
)
from billing.plans.fees import FeeSchedule

# Accounts per transaction. Larger chunks save statements but hold more locks for longer and
# more objects in memory (about 40 kB per account while its chunk is open).
CHUNK = 1000
SUBSCRIPTION_FIELDS = [
    "id",
    "account_id",
    "plan_id",
    "pending_plan_id",
    "anchor_day",
    "current_period_start",
    "current_period_end",
    "rollover_enabled",
    "allowance_locked",
]


def subscriptions_due(*, now: datetime) -> list[int]:
    return list(
        Subscription.objects.filter(current_period_end__lte=now)
        .order_by("account_id")
        .values_list("account_id", flat=True)
    )


def close_periods(*, now: datetime, chunk: int = CHUNK) -> int:
    """Close every period that has ended: invoice or state it, reset allowances, advance.

    Safe to run twice, concurrently, or after a crash: each chunk is one transaction that
    re-reads its subscriptions under the account locks and skips those already advanced.
    An account several periods behind is closed one period per pass until it is current.
    """
    closed = 0
    while True:
        due = subscriptions_due(now=now)
        if not due:
            return closed
        for offset in range(0, len(due), chunk):
            closed += _close_chunk(account_ids=due[offset : offset + chunk], now=now)


def _close_chunk(*, account_ids: list[int], now: datetime) -> int:
    with transaction.atomic():
        _forget_cached_plans()
        locked = lock_accounts(account_ids)
        accounts = {pk: lock.account for pk, lock in locked.items()}
        # Plain rows, not model instances: period close reads thousands and writes them back
        # with a few grouped updates.
        subscriptions = list(
            Subscription.objects.filter(account_id__in=accounts, current_period_end__lte=now)
            .order_by("account_id")  # numbers are handed out in account order
            .values_list(*SUBSCRIPTION_FIELDS, named=True)
        )
        if not subscriptions:
            return 0
        # A handful of plans for thousands of subscriptions: read each once, not once per row.
        plans = {plan.pk: plan for plan in Plan.objects.all()}
        fee_schedule = FeeSchedule()
        ids = [s.account_id for s in subscriptions]
        balances = BalanceBatch(accounts=locked, now=now)
        # Credit that expired with the period is written off before it is stated.
        balances.expire_due_credit(ids)
        unbilled = unbilled_by_account(ids)
        movements = _ledger_movements(subscriptions, cutoff=now)
        # Keyed by account and start: an account may also hold a row for a later period (usage
        # that arrived before this close), whose start can be another account's current start.
        allowances = {
            (a.account_id, a.period_start): a
            for a in Allowance.objects.filter(
                account_id__in=ids, period_start__in={s.current_period_start for s in subscriptions}
            )
        }
        drafts, new_allowances, credits, fees = [], [], [], []
        mode_changes: dict[str, list[int]] = defaultdict(list)
        # (plan, next start, next end, rollover, allowance locked) -> the subscriptions that
        # move there: one update each
        advances: dict[tuple, list[int]] = defaultdict(list)
        for sub in subscriptions:
            account = accounts[sub.account_id]
            start, end = sub.current_period_start, sub.current_period_end
            plan = plans[sub.plan_id]
            # Advance to the next period, applying a plan change staff scheduled for it.
            next_start, next_end = period_after(anchor_day=sub.anchor_day, end=end)
            next_plan, rollover = next_period_terms(
                plan=plan,
                pending_plan=plans[sub.pending_plan_id] if sub.pending_plan_id else None,
                rollover_enabled=sub.rollover_enabled,
            )
            # The next period's fee, in advance; none for a period that ended already (an
            # account several periods behind), as for its included credit below.
            fee_micros = (
                fee_schedule.at(plan_id=next_plan.pk, moment=next_start) if next_end > now else 0
            )
            fee = None
            if fee_micros:
                fee = period_fee(
                    account=account,
                    plan=next_plan,
                    start=next_start,
                    end=next_end,
                    amount_micros=fee_micros,
                    now=now,
                )
                fees.append(fee)
            document = _period_document(
                account=account,
                plan=plan,
                start=start,
                end=end,
                rows=unbilled.get(account.pk, []),
                moves=movements.get(account.pk, {}),
                now=now,
                fee=fee,
            )
            drafts.append(document)
            if fee is not None and fee.paid_by == FeePaidBy.INVOICE:
                fee.draft = document
            elif fee is not None and fee.paid_by == FeePaidBy.CARD:
                drafts.append(fee.draft)
            allowance_locked = fee.locks_allowance if fee is not None else sub.allowance_locked
            # Prepaid or postpaid follows a scheduled plan, from the new period on.
            if sub.pending_plan_id and next_plan.billing_mode != account.billing_mode:
                mode_changes[next_plan.billing_mode].append(account.pk)
            advances[(next_plan.pk, next_start, next_end, rollover, allowance_locked)].append(
                sub.id
            )
            if next_plan.included_minutes:
                new_allowances.append(
                    new_period_allowance(
                        account=account,
                        start=next_start,
                        end=next_end,
                        plan=next_plan,
                        rollover_enabled=rollover,
                        previous=allowances.get((account.pk, start)),
                        ending_plan=plan,
                        allowance_locked=allowance_locked,
                    )
                )
            # A period that ended already (an account several periods behind) gets no included
            # credit: nothing could spend it, and granting and expiring it at this same instant
            # would put entries at the statement cut that no statement can tell apart.
            included_credit = period_included_credit_micros(
                plan=next_plan, allowance_locked=allowance_locked
            )
            if included_credit and next_end > now:
                credits.append(
                    (
                        account,
                        included_credit_posting(
                            account=account, plan=next_plan, start=next_start, end=next_end
                        ),
                    )
                )
        save_drafts(drafts, now=now)
        for (
            plan_id,
            next_start,
            next_end,
            rollover,
            allowance_locked,
        ), subscription_ids in advances.items():
            Subscription.objects.filter(pk__in=subscription_ids).update(
                plan_id=plan_id,
                pending_plan=None,
                rollover_enabled=rollover,
                allowance_locked=allowance_locked,
                current_period_start=next_start,
                current_period_end=next_end,
                last_closed_at=now,
            )
        Allowance.objects.bulk_create(new_allowances, ignore_conflicts=True, batch_size=1000)
        for mode, mode_ids in mode_changes.items():
            Account.objects.filter(pk__in=mode_ids).update(billing_mode=mode)
            for account_id in mode_ids:
                accounts[account_id].billing_mode = mode
        # Before the included credit: a fee from credit is never paid with what it releases.
        record_period_fees(fees, locked=locked, now=now)
        balances.credit(credits)
        balances.finish()
    return len(subscriptions)


def _forget_cached_plans() -> None:
    """Make PostgreSQL plan this chunk's foreign-key checks for the tables as they are now.

    A connection keeps the plan of each foreign-key check for its lifetime. One that inserted
    invoice lines while the invoice table was nearly empty (the threshold sweep, in the same
    worker a minute earlier) keeps a sequential scan of that table, and every later check
    reads the whole table again: closing 100,000 accounts took minutes, mostly in COMMIT.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DISCARD PLANS")


def _period_document(*, account, plan, start, end, rows, moves, now, fee) -> Draft:
    """The invoice (postpaid) or statement (prepaid) of the period [start, end).

    A postpaid account's invoice opens with the next period's fee (`fee`), in advance.
    """
    if account.billing_mode == BillingMode.POSTPAID:
        first_lines = []
        if fee is not None and fee.paid_by == FeePaidBy.INVOICE:
            first_lines = [
                fee_line(
                    plan=fee.plan, amount_micros=fee.amount_micros, start=fee.start, end=fee.end
                )
            ]
        return draft_invoice(
            first_lines=first_lines,
            account=account,
            kind=InvoiceKind.INVOICE,
            reason=InvoiceReason.PERIOD,
            start=start,
            end=end,
            rows=rows,
            key=f"period:{account.public_id}:{start:%Y%m%d}:invoice",
            now=now,
            minimum_micros=plan.minimum_charge_micros,
        )
    return _statement(account=account, start=start, end=end, rows=rows, moves=moves, now=now)


def _ledger_movements(subscriptions, *, cutoff: datetime) -> dict[int, dict[str, int]]:
    """Sum ledger entries by kind per account since each one's last statement (one query).

    A close writes entries at its own `now`, which becomes `last_closed_at`: credit expired
    with the period (written before the statement is cut, so that statement shows it) and the
    next period's included credit (written after, so the next statement shows it). Entries at
    that instant therefore belong to the next statement only if they are included credit;
    taking them all (`>=`) counted the expiry on two statements and broke the chain of opening
    and closing balances.
    """
    closed_at = F("account__subscription__last_closed_at")
    first_statement = Q(
        account__subscription__last_closed_at__isnull=True,
        created_at__gte=F("account__subscription__created_at"),
    )
    after_last_cut = Q(created_at__gt=closed_at) | Q(created_at=closed_at, kind=EntryKind.ALLOWANCE)
    rows = (
        LedgerEntry.objects.filter(
            first_statement | after_last_cut,
            account_id__in=[s.account_id for s in subscriptions],
            created_at__lte=cutoff,
        )
        .values("account_id", "kind")
        .annotate(total=Sum("amount_micros"))
    )
    moves: dict[int, dict[str, int]] = defaultdict(dict)
    for row in rows:
        moves[row["account_id"]][row["kind"]] = row["total"]
    return moves


def _statement(*, account, start, end, rows, moves, now) -> Draft:
    """A prepaid account's statement: opening balance, movements, closing balance."""
    lines = lines_from_unbilled(rows)
    position = len(lines)
    # Call refunds are already among the usage lines (a negative "refunds" line, written with the
    # credit-back); every other credit-back (staff, for example) is listed with the ledger lines.
    refunds_in_usage = -sum(row.amount_micros for row in rows if row.component == "refunds")
    listed = {**moves, EntryKind.REFUND: moves.get(EntryKind.REFUND, 0) - refunds_in_usage}
    for kind, label in (
        (EntryKind.TOPUP, "Top-ups"),
        (EntryKind.AUTO_TOPUP, "Auto-top-ups"),
        (EntryKind.RECURRING_TOPUP, "Recurring credit purchases"),
        (EntryKind.SIGNUP_CREDIT, "Signup credit"),
        (EntryKind.PROMOTIONAL, "Promotional credit"),
        (EntryKind.ALLOWANCE, "Included credit"),
        (EntryKind.ADJUSTMENT, "Adjustments"),
        (EntryKind.PLAN_FEE, "Plan fees paid from credit"),
        (EntryKind.REFUND, "Credited back"),
        (EntryKind.TOPUP_REFUND, "Top-ups refunded to card"),
        (EntryKind.EXPIRY, "Expired credit"),
    ):
        if listed.get(kind):
            position += 1
            lines.append(
                LineDraft(
                    position=position,
                    component=f"ledger:{kind}",
                    description=label,
                    amount_micros=listed[kind],
                )
            )
    closing = account.balance_micros
    opening = closing - sum(moves.values())
    invoice = Invoice(
        account=account,
        kind=InvoiceKind.STATEMENT,
        reason=InvoiceReason.PERIOD,
        period_start=start,
        period_end=end,
        idempotency_key=f"period:{account.public_id}:{start:%Y%m%d}:statement",
        subtotal_micros=sum(line.amount_micros for line in lines if line.component in UNITS),
        total_micros=sum(line.amount_micros for line in lines if line.component in UNITS),
        opening_balance_micros=opening,
        closing_balance_micros=closing,
        created_at=now,
        issued_at=now,
    )
    return Draft(account=account, invoice=invoice, lines=lines)
