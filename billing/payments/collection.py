"""Collecting open invoices from the saved card, and dunning when that fails (SPEC P5).

A payment attempt is recorded as pending, with an idempotency key derived from the invoice and
the attempt number, before the gateway is called. A worker killed after that point leaves the
pending attempt behind; the next run repeats the call with the same key, and the gateway (Stripe
or the test double) answers with the first result instead of charging again.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction

from accounts.models import Account
from billing import events
from billing.invoicing.emails import invoice_paid, invoice_payment_failed
from billing.invoicing.invoices import transition
from billing.invoicing.receipts import receipt_for_invoice_payment
from billing.ledger.locks import LockedAccount, lock_account
from billing.ledger.posting import post_entry
from billing.models import (
    EntryKind,
    FeePaidBy,
    Invoice,
    InvoiceKind,
    InvoicePayment,
    InvoiceReason,
    InvoiceStatus,
    PaymentStatus,
    PlanFeeCharge,
)
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import ChargeOutcome, ProviderUnavailable
from billing.plans.fees import settle_fee_invoice

logger = logging.getLogger(__name__)

# After a failed charge, try again after these delays; then wait for the customer (new card).
RETRY_DELAYS = [timedelta(days=1), timedelta(days=3), timedelta(days=5), timedelta(days=7)]
# How long a claimed attempt belongs to the worker that claimed it. Longer than a django-q task
# may run (Q_CLUSTER timeout, 600 s), so a pending attempt older than this was left by a worker
# that died, and the dunning job asks the gateway again with the same key.
PENDING_LEASE = timedelta(minutes=15)


def collect_invoice(*, invoice_id: int, now: datetime) -> InvoicePayment | None:
    """Charge an open invoice once; return the attempt, or None when nothing is to be done."""
    payment = _claim_attempt(invoice_id=invoice_id, now=now)
    if payment is None:
        return None
    invoice = payment.invoice
    outcome = get_gateway().charge_saved_card(
        account=invoice.account,
        amount_micros=payment.amount_micros,
        idempotency_key=payment.idempotency_key,
        description=f"Invoice {invoice.number}",
    )
    return record_outcome(payment_id=payment.pk, outcome=outcome, now=now)


def _claim_attempt(*, invoice_id: int, now: datetime) -> InvoicePayment | None:
    with transaction.atomic():
        invoice = (
            # The invoice only: the account is locked first, where a balance changes.
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account")
            .filter(pk=invoice_id)
        ).first()
        if (
            invoice is None
            or invoice.kind != InvoiceKind.INVOICE
            or invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
            or invoice.amount_due_micros == 0
        ):
            return None
        # While an attempt is pending, next_payment_attempt_at is the end of its lease: the
        # dunning job comes back then if the worker died (it used to be cleared, so a pending
        # attempt was never found again), and no one else asks the gateway before then (two
        # concurrent requests with one key make Stripe answer the second with an error).
        lease_end = now + PENDING_LEASE
        pending = invoice.payments.filter(status=PaymentStatus.PENDING).first()
        if pending is not None:
            leased_until = invoice.next_payment_attempt_at
            if leased_until is not None and leased_until > now:
                return None  # another worker is asking the gateway right now
            # A run died between recording the attempt and its outcome: ask again, same key.
            Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt_at=lease_end)
            return pending
        due_at = invoice.next_payment_attempt_at
        if due_at is None or due_at > now:
            # Not due (any more): a run that listed the invoice before another run's attempt
            # failed and moved the next one on must not try again. Checked under the invoice's
            # row lock, so however many runs overlap, each due time gets one attempt, one
            # email and one step of the retry schedule.
            return None
        attempt = invoice.payment_attempts + 1
        payment = InvoicePayment.objects.create(
            invoice=invoice,
            attempt=attempt,
            idempotency_key=f"invoice:{invoice.pk}:attempt:{attempt}",
            amount_micros=invoice.amount_due_micros,
            created_at=now,
        )
        Invoice.objects.filter(pk=invoice.pk).update(
            payment_attempts=attempt, next_payment_attempt_at=lease_end
        )
        return payment


def record_outcome(*, payment_id: int, outcome: ChargeOutcome, now: datetime) -> InvoicePayment:
    """Apply a gateway answer to the attempt, the invoice and the account. Idempotent."""
    with transaction.atomic():
        payment = InvoicePayment.objects.select_related("invoice").get(pk=payment_id)
        locked = lock_account(payment.invoice.account_id)
        payment = InvoicePayment.objects.select_for_update().get(pk=payment_id)
        if payment.status != PaymentStatus.PENDING:
            return payment
        if outcome.status == PaymentStatus.PENDING:
            # Still processing at the provider: neither paid nor declined. The attempt stays
            # pending under its lease, and the dunning job asks again (same key) when it ends.
            payment.gateway_reference = outcome.reference or payment.gateway_reference
            payment.save(update_fields=["gateway_reference"])
            return payment
        invoice = Invoice.objects.select_for_update().get(pk=payment.invoice_id)
        payment.status = outcome.status
        payment.gateway_reference = outcome.reference
        payment.error = outcome.error
        payment.completed_at = now
        payment.save(update_fields=["status", "gateway_reference", "error", "completed_at"])
        if outcome.status == PaymentStatus.SUCCEEDED:
            _mark_paid(invoice=invoice, locked=locked, now=now)
            receipt_for_invoice_payment(payment=payment, now=now)
        else:
            _mark_failed(invoice=invoice, account=locked.account, now=now)
    return payment


def _mark_paid(*, invoice: Invoice, locked: LockedAccount, now: datetime) -> None:
    account = locked.account
    newly_paid = invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
    if newly_paid:
        transition(invoice=invoice, to=InvoiceStatus.PAID, now=now)
        invoice_paid(invoice=invoice, now=now)
    Invoice.objects.filter(pk=invoice.pk).update(amount_paid_micros=invoice.amount_due_micros)
    invoice.amount_paid_micros = invoice.amount_due_micros
    if newly_paid:
        events.invoice_event("invoice.paid", invoice=invoice, now=now)
    # The payment clears exactly what the invoice billed; sub-cent rounding is forgiven. A
    # prepaid account's plan-fee invoice billed nothing from the balance: the card pays the fee.
    # A postpaid account's first fee (billing.invoicing.plan_fees.charge_first_period_fee) is
    # on a plan-fee invoice too, but the ledger carries it, as a period invoice's fee line.
    if invoice.total_micros > 0 and (
        invoice.reason != InvoiceReason.PLAN_FEE
        or PlanFeeCharge.objects.filter(invoice=invoice, paid_by=FeePaidBy.INVOICE).exists()
    ):
        post_entry(
            locked=locked,
            amount_micros=invoice.total_micros,
            kind=EntryKind.INVOICE_PAYMENT,
            now=now,
            cause=invoice,
            description=f"Payment of invoice {invoice.number}",
            idempotency_key=f"invoice-payment:{invoice.pk}",
        )
    # A plan fee on the invoice is paid: the included allowance it held back is released.
    settle_fee_invoice(invoice=invoice, now=now)
    keeping = invoices_keeping_past_due(account).exclude(pk=invoice.pk)
    if account.past_due_since and not keeping.exists():
        # A successful payment lifts the pause at once (P5).
        Account.objects.filter(pk=account.pk).update(past_due_since=None)
        events.account_reinstated(account=account, now=now)


def invoices_keeping_past_due(account: Account):
    """The account's invoices that keep it past due: unpaid, and a charge of them failed.

    Unpaid means open or uncollectible: staff writing an invoice off as uncollectible stops the
    dunning, not the debt, so usage stays paused until it is paid (or voided, which forgives it).
    """
    return Invoice.objects.filter(
        account=account,
        kind=InvoiceKind.INVOICE,
        status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
        payments__status__in=(PaymentStatus.FAILED, PaymentStatus.REQUIRES_ACTION),
    ).distinct()


def _mark_failed(*, invoice: Invoice, account: Account, now: datetime) -> None:
    failures = invoice.payments.exclude(status=PaymentStatus.SUCCEEDED).count()
    next_at = now + RETRY_DELAYS[failures - 1] if failures <= len(RETRY_DELAYS) else None
    Invoice.objects.filter(pk=invoice.pk).update(next_payment_attempt_at=next_at)
    invoice_payment_failed(invoice=invoice, failures=failures, next_attempt_at=next_at, now=now)
    events.invoice_event(
        "invoice.payment_failed",
        invoice=invoice,
        now=now,
        failures=failures,
        next_attempt_at=next_at,
    )
    if account.past_due_since is None:
        # Billable usage is paused (402) until the invoice is paid; free usage goes on.
        Account.objects.filter(pk=account.pk).update(past_due_since=now)
        events.account_past_due(account=account, invoice=invoice, now=now)


def invoices_to_collect(*, now: datetime) -> list[int]:
    # An uncollectible invoice has no next attempt (the dunning stopped) unless a new card
    # scheduled one (`schedule_card_retries`): then it is collected too.
    return list(
        Invoice.objects.filter(
            kind=InvoiceKind.INVOICE,
            status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
            next_payment_attempt_at__lte=now,
        )
        .order_by("next_payment_attempt_at")
        .values_list("pk", flat=True)
    )


def collect_due_invoices(*, now: datetime) -> int:
    """Charge every open invoice whose (first or next) attempt is due; the dunning job."""
    return _collect_each(invoices_to_collect(now=now), now=now)


def _collect_each(invoice_ids, *, now: datetime) -> int:
    """Charge each invoice once; one that the provider cannot answer never stops the rest."""
    collected = 0
    for invoice_id in invoice_ids:
        try:
            payment = collect_invoice(invoice_id=invoice_id, now=now)
        except ProviderUnavailable:
            # The attempt stays pending under its lease and the run after it asks again with
            # the same key; the other accounts' invoices are still collected now.
            logger.warning("Payment provider unavailable for invoice %s", invoice_id)
            continue
        if payment is not None:
            collected += 1
    return collected


def _unpaid(account: Account):
    return Invoice.objects.filter(
        account=account,
        kind=InvoiceKind.INVOICE,
        status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
    )


def schedule_card_retries(*, account: Account, now: datetime) -> int:
    """Make every unpaid invoice of the account due now (a new or changed card, P5).

    Called in the transaction that changes the card: the invoices' due time is the record of
    the retry, so the dunning job collects them even if the task that does it at once is lost
    with the broker. Return how many were scheduled.
    """
    # An invoice with a pending attempt keeps its lease (see _claim_attempt).
    return (
        _unpaid(account)
        .exclude(payments__status=PaymentStatus.PENDING)
        .update(next_payment_attempt_at=now)
    )


def retry_account_invoices(*, account: Account, now: datetime) -> int:
    """Retry every unpaid invoice of an account at once, e.g. after it adds a card (P5)."""
    schedule_card_retries(account=account, now=now)
    return _collect_each(
        list(_unpaid(account).order_by("pk").values_list("pk", flat=True)), now=now
    )
