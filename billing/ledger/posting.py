"""Posting to the credit ledger: the only code that changes an account's balance (SPEC L1-L5).

WARNING (locking): every balance change locks the account row with SELECT ... FOR UPDATE, then in
the same transaction expires due credit, consumes or creates credit grants, inserts the ledger
entries and writes the new cached balance once. Code that must lock several accounts locks them
in primary-key order (`lock_accounts`) so two transactions can never wait on each other.

The invariants this module keeps, and `ledger_drift` checks:
- `account.balance_micros == sum(entry.amount_micros)` and equals the last entry's
  `balance_after_micros`;
- `max(balance, 0) == sum(grant.remaining_micros)`: a positive balance is exactly the unspent,
  unexpired credit; a negative balance (postpaid usage not yet paid) has no credit left;
- a prepaid account never goes below zero unless a caller explicitly allows an overdraft.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import IntegrityError, models, transaction
from django.db.models import F

from accounts.models import Account, User
from billing.ledger.locks import lock_account
from billing.ledger.watchers import balance_changed
from billing.models import CreditGrant, EntryKind, LedgerEntry
from billing.models.ledger import cause_fields

# Attribute of a locked account holding its spendable grants, read with the lock
# (usage.charging.lock). The next posting batch takes them instead of reading them again.
LOCKED_GRANTS_ATTR = "locked_spendable_grants"


class LedgerError(Exception):
    """A posting was refused; nothing was written."""


class InsufficientCredit(LedgerError):
    """A prepaid account cannot pay for this debit."""


class DuplicatePosting(LedgerError):
    """The idempotency key was already used; `entry` is the entry that used it."""

    def __init__(self, entry: LedgerEntry):
        super().__init__(f"Already posted as entry {entry.pk}.")
        self.entry = entry


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
    account: Account,
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
    """Post one signed amount to the account and return its entry.

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
    post_entries(account=account, postings=[posting], now=now, allow_overdraft=allow_overdraft)
    return posting.entry


def post_entries(
    *,
    account: Account,
    postings: Sequence[Posting],
    now: datetime,
    allow_overdraft: bool = False,
) -> list[LedgerEntry]:
    """Post several amounts to one account with one lock and one balance update.

    All or nothing: if one posting is refused, none is written.
    """
    try:
        with transaction.atomic():
            locked = lock_account(account.pk)
            entries = apply_postings(
                account=locked, postings=postings, now=now, allow_overdraft=allow_overdraft
            )
    except IntegrityError:
        keys = [p.idempotency_key for p in postings if p.idempotency_key]
        existing = LedgerEntry.objects.filter(idempotency_key__in=keys).first() if keys else None
        if existing is None:
            raise
        raise DuplicatePosting(existing) from None
    account.balance_micros = locked.balance_micros
    return entries


def apply_postings(
    *,
    account: Account,
    postings: Sequence[Posting],
    now: datetime,
    allow_overdraft: bool = False,
    unbilled_delta_micros: int = 0,
) -> list[LedgerEntry]:
    """Post to an account the caller has already locked with `lock_account`.

    For services (usage rating, payments) that must decide what to charge while holding the
    same lock. Updates `account.balance_micros` in memory and in the database, and adds
    `unbilled_delta_micros` to `account.unbilled_micros` in the same statement (usage charging
    changes both; one statement less while the lock is held).
    """
    book = _GrantBook(account=account, now=now)
    balance = account.balance_micros
    entries: list[LedgerEntry] = []

    for posting in postings:
        amount = posting.amount_micros
        if amount == 0:
            raise LedgerError("A ledger entry must move money.")
        if amount < 0:
            balance = book.expire_due(balance=balance, entries=entries)
            if posting.from_grant is not None:
                book.take_from(grant_id=posting.from_grant.pk, amount=-amount)
            else:
                if account.is_prepaid and not allow_overdraft and balance + amount < 0:
                    raise InsufficientCredit(
                        f"Balance {balance} micros cannot pay {-amount} micros."
                    )
                book.consume(amount=-amount)
            balance += amount
            grant = posting.from_grant
        else:
            # Credit first repays any debt (negative balance); only the rest is spendable.
            spendable = amount - min(amount, max(-balance, 0))
            balance += amount
            grant = (
                book.add(
                    kind=posting.kind,
                    amount=spendable,
                    expires_at=posting.grant_expires_at,
                    priority=posting.grant_priority,
                )
                if spendable
                else None
            )
        entries.append(
            entry_for(posting, account=account, balance_after=balance, grant=grant, now=now)
        )

    book.save()
    LedgerEntry.objects.bulk_create(entries)
    changes = {"balance_micros": balance}
    if unbilled_delta_micros:
        changes["unbilled_micros"] = F("unbilled_micros") + unbilled_delta_micros
        account.unbilled_micros += unbilled_delta_micros
    Account.objects.filter(pk=account.pk).update(**changes)
    before = account.balance_micros
    account.balance_micros = balance
    if balance != before:
        balance_changed(account=account, before_micros=before, now=now)
    return entries


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


