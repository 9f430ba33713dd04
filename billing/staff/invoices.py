"""Staff acting on an invoice: void it, write it off as uncollectible, or email it again (I1).

The status changes go through billing.invoicing.invoices's `transition`, like every other.
"""

from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Account, User
from billing import events
from billing.invoicing.emails import INVOICE_ISSUED, invoice_context
from billing.invoicing.invoices import InvoiceError, transition
from billing.ledger.locks import lock_account
from billing.ledger.posting import post_entry
from billing.models import EntryKind, Invoice, InvoiceKind, InvoiceStatus, StaffAction
from billing.notifications.outbox import notify
from billing.payments.collection import invoices_keeping_past_due
from billing.staff.audit import Audit, Outcome, balance_state
from billing.staff.checks import StaffActionError, clean_reason, require_permission


def void_invoice(*, invoice: Invoice, reason: str, actor: User, key: str, now: datetime) -> Outcome:
    """Void an unpaid invoice: the usage it billed is forgiven with a matching credit.

    The reversal is an ADJUSTMENT entry of the invoice total, linked to the invoice, so the
    account's debt for it disappears from the ledger as well as from the invoice.
    """
    require_permission(actor, "billing.void_invoice")
    reason = clean_reason(reason)
    audit = Audit(action=StaffAction.VOID_INVOICE, actor=actor, reason=reason, key=key, now=now)
    if repeat := audit.repeated():
        return repeat
    if invoice.kind != InvoiceKind.INVOICE:
        raise StaffActionError("Statements are not voided; they only report.")
    with transaction.atomic():
        locked = lock_account(invoice.account_id)
        # Asked again under the lock: a double click's twin that committed meanwhile would
        # otherwise make this one fail with "a void invoice cannot become void".
        if repeat := audit.repeated():
            return repeat
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        before = {"status": invoice.status, **balance_state(locked.account)}
        _transition(invoice=invoice, to=InvoiceStatus.VOID, now=now, reason=reason)
        if invoice.total_micros > 0 and invoice.amount_paid_micros == 0:
            post_entry(
                locked=locked,
                amount_micros=invoice.total_micros,
                kind=EntryKind.ADJUSTMENT,
                now=now,
                cause=invoice,
                actor=actor,
                reason=reason,
                description=f"Invoice {invoice.number} voided",
                idempotency_key=f"void:{invoice.pk}",
            )
        _lift_past_due_if_settled(locked.account, now=now)
        record = audit.write(
            account=locked.account,
            before=before,
            after={"status": invoice.status, **balance_state(locked.account)},
            target=invoice,
        )
    return Outcome(f"Invoice {invoice.number} voided.", record)


def mark_uncollectible(
    *, invoice: Invoice, reason: str, actor: User, key: str, now: datetime
) -> Outcome:
    """Write an unpaid invoice off as uncollectible; it can still be paid later."""
    require_permission(actor, "billing.void_invoice")
    reason = clean_reason(reason)
    audit = Audit(
        action=StaffAction.MARK_UNCOLLECTIBLE, actor=actor, reason=reason, key=key, now=now
    )
    if repeat := audit.repeated():
        return repeat
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=invoice.pk)
        # Asked again under the lock, for a double click's twin that committed meanwhile.
        if repeat := audit.repeated():
            return repeat
        before = {"status": invoice.status}
        _transition(invoice=invoice, to=InvoiceStatus.UNCOLLECTIBLE, now=now, reason=reason)
        record = audit.write(
            account=invoice.account,
            before=before,
            after={"status": invoice.status},
            target=invoice,
        )
    return Outcome(f"Invoice {invoice.number} marked uncollectible.", record)


def resend_invoice(*, invoice: Invoice, actor: User, key: str, now: datetime) -> Outcome:
    """Send the invoice email again to the billing contacts."""
    # Anyone who may look at the invoice may send it again; without this check any staff
    # member, even in no group, could email any account.
    require_permission(actor, "billing.view_invoice")
    if invoice.kind != InvoiceKind.INVOICE or invoice.status == InvoiceStatus.DRAFT:
        # Only issued invoices are emailed (billing.invoicing.emails); a statement or a draft
        # would go out as an "invoice" without a number.
        raise StaffActionError("Only an issued invoice can be sent again.")
    audit = Audit(
        action=StaffAction.RESEND_INVOICE,
        actor=actor,
        reason="Sent again on request",
        key=key,
        now=now,
    )
    try:
        with transaction.atomic():
            if repeat := audit.repeated("Already sent."):
                return repeat
            notify(
                account=invoice.account,
                kind=INVOICE_ISSUED,
                key=f"{INVOICE_ISSUED}:{invoice.number}:resend:{key}"[:200],
                # The first email's context: the template prints the number, amount due,
                # period and link from it, and would print blanks without them.
                context=invoice_context(invoice),
                now=now,
            )
            record = audit.write(
                account=invoice.account,
                before={},
                after={"to": invoice.account.billing_emails},
                target=invoice,
            )
    except IntegrityError:
        # A double click's twin committed first (nothing is locked here): its record won.
        if repeat := audit.repeated("Already sent."):
            return repeat
        raise
    return Outcome(f"Invoice {invoice.number} sent again.", record)


def _transition(*, invoice: Invoice, to: str, now: datetime, reason: str) -> None:
    try:
        transition(invoice=invoice, to=to, now=now, reason=reason)
    except InvoiceError as exc:
        raise StaffActionError(str(exc)) from None


def _lift_past_due_if_settled(account: Account, *, now: datetime) -> None:
    if account.past_due_since and not invoices_keeping_past_due(account).exists():
        Account.objects.filter(pk=account.pk).update(past_due_since=None)
        events.account_reinstated(account=account, now=now)
