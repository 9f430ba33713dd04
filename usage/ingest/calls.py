"""Call reports from the platform: record, rate once when final, refund (U1-U4, P4)."""

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import User
from billing.ledger.locks import LockedAccount, lock_account
from billing.models import EntryKind, LedgerEntry, Subscription
from billing.money import micros_to_api
from billing.payments.refunds import credit_back
from usage.charging.combining import Answer, charge_combined
from usage.charging.lock import ChargeLock, lock_for_charge
from usage.charging.refunds import record_refund
from usage.charging.rollups import rollup_day
from usage.charging.session import Charged, ChargeSession, Pricing
from usage.ingest.fingerprints import call_hash
from usage.ingest.validation import moment_problem
from usage.models import FINAL_CALL_STATUSES, Call, CallStatus, Direction
from usage.rating.destinations import destination_e164
from usage.rating.rules import Rating, rate_call
from usage.reads.calls import read_before_lock
from usage.reports import CallReport, Conflict, NotFound, UsageError
from usage.spending.holds import settle_hold
from webhooks.events import emit

logger = logging.getLogger(__name__)


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

    WARNING (locking): every report of one account needs that account's row lock. What does not
    need the lock (the plan, the rates, rating itself when nothing carries between calls, the
    answer to a repeat of a final report) is done before; the rest is charged together with
    the account's other waiting reports (usage.charging.combining), in the order they came.
    """
    _validate(report, now)
    # One form of the number for rating, the call row and the repeat check alike.
    report = replace(report, destination=destination_e164(report.destination))
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
    if report.status in FINAL_CALL_STATUSES and subscription is None:
        raise Subscription.DoesNotExist(f"Account {report.account} has no subscription.")
    # Read before the lock: a plan or rate change committed while this report waits for the
    # lock is not seen by it, as if the report had arrived a moment earlier.
    # (A holder also charges others' reports with it: it is made for every report.)
    pricing = None if subscription is None else Pricing(subscription=subscription)
    if pricing is not None and report.status in FINAL_CALL_STATUSES:
        pricing.card  # noqa: B018 - the rates, read now rather than under the lock
    item = _Item(
        report=report,
        now=now,
        final_hash=final_hash,
        # A first report of a call is not looked up again under the lock: if another report
        # created the call meanwhile, the unique call id refuses this one's row.
        known_new=call is None,
        allowance_at_call=read.allowance_at_call,
        call_pk=read.new_call_pk if call is None else None,
    )
    own = _encode(item)
    own_rating = _prepare(item=item, pricing=pricing)

    def charge(reports: Sequence[dict]) -> list:
        if len(reports) == 1 and reports[0] is own:
            # Alone (no other report waited): no savepoint. If its call was created meanwhile
            # by another report, the unique call id refuses this one's row, the transaction
            # rolls back, and it is charged again below, its call looked up under the lock.
            return _charge_together(
                lock=lock_for_charge(account_id),
                items=[item],
                pricing=pricing,
                ratings={0: own_rating},
                now=now,
            )
        items = [item if data is own else _decode(data) for data in reports]
        ratings = {len(items) - 1: own_rating} if reports[-1] is own else {}
        return _charge_reports(
            account_id=account_id, items=items, pricing=pricing, ratings=ratings, now=now
        )

    try:
        result = charge_combined(account_id=account_id, report=own, charge=charge, answer=_answer)
    except IntegrityError:
        result = _charge_alone(account_id=account_id, item=item, pricing=pricing, now=now)
    if isinstance(result, Answer):
        if result.outcome == _RUN_ALONE:
            # What the holder could not charge with the others is charged here, alone, so that
            # its error (if it is one) is this request's answer.
            result = _charge_alone(account_id=account_id, item=item, pricing=pricing, now=now)
        else:
            return Call.objects.get(pk=result.value), result.outcome == _CHANGED
    if isinstance(result, IntegrityError):
        # The same call id was created for another account at this very moment.
        raise Conflict(f"Call '{report.call_id}' was reported for another account.")
    if isinstance(result, Exception):
        raise result
    return result


# What a report charged by another request reads of its result (charge_combined's Answer).
_CHANGED, _UNCHANGED, _RUN_ALONE = 1, 2, 3


@dataclass(frozen=True)
class _Item:
    """A call report as it is charged, by its own request or by the holder of the turn."""

    report: CallReport
    now: datetime
    final_hash: str
    known_new: bool
    # Whether the period containing the call's moment had an allowance row (usage.reads.calls).
    allowance_at_call: bool
    # The id of a new call, drawn from its table's sequence before the lock (PostgreSQL), so
    # that the call row is written once, after its ledger entry; else None.
    call_pk: int | None


_MOMENTS = ("connected_at", "ended_at", "transferred_at")


def _encode(item: _Item) -> dict:
    report = asdict(item.report)
    for name in _MOMENTS:
        report[name] = report[name] and report[name].isoformat()
    report["hold_seconds"] = str(report["hold_seconds"])
    return {
        "report": report,
        "now": item.now.isoformat(),
        "final_hash": item.final_hash,
        "known_new": item.known_new,
        "allowance_at_call": item.allowance_at_call,
        "call_pk": item.call_pk,
    }


def _decode(data: dict) -> _Item:
    report = dict(data["report"])
    for name in _MOMENTS:
        report[name] = report[name] and datetime.fromisoformat(report[name])
    report["hold_seconds"] = Decimal(report["hold_seconds"])
    return _Item(
        report=CallReport(**report),
        now=datetime.fromisoformat(data["now"]),
        final_hash=data["final_hash"],
        known_new=data["known_new"],
        allowance_at_call=data["allowance_at_call"],
        call_pk=data["call_pk"],
    )


def _answer(result) -> Answer:
    if isinstance(result, Exception):
        return Answer(_RUN_ALONE)
    call, changed = result
    return Answer(_CHANGED if changed else _UNCHANGED, call.pk)


def _prepare(*, item: _Item, pricing: Pricing | None) -> Rating | None:
    """Rate the report if its rating depends on nothing that carries from call to call (no
    minute aggregation, no included allowance), so that it can be done without the lock; else
    return None and it is rated under the lock. (`allowance_at_call`: see usage.reads.calls.)"""
    report = item.report
    at = call_moment(
        connected_at=report.connected_at, ended_at=report.ended_at, charged_at=item.now
    )
    if report.status not in FINAL_CALL_STATUSES or pricing is None:
        return None
    plan = pricing.plan
    rating = None
    if (
        not plan.minute_aggregation
        and not plan.included_minutes
        # The period an immediate change away from included minutes was made in keeps what
        # is left of them (S2): its calls are rated under the lock, against that row.
        and not item.allowance_at_call
    ):
        rating = rate_call(
            report=report,
            plan=plan,
            card=pricing.card,
            carries={},
            allowance_remaining_seconds=0,
            at=at,
        )
    return rating


def _check_repeat(*, call: Call, account_id: int, report: CallReport, final_hash: str) -> None:
    """Refuse a report of a final call that is not an identical repeat."""
    if call.account_id != account_id:
        raise Conflict(f"Call '{report.call_id}' was reported for another account.")
    if call.final_hash != final_hash:
        raise Conflict(f"Call '{report.call_id}' is final and was reported differently.")


def _charge_alone(*, account_id: int, item: _Item, pricing: Pricing | None, now: datetime):
    """Charge one report in a transaction of its own, its call looked up under the lock."""
    try:
        with transaction.atomic():
            return _charge_together(
                lock=lock_for_charge(account_id),
                items=[replace(item, known_new=False)],
                pricing=pricing,
                ratings={},
                now=now,
            )[0]
    except IntegrityError as exc:
        # The same call id is being created for another account at this very moment.
        return exc


def _charge_reports(
    *,
    account_id: int,
    items: list[_Item],
    pricing: Pricing | None,
    ratings: dict[int, Rating | None],
    now: datetime,
) -> list:
    """Charge the reports together; return per report (call, changed) or the exception that
    refused it. Called with the account's charge turn held (usage.charging.combining)."""
    try:
        with transaction.atomic():
            return _charge_together(
                lock=lock_for_charge(account_id),
                items=items,
                pricing=pricing,
                ratings=ratings,
                now=now,
            )
    except Exception:
        # One report's fault must not refuse the others: they are charged one by one below.
        logger.info("Charging %d reports together failed; each alone", len(items), exc_info=True)
    # Something failed for one of them (say, another report created its call after it looked,
    # for this account or another): each is charged alone, its call looked up under the lock,
    # and one that fails answers its own error. The lock is read again: what the failed
    # attempt changed in memory was rolled back.
    results = []
    for item in items:
        try:
            results.append(
                _charge_alone(account_id=account_id, item=item, pricing=pricing, now=now)
            )
        except Exception as exc:  # answered to the report's own request
            results.append(exc)
    return results


