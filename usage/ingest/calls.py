"""Call reports from the platform: record, rate once when final, refund (U1-U4, P4)."""

from dataclasses import dataclass, replace
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import User
from billing.ledger.locks import LockedAccount, lock_account
from billing.models import EntryKind, LedgerEntry, Subscription
from billing.money import micros_to_api
from billing.payments.refunds import credit_back
from usage.charging.lock import ChargeLock, lock_for_charge
from usage.charging.refunds import record_refund
from usage.charging.rollups import rollup_day
from usage.charging.session import ChargeSession, Pricing
from usage.ingest.fingerprints import call_hash
from usage.ingest.validation import moment_problem
from usage.models import FINAL_CALL_STATUSES, Call, CallStatus, Direction
from usage.rating.destinations import destination_e164
from usage.rating.rules import Rating, rate_call
from usage.reads.calls import read_before_lock
from usage.reports import CallReport, Conflict, NotFound, UsageError
from usage.spending.holds import settle_hold
from webhooks.events import emit


def call_moment(
    *, connected_at: datetime | None, ended_at: datetime | None, charged_at: datetime
) -> datetime:
    """Return the moment a call is rated and counted at: its connection, else its end, else
    the moment its final report was charged (that report's `now`, then `Call.charged_at`).

    It picks the rates in effect, the period whose allowance the call uses, and the rollup day
    its cost and any refund of it are counted on.
    """
    return connected_at or ended_at or charged_at


def _validate(report: CallReport, now: datetime) -> None:
    if not report.call_id or len(report.call_id) > 100:
        raise UsageError("call_id must be 1 to 100 characters.", param="call_id")
    if report.status not in CallStatus.values:
        raise UsageError(f"Unknown call status '{report.status}'.", param="status")
    if report.direction not in Direction.values:
        raise UsageError(f"Unknown direction '{report.direction}'.", param="direction")
    if report.hold_seconds < 0:
        raise UsageError("hold_seconds cannot be negative.", param="hold_seconds")
    for name in ("connected_at", "ended_at", "transferred_at"):
        moment = getattr(report, name)
        if moment is None:
            continue
        problem = moment_problem(name=name, moment=moment, now=now)
        if problem:
            raise UsageError(f"{problem}.", param=name)
    if (
        report.transferred_at
        and report.connected_at
        and report.transferred_at < report.connected_at
    ):
        raise UsageError("The call is transferred before it connects.", param="transferred_at")
    # A transfer after the end contradicts the report; billing would silently ignore it.
    if report.transferred_at and report.ended_at and report.transferred_at > report.ended_at:
        raise UsageError("The call is transferred after it ends.", param="transferred_at")


def report_call(*, report: CallReport, now: datetime) -> tuple[Call, bool]:
    """Record a call report; charge it when it first reaches a final state.

    Return the call and whether this report changed it. An identical repeat of a final report
    changes nothing; a different one raises Conflict (409) and writes nothing.

    WARNING (locking): every report of one account waits for that account's row lock, so the
    work done under it bounds how many calls per second one account can report. What does not
    need the lock (the plan, the rates, rating itself when nothing carries between calls, the
    answer to a repeat of a final report) is done before taking it.
    """
    _validate(report, now)
    # One form of the number for rating, the call row and the repeat check alike.
    report = replace(report, destination=destination_e164(report.destination))
    try:
        return _report_call(report=report, now=now, first_try=True)
    except IntegrityError:
        # The call id was created by another report after this one looked for it (see
        # _report_locked); the transaction is rolled back, and the retry finds the call.
        pass
    try:
        return _report_call(report=report, now=now, first_try=False)
    except IntegrityError:
        # The same call id is being created for another account at this very moment.
        raise Conflict(f"Call '{report.call_id}' was reported for another account.") from None


