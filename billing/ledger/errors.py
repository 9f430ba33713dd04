"""Why the ledger refused a posting. Whenever one is raised, nothing was written."""

from billing.models import LedgerEntry


class LedgerError(Exception):
    """A posting was refused; nothing was written."""


class InsufficientCredit(LedgerError):
    """A prepaid account cannot pay for this debit."""


class DuplicatePosting(LedgerError):
    """The idempotency key was already used; `entry` is the entry that used it."""

    def __init__(self, entry: LedgerEntry):
        super().__init__(f"Already posted as entry {entry.pk}.")
        self.entry = entry
