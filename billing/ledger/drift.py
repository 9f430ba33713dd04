"""The ledger invariant check (SPEC L3): accounts whose cached balance disagrees with their
ledger entries or their unspent credit."""

from dataclasses import dataclass

from django.db.models import Sum

from accounts.models import Account
from billing.models import CreditGrant, LedgerCheck, LedgerEntry


@dataclass(frozen=True)
class Drift:
    account_id: int
    public_id: str
    cached_micros: int
    ledger_micros: int
    grants_micros: int


def check_ledger(*, now) -> list[Drift]:
    """Run the ledger check, record how it came out (for monitoring), and return the drift."""
    drift = ledger_drift()
    LedgerCheck.objects.create(
        checked_at=now, accounts_checked=Account.objects.count(), drift_accounts=len(drift)
    )
    return drift


def ledger_drift() -> list[Drift]:
    """Return every account whose cached balance disagrees with its ledger or its grants."""
    ledger_sums = dict(
        LedgerEntry.objects.values("account_id")
        .annotate(total=Sum("amount_micros"))
        .values_list("account_id", "total")
    )
    grant_sums = dict(
        CreditGrant.objects.filter(remaining_micros__gt=0)
        .values("account_id")
        .annotate(total=Sum("remaining_micros"))
        .values_list("account_id", "total")
    )
    drift = []
    for account_id, public_id, cached in Account.objects.values_list(
        "pk", "public_id", "balance_micros"
    ).iterator(chunk_size=5000):
        ledger = ledger_sums.get(account_id, 0)
        grants = grant_sums.get(account_id, 0)
        if cached != ledger or max(cached, 0) != grants:
            drift.append(Drift(account_id, public_id, cached, ledger, grants))
    return drift
