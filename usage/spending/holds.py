"""Holding credit for authorized calls until they report (SPEC G3).

WARNING (locking): holds change `Account.held_micros`; every function here runs with the account row
locked (billing.ledger.locks.lock_account) in the caller's transaction, or takes the lock itself, so
the cached sum never drifts from the HELD rows.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, Sum

from accounts.models import Account, ApiKey, new_public_id
from billing.ledger.locks import LockedAccount, lock_account
from usage.models import Reservation, ReservationStatus

# A hold outlives the seconds it covers by this much before the expiry job releases it.
HOLD_GRACE = timedelta(minutes=15)


def open_hold(*, account: Account, call_id: str) -> Reservation | None:
    """Return the open hold of a call, if it has one."""
    if not call_id:
        return None
    return Reservation.objects.filter(
        account=account, call_id=call_id, status=ReservationStatus.HELD
    ).first()


def held_allowance_seconds(*, account: Account) -> int:
    """Return the included seconds promised to calls whose holds are open (account locked)."""
    return (
        Reservation.objects.filter(account=account, status=ReservationStatus.HELD).aggregate(
            total=Sum("allowance_seconds")
        )["total"]
        or 0
    )


def place_hold(
    *,
    locked: LockedAccount,
    amount_micros: int,
    max_seconds: int,
    call_id: str,
    api_key: ApiKey | None,
    now: datetime,
    allowance_seconds: int = 0,
) -> Reservation:
    """Hold credit and included seconds on a locked account for a call of up to `max_seconds`.

    A call id holds at most once: a repeat returns its open hold.
    """
    account = locked.account
    existing = open_hold(account=account, call_id=call_id)
    if existing is not None:
        return existing
    reservation = Reservation.objects.create(
        public_id=new_public_id("hold"),
        account=account,
        api_key=api_key,
        call_id=call_id,
        amount_micros=amount_micros,
        max_seconds=max_seconds,
        allowance_seconds=allowance_seconds,
        created_at=now,
        expires_at=now + timedelta(seconds=max_seconds) + HOLD_GRACE,
    )
    if amount_micros:
        Account.objects.filter(pk=account.pk).update(held_micros=F("held_micros") + amount_micros)
        account.held_micros += amount_micros
    return reservation


def settle_hold(
    *, locked: LockedAccount, call_id: str, reservation_id: str, now: datetime
) -> Reservation | None:
    """Close the hold of a call that reported its final state (the account is locked)."""
    account = locked.account
    match = Q()
    if call_id:
        match |= Q(call_id=call_id)
    if reservation_id:
        match |= Q(public_id=reservation_id)
    if not match:
        return None
    reservation = (
        Reservation.objects.filter(match, account=account, status=ReservationStatus.HELD)
        .order_by("created_at")
        .first()
    )
    if reservation is not None:
        _close(account=account, reservation=reservation, status=ReservationStatus.SETTLED, now=now)
    return reservation


def _close(*, account: Account, reservation: Reservation, status: str, now: datetime) -> None:
    Reservation.objects.filter(pk=reservation.pk).update(status=status, closed_at=now)
    reservation.status = status
    if reservation.amount_micros:
        Account.objects.filter(pk=account.pk).update(
            held_micros=F("held_micros") - reservation.amount_micros
        )
        account.held_micros -= reservation.amount_micros


def release_expired_holds(*, now: datetime) -> int:
    """Release every hold past its expiry; return how many. Safe to run twice or concurrently."""
    account_ids = sorted(
        set(
            Reservation.objects.filter(
                status=ReservationStatus.HELD, expires_at__lte=now
            ).values_list("account_id", flat=True)
        )
    )
    released = 0
    for account_id in account_ids:
        with transaction.atomic():
            account = lock_account(account_id).account
            for reservation in Reservation.objects.filter(
                account=account, status=ReservationStatus.HELD, expires_at__lte=now
            ):
                _close(
                    account=account,
                    reservation=reservation,
                    status=ReservationStatus.RELEASED,
                    now=now,
                )
                released += 1
    return released