def _report_call(*, report: CallReport, now: datetime, first_try: bool) -> tuple[Call, bool]:
    at = call_moment(connected_at=report.connected_at, ended_at=report.ended_at, charged_at=now)
    # One statement: the account, its subscription and plan, and the call if reported before.
    read = read_before_lock(account_public_id=report.account, call_id=report.call_id, at=at)
    if read is None:
        raise NotFound(f"No account '{report.account}'.", param="account")
    account_id, subscription, call = read.account_id, read.subscription, read.call
    final_hash = call_hash(report)
    # A final state never changes, so a repeat of a final report is answered without the lock.
    if call is not None and call.is_final:
        _check_repeat(call=call, account_id=account_id, report=report, final_hash=final_hash)
        return call, False
    prepared = _prepare(
        report=report,
        subscription=subscription,
        allowance_at_call=read.allowance_at_call,
        new_call_pk=read.new_call_pk if call is None else None,
        now=now,
    )
    with transaction.atomic():
        return _report_locked(
            lock=lock_for_charge(account_id),
            report=report,
            now=now,
            prepared=prepared,
            final_hash=final_hash,
            # A first report of a call is not looked up again under the lock: if another
            # report created the call meanwhile, the unique call id refuses this one's row
            # (IntegrityError) and report_call tries again. One statement less under the lock.
            known_new=first_try and call is None,
        )


@dataclass(frozen=True)
class _Prepared:
    """What a final report's charge needs that can be read or computed before the lock."""

    pricing: Pricing | None
    # The rating, when it depends on nothing that carries from call to call (no minute
    # aggregation, no included allowance); else None and the call is rated under the lock.
    rating: Rating | None
    at: datetime
    # The id of a new final call, drawn from its table's sequence before the lock (PostgreSQL),
    # so that the call row is written once, after its ledger entry; else None.
    call_pk: int | None


def _prepare(
    *,
    report: CallReport,
    subscription: Subscription | None,
    allowance_at_call: bool,
    new_call_pk: int | None,
    now: datetime,
) -> _Prepared:
    """Read and rate what can be before the lock (`allowance_at_call`: see usage.reads.calls)."""
    at = call_moment(connected_at=report.connected_at, ended_at=report.ended_at, charged_at=now)
    if report.status not in FINAL_CALL_STATUSES:
        return _Prepared(None, None, at, None)
    if subscription is None:
        raise Subscription.DoesNotExist(f"Account {report.account} has no subscription.")
    # Read before the lock: a plan or rate change committed while this report waits for the
    # lock is not seen by it, as if the report had arrived a moment earlier.
    pricing = Pricing(subscription=subscription)
    plan, card = pricing.plan, pricing.card
    rating = None
    if (
        not plan.minute_aggregation
        and not plan.included_minutes
        # The period an immediate change away from included minutes was made in keeps what
        # is left of them (S2): its calls are rated under the lock, against that row.
        and not allowance_at_call
    ):
        rating = rate_call(
            report=report, plan=plan, card=card, carries={}, allowance_remaining_seconds=0, at=at
        )
    return _Prepared(pricing, rating, at, new_call_pk)


def _check_repeat(*, call: Call, account_id: int, report: CallReport, final_hash: str) -> None:
    """Refuse a report of a final call that is not an identical repeat."""
    if call.account_id != account_id:
        raise Conflict(f"Call '{report.call_id}' was reported for another account.")
    if call.final_hash != final_hash:
        raise Conflict(f"Call '{report.call_id}' is final and was reported differently.")


