"""The account's statement of ledger entries on the billing page, and its CSV (SPEC D3, L2).

Keyset pages over the (account, created_at) index, newest first.
"""

from collections.abc import Iterator
from datetime import date

from django.db.models import Q, QuerySet

from accounts.models import Account
from billing.db.keyset import day_bounds, make_cursor, parse_cursor
from billing.models import LedgerEntry
from billing.money import micros_to_api

PAGE_SIZE = 50
CSV_HEADER = ["created_at", "kind", "description", "amount_usd", "balance_after_usd", "reason"]


def _entries(account: Account, start: date | None, end: date | None, kind: str) -> QuerySet:
    entries = LedgerEntry.objects.filter(account=account)
    lower, upper = day_bounds(start, end)
    if lower:
        entries = entries.filter(created_at__gte=lower)
    if upper:
        entries = entries.filter(created_at__lt=upper)
    if kind:
        entries = entries.filter(kind=kind)
    return entries


def ledger_page(
    *,
    account: Account,
    start: date | None = None,
    end: date | None = None,
    kind: str = "",
    cursor: str = "",
    page_size: int = PAGE_SIZE,
) -> dict:
    """Return one page of ledger entries, newest first, and the cursor of the next one."""
    entries = _entries(account, start, end, kind)
    after = parse_cursor(cursor)
    if after:
        entries = entries.filter(created_at__lte=after[0]).exclude(
            Q(created_at=after[0]) & Q(pk__gte=after[1])
        )
    rows = list(entries.order_by("-created_at", "-pk")[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    return {
        "entries": rows,
        "next_cursor": make_cursor(rows[-1].created_at, rows[-1].pk) if more else "",
        "is_first_page": after is None,
    }


def ledger_csv_rows(
    *, account: Account, start: date | None = None, end: date | None = None, kind: str = ""
) -> Iterator[list]:
    """Yield the entries as CSV rows, oldest first, reading them in chunks."""
    yield CSV_HEADER
    rows = (
        _entries(account, start, end, kind)
        .order_by("created_at", "pk")
        .values_list(
            "created_at", "kind", "description", "amount_micros", "balance_after_micros", "reason"
        )
    )
    for created_at, kind_, description, amount, balance, reason in rows.iterator(chunk_size=5000):
        yield [
            created_at.isoformat(),
            kind_,
            description,
            micros_to_api(amount),
            micros_to_api(balance),
            reason,
        ]
