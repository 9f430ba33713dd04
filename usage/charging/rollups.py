"""The daily usage rollups (`usage.UsageRollup`, read by the dashboard), kept in the same
transaction as rating with one additive upsert per batch (billing.db.upserts).

Rows of one account are only written under that account's lock.
"""

from datetime import UTC, date, datetime

from billing.db.upserts import AdditiveRows
from usage.models import UsageRollup


def rollup_day(moment: datetime) -> date:
    """Return the UTC day of a moment: periods are UTC, whatever offset the platform reported."""
    return moment.astimezone(UTC).date()


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
    model = UsageRollup

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
