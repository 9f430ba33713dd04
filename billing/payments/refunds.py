"""Refunds (SPEC P4): credit back to the balance, or money back to the card for a top-up.

Credit-back moves no money: one REFUND ledger entry, idempotent by its key (staff refunding usage,
or the platform refunding a call that failed through its fault, `usage.ingest.calls.refund_call`).

A money refund of a top-up may be partial and never exceeds what is both still refundable (the
top-up less what was refunded) and still unspent (what is left of the top-up's credit grant). It
is safe against double clicks and retries:

1. under the account's lock, a `Refund` row is inserted in status pending with a unique key (the
   form's request key), and the credit is taken back from the top-up's grant in the same
   transaction (ledger TOPUP_REFUND via `from_grant`), so usage can no longer spend it;
2. the payment gateway is asked, with the row's key as idempotency key;
3. its answer is recorded; a refusal puts the credit back. Stripe may also accept a refund as
   pending and fail it later (or fail one it reported succeeded): its refund webhooks
   (`settle_stripe_refund`) record that, put the credit back once and tell staff.

A second request with the same key finds the row: it returns it while the first is in flight,
and asks Stripe again (same key, same answer) only once the row has been pending for a while,
which means the first request died.
"""

from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Sum

from accounts.models import User
from billing import events
from billing.ledger.errors import DuplicatePosting
from billing.ledger.locks import LockedAccount, lock_account
from billing.ledger.posting import Posting, post_entries, post_entry
from billing.models import EntryKind, LedgerEntry, Refund, RefundStatus, TopUp, TopUpStatus
from billing.money import MoneyError, format_usd, micros_to_cents
from billing.notifications.outbox import notify
from billing.payments.gateway import get_gateway
from billing.payments.gateway.protocol import ProviderUnavailable, RefundOutcome

# A pending refund asked this long ago without an answer is asked again (same key).
STALE_ATTEMPT = timedelta(minutes=5)


class RefundError(ValueError):
    """A refund was refused; nothing was written. The message is for staff."""


def _require(actor: User | None, permission: str) -> None:
    if actor is not None and not actor.has_perm(permission):
        raise PermissionDenied("You are not allowed to make this refund.")


def credit_back(
    *,
    locked: LockedAccount,
    amount_micros: int,
    reason: str,
    idempotency_key: str,
    now: datetime,
    actor: User | None = None,
    cause=None,
    description: str = "Credited back",
) -> LedgerEntry:
    """Credit an amount back to the balance (no money moves). A repeat returns the first entry."""
    _require(actor, "billing.credit_back")
    if amount_micros <= 0:
        raise RefundError("A credit-back must be a positive amount.")
    if not reason.strip():
        raise RefundError("Give a reason for the refund.")
    try:
        return post_entry(
            locked=locked,
            amount_micros=amount_micros,
            kind=EntryKind.REFUND,
            now=now,
            cause=cause,
            description=description,
            reason=reason.strip(),
            actor=actor,
            idempotency_key=idempotency_key,
        )
    except DuplicatePosting as duplicate:
        return duplicate.entry


def refundable_micros(topup: TopUp) -> int:
    """What of a paid top-up can still go back to the card: not yet refunded and unspent."""
    if not topup.is_paid or topup.grant is None:
        return 0
    return max(min(topup.amount_micros - topup.refunded_micros, topup.grant.remaining_micros), 0)


def refund_topup(
    *,
    topup: TopUp,
    amount_micros: int,
    reason: str,
    request_key: str,
    now: datetime,
    actor: User | None = None,
) -> Refund:
    """Refund (part of) a top-up to the card; one refund per `request_key`."""
    _require(actor, "billing.refund_topup")
    if not reason.strip():
        raise RefundError("Give a reason for the refund.")
    if not request_key:
        raise RefundError("A refund request needs a key.")
    if amount_micros <= 0:
        raise RefundError("A refund must be a positive amount.")
    try:
        micros_to_cents(amount_micros)
    except MoneyError:
        raise RefundError("A refund to a card must be a whole number of cents.") from None
    refund, send = _reserve(
        topup_id=topup.pk,
        amount_micros=amount_micros,
        reason=reason.strip(),
        key=f"refund:{topup.public_id}:{request_key}"[:120],
        actor=actor,
        now=now,
    )
    if not send:
        return refund
    return send_refund(refund_id=refund.pk, now=now)