def _report_locked(
    *,
    lock: ChargeLock,
    report: CallReport,
    now: datetime,
    prepared: _Prepared,
    final_hash: str,
    known_new: bool,
) -> tuple[Call, bool]:
    account = lock.locked.account
    call = None if known_new else Call.objects.filter(call_id=report.call_id).first()
    if call is not None and call.account_id != account.pk:
        raise Conflict(f"Call '{report.call_id}' was reported for another account.")
    if call is not None and call.is_final:
        _check_repeat(call=call, account_id=account.pk, report=report, final_hash=final_hash)
        return call, False

    call = call or Call(call_id=report.call_id, account=account, created_at=now)
    call.status = report.status
    call.direction = report.direction
    call.connected_at = report.connected_at
    call.ended_at = report.ended_at
    call.transferred_at = report.transferred_at
    call.hold_seconds = report.hold_seconds
    call.destination = report.destination
    call.llm = report.llm
    call.updated_at = now
    if report.status not in FINAL_CALL_STATUSES:
        # in_progress and paused are recorded, not billed (U2).
        call.save()
        return call, True

    session = ChargeSession(locked=lock.locked, now=now, pricing=prepared.pricing)
    at = prepared.at
    rating = prepared.rating
    if rating is None:
        rating = rate_call(
            report=report,
            plan=session.plan,
            card=session.card,
            carries=session.carries,
            allowance_remaining_seconds=session.allowance_remaining_seconds(at=at),
            at=at,
        )
    if lock.has_open_holds:
        settle_hold(
            locked=lock.locked,
            call_id=report.call_id,
            reservation_id=report.reservation_id,
            now=now,
        )
    call.final_hash = final_hash
    call.billable_seconds = rating.billable_quantity
    call.allowance_seconds = rating.allowance_seconds
    call.cost_micros = rating.cost_micros
    call.charged_at = now
    if call.pk is None:
        if prepared.call_pk:
            call.pk = prepared.call_pk  # written once, below, after its ledger entry
        else:
            call.save()  # its ledger entry names the call as its cause, by id
    charged = session.charge(
        rating=rating,
        kind=EntryKind.USAGE,
        cause=call,
        description=f"Call {report.call_id}: {rating.billable_quantity} s",
        day=rollup_day(at),
        component="call",
        model=report.llm,
    )
    call.charged_micros = charged.charged_micros
    call.uncollected_micros = charged.uncollected_micros
    call.explanation = {**rating.explanation, "uncollected": charged.uncollected_micros}
    session.close()
    call.ledger_entry = charged.posting.entry if charged.posting else None
    # A new call with an id drawn before the lock is written once, now, whole.
    call.save(force_insert=call._state.adding)
    return call, True


def refund_call(*, call_id: str, now: datetime, reason: str = "") -> Call:
    """Credit back what a call was charged (the platform's fault). Idempotent (P4)."""
    call = Call.objects.filter(call_id=call_id).first()
    if call is None:
        raise NotFound(f"No call '{call_id}'.", param="call_id")
    if not call.is_final:
        raise UsageError("Only a call in a final state can be refunded.")
    if call.refunded_micros:
        return call
    if not call.charged_micros:
        raise UsageError("This call was not charged; there is nothing to refund.")
    with transaction.atomic():
        locked = lock_account(call.account_id)
        call = Call.objects.get(pk=call.pk)
        if call.refunded_micros:
            return call
        credit_call(
            locked=locked,
            call=call,
            amount_micros=call.charged_micros,
            reason=reason or "Credited back by the platform",
            idempotency_key=f"call-refund:{call.pk}",
            now=now,
        )
    call.refresh_from_db()
    return call


def credit_call(
    *,
    locked: LockedAccount,
    call: Call,
    amount_micros: int,
    reason: str,
    idempotency_key: str,
    now: datetime,
    actor: User | None = None,
) -> LedgerEntry:
    """Credit back `amount_micros` of a call (the platform's refund, or staff's, whole or part):
    the ledger entry names the call, the call counts it as refunded, the rollups and the next
    invoice count it. The caller holds the account's lock and has re-read `call` under it."""
    entry = credit_back(
        locked=locked,
        amount_micros=amount_micros,
        now=now,
        cause=call,
        description=f"Refund of call {call.call_id}",
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
    )
    # F(): a part refund adds to what earlier ones gave back (the model's check keeps the sum
    # within the charge).
    Call.objects.filter(pk=call.pk).update(
        refunded_micros=F("refunded_micros") + amount_micros, refunded_at=now
    )
    record_refund(
        account=locked.account,
        day=rollup_day(
            call_moment(
                connected_at=call.connected_at,
                ended_at=call.ended_at,
                charged_at=call.charged_at,
            )
        ),
        component="call",
        model=call.llm,
        entry=entry,
    )
    emit(
        "call.refunded",
        {
            "call_id": call.call_id,
            "amount": micros_to_api(amount_micros),
            "reason": reason,
            "balance": micros_to_api(locked.account.balance_micros),
        },
        account=locked.account,
        now=now,
    )
    return entry
