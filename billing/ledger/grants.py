"""Credit grants: the order credit is spent in, debt repaid first, and credit written off.

Each rule here has one home, used by the per-account posting (billing.ledger.posting) and the
set-wise batch of period close (billing.ledger.batch):

- **Spending order (SPEC L5).** Usage consumes the earliest-expiring credit first (credit that
  never expires last), then the highest priority, then the oldest. `SPENDING_ORDER` is the rule
  for the database, `spending_key` the same rule for grants in memory.
- **Debt first.** A credit first repays a negative balance (postpaid usage not paid yet); only
  what is left becomes a grant the account can spend (`spendable_part`).
- **Expiry.** Credit whose expiry has passed is written off with one `expiry` entry per grant
  (`expiry_entry`), before anything can spend it.
"""

from datetime import UTC, datetime

from django.db.models import F, Sum

from accounts.models import Account
from billing.ledger.errors import InsufficientCredit
from billing.models import CreditGrant, EntryKind, LedgerEntry
from billing.models.ledger import cause_fields

SPENDING_ORDER = (F("expires_at").asc(nulls_last=True), "-priority", "created_at", "pk")
_NEVER = datetime.max.replace(tzinfo=UTC)


def spending_key(grant: CreditGrant) -> tuple:
    """Return `SPENDING_ORDER` for a grant in memory; grants not saved yet are the newest."""
    return (
        grant.expires_at is None,
        grant.expires_at or _NEVER,
        -grant.priority,
        grant.created_at,
        grant.pk is None,
        grant.pk or 0,
    )


def spendable_part(*, amount_micros: int, balance_micros: int) -> int:
    """Return what of a credit becomes spendable: the rest repays the debt of a negative balance."""
    return amount_micros - min(amount_micros, max(-balance_micros, 0))


def new_grant(
    *,
    account: Account,
    kind: str,
    amount_micros: int,
    expires_at: datetime | None,
    priority: int,
    now: datetime,
) -> CreditGrant:
    """Return an unsaved grant of spendable credit."""
    return CreditGrant(
        account=account,
        kind=kind,
        amount_micros=amount_micros,
        remaining_micros=amount_micros,
        priority=priority,
        expires_at=expires_at,
        created_at=now,
    )


def expiry_entry(
    *, account: Account, grant: CreditGrant, amount_micros: int, balance_after_micros: int, now
) -> LedgerEntry:
    """Return the (unsaved) entry that writes off `amount_micros` of an expired grant."""
    return LedgerEntry(
        account=account,
        kind=EntryKind.EXPIRY,
        amount_micros=-amount_micros,
        balance_after_micros=balance_after_micros,
        created_at=now,
        grant=grant,
        description=f"{grant.get_kind_display()} expired",
        **cause_fields(None),
    )


def is_expired(grant: CreditGrant, *, now: datetime) -> bool:
    return bool(grant.remaining_micros) and grant.expires_at is not None and grant.expires_at <= now


def expired_credit_micros(*, account_id: int, now: datetime) -> int:
    """Return the credit past its expiry still in the account's cached balance (not yet
    written off): never spendable, so a balance shown as spendable leaves it out."""
    expired = CreditGrant.objects.filter(
        account_id=account_id, remaining_micros__gt=0, expires_at__lte=now
    ).aggregate(total=Sum("remaining_micros"))["total"]
    return expired or 0


class GrantBook:
    """The spendable credit grants of one locked account, for the life of its lock.

    Loaded on first use (or given, when the lock holder read them right after the lock) and
    kept current as postings spend, add and expire credit, so that every posting under one
    lock sees what the previous one left. `save()` writes what changed. After a failed posting
    the caller calls `forget()`: what the failure left in memory is dropped and read again.
    """

    def __init__(self, *, account: Account, grants: list[CreditGrant] | None = None):
        self.account = account
        self._grants: list[CreditGrant] | None = None
        if grants is not None:
            self._grants = sorted(grants, key=spending_key)
        self._changed: set[int] = set()
        self._new: list[CreditGrant] = []

    @property
    def grants(self) -> list[CreditGrant]:
        """The grants with credit left, in spending order (unsaved new ones included)."""
        if self._grants is None:
            self._grants = list(
                CreditGrant.objects.filter(
                    account_id=self.account.pk, remaining_micros__gt=0
                ).order_by(*SPENDING_ORDER)
            )
            for grant in self._grants:
                CreditGrant.account.field.set_cached_value(grant, self.account)
            if self._new:
                self._grants.extend(self._new)
                self._grants.sort(key=spending_key)
        return self._grants

    def expired_micros(self, *, now: datetime) -> int:
        """Return the credit past its expiry that has not been written off yet."""
        return sum(g.remaining_micros for g in self.grants if is_expired(g, now=now))

    def expire_due(self, *, balance_micros: int, entries: list[LedgerEntry], now: datetime) -> int:
        """Write off credit whose expiry has passed, before anything can spend it; return the
        balance after, and add the expiry entries to `entries`."""
        for grant in self.grants:
            if is_expired(grant, now=now):
                amount = grant.remaining_micros
                balance_micros -= amount
                grant.remaining_micros = 0
                grant.expired_at = now
                self._mark(grant)
                entries.append(
                    expiry_entry(
                        account=self.account,
                        grant=grant,
                        amount_micros=amount,
                        balance_after_micros=balance_micros,
                        now=now,
                    )
                )
        return balance_micros

    def consume(self, *, amount_micros: int) -> None:
        """Spend from grants in spending order; what they cannot cover becomes debt."""
        for grant in self.grants:
            if amount_micros == 0:
                return
            take = min(grant.remaining_micros, amount_micros)
            if take:
                grant.remaining_micros -= take
                amount_micros -= take
                self._mark(grant)

    def take_from(self, *, grant_id: int, amount_micros: int) -> None:
        """Spend from one grant only (a refunded top-up takes back its own credit)."""
        grant = next((g for g in self.grants if g.pk == grant_id), None)
        if grant is None or grant.remaining_micros < amount_micros:
            raise InsufficientCredit("That credit has already been spent or has expired.")
        grant.remaining_micros -= amount_micros
        self._mark(grant)

    def add(
        self, *, kind: str, amount_micros: int, expires_at, priority: int, now: datetime
    ) -> CreditGrant:
        grant = new_grant(
            account=self.account,
            kind=kind,
            amount_micros=amount_micros,
            expires_at=expires_at,
            priority=priority,
            now=now,
        )
        self._new.append(grant)
        if self._grants is not None:
            self._grants.append(grant)
            self._grants.sort(key=spending_key)
        return grant

    def _mark(self, grant: CreditGrant) -> None:
        # A new grant is inserted by save() with whatever the batch left of it.
        if grant.pk is not None:
            self._changed.add(grant.pk)

    def save(self) -> None:
        """Write the grants changed and added since the last save."""
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
            self._changed.clear()
        if self._new:
            CreditGrant.objects.bulk_create(self._new)
            if any(grant.pk is None for grant in self._new):
                # A database that returns no ids from a bulk insert: read the grants again
                # before the next posting changes one of them.
                self._grants = None
            self._new = []
        # Spent grants leave the book: the next load would not return them either.
        if self._grants is not None:
            self._grants = [g for g in self._grants if g.remaining_micros > 0]

    def forget(self) -> None:
        """Drop what is in memory; the next use reads the grants from the database again."""
        self._grants = None
        self._changed.clear()
        self._new = []
