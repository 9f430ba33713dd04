"""Ledger postings for many locked accounts at once, written set-wise (period close).

The same rules as billing.ledger.posting (append-only entries, grants expired in spending
order, a credit repays debt first, cached balance equal to the sum of the entries), from the
same homes (billing.ledger.grants), applied to a whole chunk of accounts with a handful of
statements instead of a handful per account.

WARNING (locking): the caller locks every account of the batch first, in primary-key order
(`billing.ledger.locks.lock_accounts`), and keeps the lock until `finish()` has run, in one
transaction. `finish()` writes the cached balances and runs the balance watchers once per
account, on the net change of the batch: a close that expires the ending period's included
credit and grants the next one moves a balance from 40 to 50 USD, never "to zero and back", so
it triggers no out-of-credit email and no auto-top-up.
"""

from datetime import datetime

from accounts.models import Account
from billing.db.row_updates import update_by_pk
from billing.ledger.grants import SPENDING_ORDER, expiry_entry, new_grant, spendable_part
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting, entry_for
from billing.ledger.watchers import balances_changed
from billing.models import CreditGrant, LedgerEntry


class BalanceBatch:
    """Balance changes of many locked accounts, in one transaction."""

    def __init__(self, *, accounts: dict[int, LockedAccount], now: datetime):
        self.locked = accounts
        self.now = now
        self._before = {pk: locked.account.balance_micros for pk, locked in accounts.items()}
        for locked in accounts.values():
            # The batch writes grants set-wise, past the accounts' grant books: none of them
            # may be used in this transaction with what it had in memory.
            locked.grants.forget()

    def expire_due_credit(self, account_ids) -> int:
        """Write off the credit of these accounts whose expiry has passed; return the entries.

        Each account's expired grants are written off in spending order, one `expiry` entry per
        grant, as a posting does before it spends.
        """
        expired = list(
            CreditGrant.objects.filter(
                account_id__in=list(account_ids), remaining_micros__gt=0, expires_at__lte=self.now
            ).order_by("account_id", *SPENDING_ORDER)
        )
        if not expired:
            return 0
        entries = []
        for grant in expired:
            account = self.locked[grant.account_id].account
            account.balance_micros -= grant.remaining_micros
            entries.append(
                expiry_entry(
                    account=account,
                    grant=grant,
                    amount_micros=grant.remaining_micros,
                    balance_after_micros=account.balance_micros,
                    now=self.now,
                )
            )
        # Every written-off grant ends the same way, so one statement settles them all.
        CreditGrant.objects.filter(pk__in=[g.pk for g in expired]).update(
            remaining_micros=0, expired_at=self.now
        )
        LedgerEntry.objects.bulk_create(entries, batch_size=1000)
        return len(entries)

    def credit(self, postings: list[tuple[Account, Posting]]) -> None:
        """Post one credit (a positive amount) to each of these accounts.

        As in a single posting, a credit first repays a negative balance; only what remains
        becomes a grant the account can spend. An idempotency key already used makes the
        insert fail and the whole transaction roll back.
        """
        grants, entries = [], []
        for account, posting in postings:
            amount = posting.amount_micros
            if amount <= 0:
                raise ValueError("BalanceBatch.credit posts credits only.")
            spendable = spendable_part(amount_micros=amount, balance_micros=account.balance_micros)
            account.balance_micros += amount
            grant = None
            if spendable:
                grant = new_grant(
                    account=account,
                    kind=posting.kind,
                    amount_micros=spendable,
                    expires_at=posting.grant_expires_at,
                    priority=posting.grant_priority,
                    now=self.now,
                )
                grants.append(grant)
            entries.append(
                entry_for(
                    posting,
                    account=account,
                    balance_after=account.balance_micros,
                    grant=grant,
                    now=self.now,
                )
            )
        # Inserted first so the entries can point at them (ids come back from the insert).
        CreditGrant.objects.bulk_create(grants, batch_size=1000)
        LedgerEntry.objects.bulk_create(entries, batch_size=1000)

    def finish(self) -> None:
        """Write the changed cached balances and run the balance watchers on the net changes."""
        changed = {
            pk: locked.account.balance_micros
            for pk, locked in self.locked.items()
            if locked.account.balance_micros != self._before[pk]
        }
        update_by_pk(Account, "balance_micros", changed)
        balances_changed(
            changes=[(self.locked[pk], self._before[pk]) for pk in sorted(changed)],
            now=self.now,
        )