def _reserve(
    *, topup_id: int, amount_micros: int, reason: str, key: str, actor, now: datetime
) -> tuple[Refund, bool]:
    with transaction.atomic():
        account_id = TopUp.objects.values_list("account_id", flat=True).get(pk=topup_id)
        # WARNING (locking order): the account, then the top-up, like every balance change.
        locked = lock_account(account_id)
        topup = (
            TopUp.objects.select_for_update(of=("self",)).select_related("grant").get(pk=topup_id)
        )
        existing = Refund.objects.filter(key=key).first()
        if existing is not None:
            if existing.topup_id != topup.pk or existing.amount_micros != amount_micros:
                raise RefundError("This refund request was already made with other details.")
            stale = existing.attempted_at is None or existing.attempted_at <= now - STALE_ATTEMPT
            if existing.status == RefundStatus.PENDING and stale:
                Refund.objects.filter(pk=existing.pk).update(attempted_at=now)
                return existing, True
            return existing, False
        if not topup.is_paid:
            raise RefundError("Only a paid top-up can be refunded.")
        refundable = refundable_micros(topup)
        if amount_micros > refundable:
            raise RefundError(
                f"At most {format_usd(refundable)} of this top-up can be refunded: what is "
                "not refunded yet and not spent."
            )
        refund = Refund.objects.create(
            topup=topup,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
            actor=actor,
            created_at=now,
            attempted_at=now,
        )
        post_entry(
            locked=locked,
            amount_micros=-amount_micros,
            kind=EntryKind.TOPUP_REFUND,
            now=now,
            cause=refund,
            description=f"Refund of top-up {topup.public_id} to the card",
            reason=reason,
            actor=actor,
            from_grant=topup.grant,
            idempotency_key=f"refund:{refund.pk}",
        )
        topup.refunded_micros += amount_micros
        topup.save(update_fields=["refunded_micros"])
    return refund, True


def send_refund(*, refund_id: int, now: datetime) -> Refund:
    """Ask the provider for a reserved refund (again, with the same key) and record the answer."""
    refund = Refund.objects.select_related("topup").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    topup = refund.topup
    try:
        outcome = get_gateway().refund_payment(
            payment_intent_id=topup.payment_intent_id or "",
            amount_micros=refund.amount_micros,
            idempotency_key=refund.key,
            metadata={"refund": refund.key, "topup": topup.public_id},
        )
    except ProviderUnavailable as error:
        Refund.objects.filter(pk=refund.pk).update(error=str(error))
        refund.error = str(error)
        return refund  # still pending: the retry job asks again with the same key
    return record_refund_outcome(refund_id=refund.pk, outcome=outcome, now=now)