def _charge_together(
    *,
    lock: ChargeLock,
    items: list[_Item],
    pricing: Pricing | None,
    ratings: dict[int, Rating | None],
    now: datetime,
) -> list:
    """Charge the reports, in order, under the account's lock: one session, one balance
    update, one ledger entry per charged call. Return (call, changed) or a UsageError per
    report; a report refused writes nothing."""
    account = lock.locked.account
    lookup = [item.report.call_id for item in items if not item.known_new]
    calls = {c.call_id: c for c in Call.objects.filter(call_id__in=lookup)} if lookup else {}
    session = None
    results: list = []
    charged_calls: list[tuple[Call, Charged]] = []
    for index, item in enumerate(items):
        report = item.report
        call = calls.get(report.call_id)
        if call is not None and call.is_final:
            try:
                _check_repeat(
                    call=call, account_id=account.pk, report=report, final_hash=item.final_hash
                )
            except Conflict as exc:
                results.append(exc)
                continue
            results.append((call, False))
            continue
        if call is not None and call.account_id != account.pk:
            results.append(Conflict(f"Call '{report.call_id}' was reported for another account."))
            continue
        if report.status not in FINAL_CALL_STATUSES:
            # in_progress and paused are recorded, not billed (U2).
            call = _recorded(call, report=report, account=account, now=item.now)
            call.save()
            calls[report.call_id] = call
            results.append((call, True))
            continue
        if session is None:
            session = ChargeSession(locked=lock.locked, now=now, pricing=pricing)
        at = call_moment(
            connected_at=report.connected_at, ended_at=report.ended_at, charged_at=item.now
        )
        rating = ratings.get(index) or _prepare(item=item, pricing=pricing)
        if rating is None:
            try:
                rating = rate_call(
                    report=report,
                    plan=session.plan,
                    card=session.card,
                    carries=session.carries,
                    allowance_remaining_seconds=session.allowance_remaining_seconds(at=at),
                    at=at,
                )
            except UsageError as exc:
                results.append(exc)
                continue
        if lock.has_open_holds:
            settle_hold(
                locked=lock.locked,
                call_id=report.call_id,
                reservation_id=report.reservation_id,
                now=item.now,
            )
        call = _recorded(call, report=report, account=account, now=item.now)
        call.final_hash = item.final_hash
        call.billable_seconds = rating.billable_quantity
        call.allowance_seconds = rating.allowance_seconds
        call.cost_micros = rating.cost_micros
        call.charged_at = item.now
        if call.pk is None:
            if item.call_pk:
                call.pk = item.call_pk  # written once, below, after its ledger entry
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
        calls[report.call_id] = call
        charged_calls.append((call, charged))
        results.append((call, True))
    if session is not None:
        session.close(merge=False)
    new_calls = []
    for call, charged in charged_calls:
        call.ledger_entry = charged.posting.entry if charged.posting else None
        if call._state.adding:
            new_calls.append(call)
        elif not call._state.adding:
            call.save()
    # New calls with ids drawn before the lock are written once, now, whole.
    Call.objects.bulk_create(new_calls)
    return results


def _recorded(call: Call | None, *, report: CallReport, account, now: datetime) -> Call:
    """The call with what the report says of it (not saved)."""
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
    return call


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