_NEVER = datetime.max.replace(tzinfo=UTC)


def _spending_order(grant: CreditGrant) -> tuple:
    """The spending order of `_GrantBook.grants` in Python; unsaved grants are the newest."""
    return (
        grant.expires_at is None,
        grant.expires_at or _NEVER,
        -grant.priority,
        grant.created_at,
        grant.pk is None,
        grant.pk or 0,
    )


class _GrantBook:
    """The account's spendable grants, loaded once per posting batch and saved once."""

    def __init__(self, *, account: Account, now: datetime):
        self.account = account
        self.now = now
        self._grants: list[CreditGrant] | None = None
        self._changed: set[int] = set()
        self._new: list[CreditGrant] = []

    @property
    def grants(self) -> list[CreditGrant]:
        if self._grants is None:
            # Read with the lock, if they were: used once, as the batch then changes them.
            read_with_lock = self.account.__dict__.pop(LOCKED_GRANTS_ATTR, None)
            if read_with_lock is not None:
                self._grants = sorted(read_with_lock, key=_spending_order)
            else:
                # Spending order (L5): earliest expiry first (no expiry last), then highest
                # priority, then oldest.
                self._grants = list(
                    CreditGrant.objects.filter(
                        account=self.account, remaining_micros__gt=0
                    ).order_by(
                        F("expires_at").asc(nulls_last=True), "-priority", "created_at", "pk"
                    )
                )
            if self._new:
                # Grants added earlier in this batch are not saved yet, but later postings of
                # the batch may spend them.
                self._grants.extend(self._new)
                self._grants.sort(key=_spending_order)
        return self._grants

    def expire_due(self, *, balance: int, entries: list[LedgerEntry]) -> int:
        """Write off credit whose expiry has passed, before anything can spend it."""
        for grant in self.grants:
            if grant.remaining_micros and grant.expires_at and grant.expires_at <= self.now:
                amount = grant.remaining_micros
                balance -= amount
                grant.remaining_micros = 0
                grant.expired_at = self.now
                self._mark(grant)
                entries.append(
                    LedgerEntry(
                        account=self.account,
                        kind=EntryKind.EXPIRY,
                        amount_micros=-amount,
                        balance_after_micros=balance,
                        created_at=self.now,
                        grant=grant,
                        description=f"{grant.get_kind_display()} expired",
                        **cause_fields(None),
                    )
                )
        return balance

    def consume(self, *, amount: int) -> None:
        """Spend from grants in spending order; what they cannot cover becomes debt."""
        for grant in self.grants:
            if amount == 0:
                return
            take = min(grant.remaining_micros, amount)
            if take:
                grant.remaining_micros -= take
                amount -= take
                self._mark(grant)

    def take_from(self, *, grant_id: int, amount: int) -> None:
        grant = next((g for g in self.grants if g.pk == grant_id), None)
        if grant is None or grant.remaining_micros < amount:
            raise InsufficientCredit("That credit has already been spent or has expired.")
        grant.remaining_micros -= amount
        self._mark(grant)

    def add(self, *, kind: str, amount: int, expires_at, priority: int) -> CreditGrant:
        grant = CreditGrant(
            account=self.account,
            kind=kind,
            amount_micros=amount,
            remaining_micros=amount,
            priority=priority,
            expires_at=expires_at,
            created_at=self.now,
        )
        self._new.append(grant)
        if self._grants is not None:
            self._grants.append(grant)
            self._grants.sort(key=_spending_order)
        return grant

    def _mark(self, grant: CreditGrant) -> None:
        # A new grant is inserted by save() with whatever the batch left of it.
        if grant.pk is not None:
            self._changed.add(grant.pk)

    def save(self) -> None:
        if self._changed:
            changed = [g for g in self.grants if g.pk in self._changed]
            if len(changed) == 1:
                # The usual case (a debit from the one grant in use): a plain UPDATE compiles
                # in a fraction of bulk_update's CASE statement, on the hot path of usage.
                [grant] = changed
                CreditGrant.objects.filter(pk=grant.pk).update(
                    remaining_micros=grant.remaining_micros, expired_at=grant.expired_at
                )
            else:
                CreditGrant.objects.bulk_update(changed, ["remaining_micros", "expired_at"])
        if self._new:
            CreditGrant.objects.bulk_create(self._new)
