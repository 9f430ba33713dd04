"""The credit ledger (SPEC L1-L5): locking accounts (`locks`), posting entries (`posting`), the
grant rules (`grants`), set-wise batches for period close (`batch`), credit expiry (`expiry`),
the invariant check (`drift`) and the registry of balance watchers (`watchers`).

The lowest layer of billing's money code: it imports nothing above it.
"""