def record_refund_outcome(*, refund_id: int, outcome: RefundOutcome, now: datetime) -> Refund:
    with transaction.atomic():
        topup_id, account_id = Refund.objects.values_list("topup_id", "topup__account_id").get(
            pk=refund_id
        )
        locked = lock_account(account_id)
        topup = TopUp.objects.select_for_update().get(pk=topup_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.PENDING:
            return refund
        if outcome.status == "pending":
            # Accepted but not done: Stripe finishes some card refunds later, and may still
            # fail them (refund.updated / refund.failed, `settle_stripe_refund`). The credit
            # stays taken and the row pending until Stripe says how it ended.
            refund.stripe_refund_id = outcome.reference or refund.stripe_refund_id
            refund.error = ""
            refund.save(update_fields=["stripe_refund_id", "error"])
            return refund
        refund.completed_at = now
        refund.error = outcome.error
        refund.stripe_refund_id = outcome.reference or refund.stripe_refund_id
        if outcome.status == "succeeded":
            refund.status = RefundStatus.SUCCEEDED
            if topup.refunded_micros >= topup.amount_micros:
                topup.status = TopUpStatus.REFUNDED
                topup.save(update_fields=["status"])
            events.refund_succeeded(refund=refund, topup=topup, now=now)
        else:
            _restore_credit(locked=locked, topup=topup, refund=refund, now=now)
        refund.save(update_fields=["status", "stripe_refund_id", "error", "completed_at"])
    return refund


def _restore_credit(*, locked: LockedAccount, topup: TopUp, refund: Refund, now: datetime) -> None:
    """Mark a refund failed and give back the credit it took (the money never left).

    The credit goes back to the account it was taken from with one entry, whose key makes a
    second failure report (the gateway's answer, then Stripe's webhook) restore it once; it
    keeps the expiry and priority of the top-up's own credit. Staff are told: a refund they
    made did not reach the card.
    """
    refund.status = RefundStatus.FAILED
    grant = topup.grant
    try:
        post_entry(
            locked=locked,
            amount_micros=refund.amount_micros,
            kind=EntryKind.ADJUSTMENT,
            now=now,
            cause=refund,
            description=f"Refund of top-up {topup.public_id} failed; credit restored",
            reason=refund.error or "The card refund failed.",
            idempotency_key=f"refund-failed:{refund.pk}",
            grant_expires_at=grant.expires_at if grant else None,
            grant_priority=grant.priority if grant else 0,
        )
    except DuplicatePosting:
        return  # restored already
    topup.refunded_micros -= refund.amount_micros
    if topup.status == TopUpStatus.REFUNDED:
        topup.status = TopUpStatus.SUCCEEDED
    topup.save(update_fields=["refunded_micros", "status"])
    notify(
        account=locked.account,
        kind="refund_failed",
        key=f"refund_failed:{refund.pk}",
        context={
            "refund": refund.key,
            "stripe_refund": refund.stripe_refund_id or "",
            "topup": topup.public_id,
            "amount": format_usd(refund.amount_micros),
            "error": refund.error or "The card refund failed.",
        },
        now=now,
    )


def settle_stripe_refund(
    *, stripe_refund_id: str, refund_key: str, status: str, failure_reason: str, now: datetime
) -> Refund | None:
    """Apply what Stripe says a refund became (refund.updated, refund.failed,
    charge.refund.updated). Idempotent, in any order.

    Succeeded: a pending refund is recorded succeeded. Failed or canceled: the refund is
    recorded failed, also after it was recorded succeeded (Stripe may fail a refund days after
    accepting it), and its credit is restored once. Pending: nothing changes.
    """
    refund = (
        Refund.objects.filter(stripe_refund_id=stripe_refund_id).first()
        if stripe_refund_id
        else None
    )
    if refund is None and refund_key:
        refund = Refund.objects.filter(key=refund_key).first()
    if refund is None:
        return None
    if status == "succeeded":
        return record_refund_outcome(
            refund_id=refund.pk,
            outcome=RefundOutcome("succeeded", reference=stripe_refund_id),
            now=now,
        )
    if status not in ("failed", "canceled"):
        return refund
    with transaction.atomic():
        locked = lock_account(refund.topup.account_id)
        topup = (
            TopUp.objects.select_for_update(of=("self",))
            .select_related("grant")
            .get(pk=refund.topup_id)
        )
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.status == RefundStatus.FAILED:
            return refund
        refund.error = f"Stripe: the refund {status} ({failure_reason or 'no reason given'})."
        refund.completed_at = now
        refund.stripe_refund_id = stripe_refund_id or refund.stripe_refund_id
        _restore_credit(locked=locked, topup=topup, refund=refund, now=now)
        refund.save(update_fields=["status", "stripe_refund_id", "error", "completed_at"])
    return refund


def retry_pending_refunds(*, now: datetime) -> int:
    """The scheduled job: ask again for refunds whose request died before Stripe answered."""
    # A refund Stripe accepted as pending (it has Stripe's id) is settled by its webhook:
    # asking again with the same key would only repeat Stripe's first answer.
    stale = Refund.objects.filter(
        status=RefundStatus.PENDING,
        attempted_at__lte=now - STALE_ATTEMPT,
        stripe_refund_id__isnull=True,
    ).values_list("pk", flat=True)
    retried = 0
    for refund_id in stale:
        claimed = Refund.objects.filter(
            pk=refund_id, status=RefundStatus.PENDING, attempted_at__lte=now - STALE_ATTEMPT
        ).update(attempted_at=now)
        if claimed:
            send_refund(refund_id=refund_id, now=now)
            retried += 1
    return retried


def reconcile_stripe_refunds(*, payment_intent_id: str, amount_refunded_micros: int, now: datetime):
    """A charge was refunded in Stripe (charge.refunded): record refunds we did not make.

    Money already went back outside Meterline (e.g. from Stripe's dashboard), so the credit goes
    too: from the top-up's grant as far as it is unspent, the rest as a debit of the balance.
    """
    topup = TopUp.objects.filter(payment_intent_id=payment_intent_id).first()
    if topup is None or not topup.is_paid:
        return None
    with transaction.atomic():
        locked = lock_account(topup.account_id)
        topup = (
            TopUp.objects.select_for_update(of=("self",)).select_related("grant").get(pk=topup.pk)
        )
        known = (
            Refund.objects.filter(
                topup=topup, status__in=[RefundStatus.PENDING, RefundStatus.SUCCEEDED]
            ).aggregate(total=Sum("amount_micros"))["total"]
            or 0
        )
        extra = min(amount_refunded_micros, topup.amount_micros) - known
        if extra <= 0:
            return None
        refund = Refund.objects.create(
            topup=topup,
            amount_micros=extra,
            status=RefundStatus.SUCCEEDED,
            key=f"stripe-refund:{topup.public_id}:{amount_refunded_micros}",
            reason="Refunded in Stripe",
            created_at=now,
            attempted_at=now,
            completed_at=now,
        )
        from_grant = min(extra, topup.grant.remaining_micros if topup.grant else 0)
        postings = []
        if from_grant:
            postings.append(
                Posting(
                    amount_micros=-from_grant,
                    kind=EntryKind.TOPUP_REFUND,
                    cause=refund,
                    description=f"Refund of top-up {topup.public_id} made in Stripe",
                    from_grant=topup.grant,
                    idempotency_key=f"refund:{refund.pk}",
                )
            )
        if extra - from_grant:
            postings.append(
                Posting(
                    amount_micros=-(extra - from_grant),
                    kind=EntryKind.TOPUP_REFUND,
                    cause=refund,
                    description=f"Refund of spent top-up {topup.public_id} made in Stripe",
                    idempotency_key=f"refund:{refund.pk}:spent",
                )
            )
        post_entries(locked=locked, postings=postings, now=now, allow_overdraft=True)
        topup.refunded_micros += extra
        if topup.refunded_micros >= topup.amount_micros:
            topup.status = TopUpStatus.REFUNDED
        topup.save(update_fields=["refunded_micros", "status"])
        events.refund_succeeded(refund=refund, topup=topup, now=now)
    return refund
