"""Which price applies: an account's rate card and the model catalog at a moment (U3, U7, S1)."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from accounts.models import Account
from billing.db.raw_rows import Columns, column_in
from billing.models import ModelPrice, Plan, Rate, RateComponent


@dataclass(frozen=True)
class AppliedRate:
    component: str
    key: str
    price: Decimal  # USD per minute (per message for SMS)
    custom: bool  # an account override, not the plan's


class RateCard:
    """All rates of one plan and one account, loaded once, resolved in memory.

    An account's custom rate wins over the plan's for the same component and key; among rates of
    one owner, the latest whose `effective_from` is not after the moment applies.
    """

    def __init__(self, *, plan: Plan, account: Account | None):
        self._rates: dict[tuple[str, str], list[Rate]] = {}
        for rate in _rates_of(plan_id=plan.pk, account_id=account.pk if account else None):
            self._rates.setdefault((rate.component, rate.key), []).append(rate)

    def rate(self, component: str, key: str, at: datetime) -> AppliedRate | None:
        candidates = [r for r in self._rates.get((component, key), ()) if r.effective_from <= at]
        if not candidates:
            return None
        # Account overrides first, then the newest.
        best = min(candidates, key=lambda r: (r.account_id is None, -r.effective_from.timestamp()))
        return AppliedRate(component, key, best.price, custom=best.account_id is not None)

    def has_component(self, component: str) -> bool:
        return any(c == component for c, _ in self._rates)

    def keys(self, component: str) -> list[str]:
        return sorted({k for c, k in self._rates if c == component})

    def destination(self, number: str, at: datetime) -> AppliedRate | None:
        """Return the surcharge of the longest destination prefix that matches the number."""
        number = number.strip()
        best = None
        for prefix in self.keys(RateComponent.DESTINATION):
            if number.startswith(prefix) and (best is None or len(prefix) > len(best)):
                rate = self.rate(RateComponent.DESTINATION, prefix, at)
                if rate is not None:
                    best = prefix
                    applied = rate
        return applied if best is not None else None


class ModelCatalog:
    """The model price catalog, loaded once per batch; `price` answers at a moment.

    `models` limits it to the prices of those models, for a batch that knows which it needs.
    """

    def __init__(self, *, models: Iterable[str] | None = None):
        self._prices: dict[str, list[ModelPrice]] = {}
        for price in _model_prices(None if models is None else sorted(set(models))):
            self._prices.setdefault(price.model, []).append(price)

    def price(self, *, model: str, provider: str, at: datetime) -> ModelPrice | None:
        for price in self._prices.get(model, ()):
            if provider and price.provider != provider.lower():
                continue
            if price.effective_from <= at:
                return price
        return None


_RATE = Columns(Rate, "r")


def _rates_of(*, plan_id: int, account_id: int | None) -> list[Rate]:
    """Return the plan's rates and the account's own, newest first.

    Raw SQL: every call report reads its rate card, and compiling the queryset cost more than
    the query.
    """
    sql = f"SELECT {_RATE.sql} FROM {Rate._meta.db_table} r WHERE r.plan_id = %s"  # noqa: S608  # nosec B608 - model names
    params = [plan_id]
    if account_id is not None:
        sql += " OR r.account_id = %s"
        params.append(account_id)
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY r.effective_from DESC", params)
        return [_RATE.build(row) for row in cursor.fetchall()]


_PRICE = Columns(ModelPrice, "m")


def _model_prices(models: list[str] | None) -> list[ModelPrice]:
    """Return the prices of `models` (all if None), newest first.

    Raw SQL: this runs for every batch of usage events, where building the queryset cost
    more than the query.
    """
    if models == []:
        return []
    sql = f"SELECT {_PRICE.sql} FROM {ModelPrice._meta.db_table} m"  # noqa: S608  # nosec B608 - model names
    params = None
    if models is not None:
        condition, params = column_in("m.model", models)
        sql += f" WHERE {condition}"
    with connection.cursor() as cursor:
        cursor.execute(sql + " ORDER BY m.effective_from DESC", params)
        return [_PRICE.build(row) for row in cursor.fetchall()]
