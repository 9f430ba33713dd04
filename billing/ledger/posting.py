"""Posting to the credit ledger: the only code that changes an account's balance (SPEC L1-L5).

WARNING (locking): every posting happens under the account's row lock, which the caller took
with billing.ledger.locks and passes in as a `LockedAccount`. In the same transaction the
posting expires due credit, consumes or creates credit grants (billing.ledger.grants), inserts
the ledger entries, writes the new cached balance once and tells the balance watchers.

The invariants this module keeps, and `ledger_drift` checks:
- `account.balance_micros == sum(entry.amount_micros)` and equals the last entry's
  `balance_after_micros`;
- `max(balance, 0) == sum(grant.remaining_micros)`: a positive balance is exactly the unspent,
  unexpired credit; a negative balance (postpaid usage not yet paid) has no credit left;
- a prepaid account never goes below zero unless a caller explicitly allows an overdraft.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, models, transaction
from django.db.models import F

from accounts.models import Account, User
from billing import events
from billing.ledger.errors import DuplicatePosting, InsufficientCredit, LedgerError
from billing.ledger.grants import spendable_part
from billing.ledger.locks import LockedAccount
from billing.ledger.watchers import balance_changed
from billing.models import CreditGrant, EntryKind, LedgerEntry
from billing.models.ledger import cause_fields

# Credit given rather than bought (top-ups have their own events) or handed back (call.refunded):
# the platform hears of it as credit.granted.
GRANTED_KINDS = frozenset({EntryKind.SIGNUP_CREDIT, EntryKind.PROMOTIONAL})


@dataclass
class Posting:
    """One signed amount to post. Positive amounts become a credit grant the account can spend."""

    amount_micros: int
    kind: str
    cause: models.Model | None = None
    description: str = ""
    reason: str = ""
    actor: User | None = None
    idempotency_key: str | None = None
    # Credits: when the new grant expires and how early it is spent.
    grant_expires_at: datetime | None = None
    grant_priority: int = 0
    # Debits: take the amount from this grant only (a refunded top-up), not in spending order.
    from_grant: CreditGrant | None = None
    # Filled in by apply_postings.
    entry: LedgerEntry | None = field(default=None, init=False)


def post_entry(
    *,
    locked: LockedAccount,
    amount_micros: int,
    kind: str,
    now: datetime,
    cause: models.Model | None = None,
    description: str = "",
    reason: str = "",
    actor: User | None = None,
    idempotency_key: str | None = None,
    grant_expires_at: datetime | None = None,
    grant_priority: int = 0,
    from_grant: CreditGrant | None = None,
    allow_overdraft: bool = False,
) -> LedgerEntry:
    """Post one signed amount to the locked account and return its entry.

    Raise InsufficientCredit when a prepaid account cannot pay, DuplicatePosting when the
    idempotency key was used before. Either way nothing is written.
    """
    posting = Posting(
        amount_micros=amount_micros,
        kind=kind,
        cause=cause,
        description=description,
        reason=reason,
        actor=actor,
        idempotency_key=idempotency_key,
        grant_expires_at=grant_expires_at,
        grant_priority=grant_priority,
        from_grant=from_grant,
    )
    post_entries(locked=locked, postings=[posting], now=now, allow_overdraft=allow_overdraft)
    return posting.entry


def post_entries(
    *,
    locked: LockedAccount,
    postings: Sequence[Posting],
    now: datetime,
    allow_overdraft: bool = False,
) -> list[LedgerEntry]:
    """Post several amounts to one locked account with one balance update.

    All or nothing: if one posting is refused, none is written, and the caller's transaction
    goes on (a savepoint holds the writes until they all succeed).
    """
    try:
        with transaction.atomic():
            return apply_postings(
                locked=locked, postings=postings, now=now, allow_overdraft=allow_overdraft
            )
    except IntegrityError:
        keys = [p.idempotency_key for p in postings if p.idempotency_key]
        existing = LedgerEntry.objects.filter(idempotency_key__in=keys).first() if keys else None
        if existing is None:
            raise
        raise DuplicatePosting(existing) from None


def apply_postings(
    *,
    locked: LockedAccount,
    postings: Sequence[Posting],
    now: datetime,
    allow_overdraft: bool = False,
    unbilled_delta_micros: int = 0,
) -> list[LedgerEntry]:
    """Post to a locked account without a savepoint of its own (the usage hot path).

    Updates `locked.account.balance_micros` in memory and in the database, and adds
    `unbilled_delta_micros` to the account's unbilled total in the same statement (usage
    charging changes both; one statement less while the lock is held). If anything fails,
    the account and its grant book in memory are left as they were before the call.
    """
    account = locked.account
    before = account.balance_micros, account.unbilled_micros
    try:
        entries = _apply(
            locked=locked,
            postings=postings,
            now=now,
            allow_overdraft=allow_overdraft,
            unbilled_delta_micros=unbilled_delta_micros,
        )
    except BaseException:
        # What failed is rolled back by the caller's transaction (or savepoint): the memory
        # must not say otherwise.
        account.balance_micros, account.unbilled_micros = before
        locked.grants.forget()
        raise
    if account.balance_micros != before[0]:
        balance_changed(locked=locked, before_micros=before[0], now=now)
    return entries


def _apply(
    *,
    locked: LockedAccount,
    postings: Sequence[Posting],
    now: datetime,
    allow_overdraft: bool,
    unbilled_delta_micros: int,
) -> list[LedgerEntry]:
    account, book = locked.account, locked.grants
    balance = account.balance_micros
    entries: list[LedgerEntry] = []
    for posting in postings:
        amount = posting.amount_micros
        if amount == 0:
            raise LedgerError("A ledger entry must move money.")
        if amount < 0:
            balance = book.expire_due(balance_micros=balance, entries=entries, now=now)
            if posting.from_grant is not None:
                book.take_from(grant_id=posting.from_grant.pk, amount_micros=-amount)
            else:
                if account.is_prepaid and not allow_overdraft and balance + amount < 0:
                    raise InsufficientCredit(
                        f"Balance {balance} micros cannot pay {-amount} micros."
                    )
                book.consume(amount_micros=-amount)
            balance += amount
            grant = posting.from_grant
        else:
            spendable = spendable_part(amount_micros=amount, balance_micros=balance)
            balance += amount
            grant = (
                book.add(
                    kind=posting.kind,
                    amount_micros=spendable,
                    expires_at=posting.grant_expires_at,
                    priority=posting.grant_priority,
                    now=now,
                )
                if spendable
                else None
            )
        entries.append(
            entry_for(posting, account=account, balance_after=balance, grant=grant, now=now)
        )

    _write(
        locked=locked,
        entries=entries,
        balance_micros=balance,
        unbilled_delta_micros=unbilled_delta_micros,
    )
    for entry in entries:
        if entry.kind in GRANTED_KINDS and entry.amount_micros > 0:
            events.credit_granted(
                account=account,
                amount_micros=entry.amount_micros,
                kind=entry.kind,
                expires_at=entry.grant.expires_at if entry.grant else None,
                reason=entry.reason or entry.description,
                now=now,
            )
    return entries


def _write(
    *,
    locked: LockedAccount,
    entries: list[LedgerEntry],
    balance_micros: int,
    unbilled_delta_micros: int = 0,
) -> None:
    """Save the grant book and the entries, and set the cached balance (one UPDATE)."""
    account = locked.account
    locked.grants.save()
    LedgerEntry.objects.bulk_create(entries)
    changes = {"balance_micros": balance_micros}
    if unbilled_delta_micros:
        changes["unbilled_micros"] = F("unbilled_micros") + unbilled_delta_micros
        account.unbilled_micros += unbilled_delta_micros
    Account.objects.filter(pk=account.pk).update(**changes)
    account.balance_micros = balance_micros


def expire_account_credit(*, locked: LockedAccount, now: datetime) -> bool:
    """Write off the locked account's credit whose expiry has passed; return whether any did.

    A debit does this itself before it spends; this is for credit nothing spends.
    """
    account = locked.account
    before = account.balance_micros
    entries: list[LedgerEntry] = []
    try:
        balance = locked.grants.expire_due(balance_micros=before, entries=entries, now=now)
        if not entries:
            return False
        _write(locked=locked, entries=entries, balance_micros=balance)
    except BaseException:
        account.balance_micros = before
        locked.grants.forget()
        raise
    balance_changed(locked=locked, before_micros=before, now=now)
    return True


def entry_for(
    posting: Posting,
    *,
    account: Account,
    balance_after: int,
    grant: CreditGrant | None,
    now: datetime,
) -> LedgerEntry:
    """Return the (unsaved) ledger entry of a posting, and remember it on the posting."""
    posting.entry = LedgerEntry(
        account=account,
        kind=posting.kind,
        amount_micros=posting.amount_micros,
        balance_after_micros=balance_after,
        created_at=now,
        grant=grant,
        actor=posting.actor,
        reason=posting.reason,
        description=posting.description[:200],
        idempotency_key=posting.idempotency_key,
        **cause_fields(posting.cause),
    )
    return posting.entry
