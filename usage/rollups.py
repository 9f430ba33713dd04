"""Additive rollups, maintained in the same transaction as rating.

Two tables are kept this way: the daily `usage.UsageRollup` (dashboards) and the per-account
`billing.UnbilledLine` (what the next invoice or statement will say). Rating collects deltas and
writes each table with one upsert statement that adds to existing rows (`INSERT ... ON CONFLICT
DO UPDATE SET x = x + excluded.x`), which PostgreSQL and SQLite both support. Rows of one
account are only written under that account's lock.
"""

from collections import defaultdict
from datetime import UTC, date, datetime

from django.db import connection

from billing.models import UnbilledLine
from usage.models import UsageRollup


def rollup_day(moment: datetime) -> date:
    """Return the UTC day of a moment: periods are UTC, whatever offset the platform reported."""
    return moment.astimezone(UTC).date()


class AdditiveRows:
    """Deltas keyed by a table's unique columns, written with one additive upsert."""

    key_columns: tuple[str, ...] = ()
    summed: tuple[str, ...] = ()
    table: str = ""

    def __init__(self):
        self._rows: dict[tuple, dict[str, int]] = defaultdict(lambda: dict.fromkeys(self.summed, 0))

    def _add(self, key: tuple, amounts: dict[str, int]) -> None:
        row = self._rows[key]
        for name, value in amounts.items():
            row[name] += value

    def __bool__(self):
        return bool(self._rows)

    def write(self) -> None:
        if not self._rows:
            return
        columns = (*self.key_columns, *self.summed)
        placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
        updates = ", ".join(f"{c} = {self.table}.{c} + excluded.{c}" for c in self.summed)
        params: list = []
        # A fixed row order keeps concurrent writers from deadlocking on shared rows.
        for key, amounts in sorted(self._rows.items(), key=lambda kv: str(kv[0])):
            params.extend(key)
            params.extend(amounts[c] for c in self.summed)
        sql = (
            f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES "  # noqa: S608 - our names  # nosec B608
            + ", ".join([placeholders] * len(self._rows))
            + f" ON CONFLICT ({', '.join(self.key_columns)}) DO UPDATE SET {updates}"  # nosec B608
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        self._rows.clear()


class RollupDeltas(AdditiveRows):
    key_columns = ("account_id", "day", "is_line", "component", "provider", "model")
    summed = (
        "items",
        "quantity",
        "output_tokens",
        "allowance_seconds",
        "cost_micros",
        "savings_micros",
        "refunded_micros",
    )
    table = UsageRollup._meta.db_table

    def add(
        self,
        *,
        account_id: int,
        day: date,
        component: str,
        is_line: bool = False,
        provider: str = "",
        model: str = "",
        **amounts: int,
    ) -> None:
        self._add((account_id, day, is_line, component, provider[:50], model[:100]), amounts)


class UnbilledDeltas(AdditiveRows):
    key_columns = ("account_id", "component", "provider", "model")
    summed = ("items", "quantity", "amount_micros", "savings_micros")
    table = UnbilledLine._meta.db_table

    def add(
        self, *, account_id: int, component: str, provider: str = "", model: str = "", **amounts
    ) -> None:
        self._add((account_id, component, provider[:50], model[:100]), amounts)

    def total_micros(self) -> int:
        return sum(row["amount_micros"] for row in self._rows.values())
