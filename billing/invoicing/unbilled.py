"""What the next invoice or statement will say (`billing.UnbilledLine`), kept additively.

Usage charging and refunds add to these rows with one upsert per batch (billing.db.upserts),
under the account's lock, in the transaction that charged the usage.
"""

from billing.db.upserts import AdditiveRows
from billing.models import UnbilledLine


class UnbilledDeltas(AdditiveRows):
    key_columns = ("account_id", "component", "provider", "model")
    summed = ("items", "quantity", "amount_micros", "savings_micros")
    model = UnbilledLine

    def add(
        self, *, account_id: int, component: str, provider: str = "", model: str = "", **amounts
    ) -> None:
        self._add((account_id, component, provider[:50], model[:100]), amounts)

    def total_micros(self) -> int:
        return sum(row["amount_micros"] for row in self._rows.values())
