"""The usage page's breakdowns (SPEC D2): by date, component, provider and model, from rollups.

A selector over the daily item rollups (`is_line` false: one row per account, day, component,
provider and model), so a range of a year reads a few thousand rows at most whatever the number
of calls. CSV rows are produced here too, so the page and the export always agree.
"""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import QuerySet, Sum

from accounts.models import Account
from billing.money import micros_to_api
from usage.models import UsageRollup

MAX_RANGE_DAYS = 400
COMPONENT_LABELS = {
    "call": "Calls",
    "chat": "Chat",
    "sms": "SMS",
    "llm": "LLM requests",
    "embedding": "Embeddings",
    "flex": "Flex requests",
}
# What `quantity` counts on an item rollup of each component.
QUANTITY_UNITS = {
    "call": "seconds",
    "chat": "messages",
    "sms": "messages",
    "llm": "input tokens",
    "embedding": "input tokens",
    "flex": "requests",
}


@dataclass(frozen=True)
class UsageFilter:
    start: date
    end: date  # inclusive
    component: str = ""
    provider: str = ""
    model: str = ""

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _rows(account: Account, usage_filter: UsageFilter) -> QuerySet:
    rows = UsageRollup.objects.filter(
        account=account, is_line=False, day__gte=usage_filter.start, day__lte=usage_filter.end
    )
    for name in ("component", "provider", "model"):
        value = getattr(usage_filter, name)
        if value:
            rows = rows.filter(**{name: value})
    return rows


def filter_choices(*, account: Account, since: date) -> dict[str, list[str]]:
    """Return the components, providers and models the account used since `since`."""
    combos = (
        UsageRollup.objects.filter(account=account, is_line=False, day__gte=since)
        .values_list("component", "provider", "model")
        .distinct()
    )
    components, providers, models = set(), set(), set()
    for component, provider, model in combos:
        components.add(component)
        if provider:
            providers.add(provider)
        if model:
            models.add(model)
    return {
        "components": [(c, COMPONENT_LABELS.get(c, c)) for c in sorted(components)],
        "providers": sorted(providers),
        "models": sorted(models),
    }


def _blank() -> dict:
    return {
        "items": 0,
        "seconds": 0,
        "messages": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_micros": 0,
        "refunded_micros": 0,
        "savings_micros": 0,
    }


def _add(total: dict, row: dict) -> None:
    component = row["component"]
    total["items"] += row["items"] or 0
    quantity = row["quantity"] or 0
    if component == "call":
        total["seconds"] += quantity
    elif component in ("chat", "sms"):
        total["messages"] += quantity
    elif component in ("llm", "embedding"):
        total["input_tokens"] += quantity
    total["output_tokens"] += row["output_tokens"] or 0
    total["cost_micros"] += row["cost"] or 0
    total["refunded_micros"] += row["refunded"] or 0
    total["savings_micros"] += row["savings"] or 0


def _finish(total: dict) -> dict:
    total["minutes"] = round(total["seconds"] / 60, 1)
    total["net_micros"] = total["cost_micros"] - total["refunded_micros"]
    return total


def usage_report(*, account: Account, usage_filter: UsageFilter) -> dict:
    """Return totals by day, component, provider and model, and the charts' data."""
    rows = list(
        _rows(account, usage_filter)
        .values("day", "component", "provider", "model")
        .annotate(
            items=Sum("items"),
            quantity=Sum("quantity"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_micros"),
            refunded=Sum("refunded_micros"),
            savings=Sum("savings_micros"),
        )
        .order_by()
    )
    by_day: dict[date, dict] = {
        usage_filter.start + timedelta(days=n): _blank() for n in range(usage_filter.days)
    }
    by_component: dict[str, dict] = defaultdict(_blank)
    by_provider: dict[str, dict] = defaultdict(_blank)
    by_model: dict[tuple[str, str, str], dict] = defaultdict(_blank)
    cost_by_component_day: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    total = _blank()
    for row in rows:
        for bucket in (
            by_day[row["day"]],
            by_component[row["component"]],
            by_provider[row["provider"] or "—"],
            by_model[(row["component"], row["provider"], row["model"])],
            total,
        ):
            _add(bucket, row)
        cost_by_component_day[row["component"]][row["day"]] += (row["cost"] or 0) - (
            row["refunded"] or 0
        )
    days = sorted(by_day)
    models = sorted(by_model.items(), key=lambda kv: -kv[1]["cost_micros"])
    return {
        "filter": usage_filter,
        "total": _finish(total),
        "by_day": [{"day": d, **_finish(by_day[d])} for d in reversed(days)],
        "by_component": [
            {"component": c, "label": COMPONENT_LABELS.get(c, c), **_finish(t)}
            for c, t in sorted(by_component.items(), key=lambda kv: -kv[1]["cost_micros"])
        ],
        "by_provider": [
            {"provider": p, **_finish(t)}
            for p, t in sorted(by_provider.items(), key=lambda kv: -kv[1]["cost_micros"])
        ],
        "by_model": [
            {
                "component": c,
                "label": COMPONENT_LABELS.get(c, c),
                "provider": p,
                "model": m,
                **_finish(t),
            }
            for (c, p, m), t in models
        ],
        "chart": {
            "labels": [d.isoformat() for d in days],
            "series": [
                {
                    "label": COMPONENT_LABELS.get(c, c),
                    "cost_micros": [per_day.get(d, 0) for d in days],
                }
                for c, per_day in sorted(cost_by_component_day.items())
            ],
            "models": {
                "labels": [(m or COMPONENT_LABELS.get(c, c)) for (c, _, m), _ in models[:8]],
                "cost_micros": [t["cost_micros"] - t["refunded_micros"] for _, t in models[:8]],
            },
        },
    }


CSV_HEADER = [
    "date",
    "component",
    "provider",
    "model",
    "items",
    "quantity",
    "unit",
    "output_tokens",
    "cost_usd",
    "refunded_usd",
    "savings_usd",
]


def usage_csv_rows(*, account: Account, usage_filter: UsageFilter) -> Iterator[list]:
    """Yield the CSV export of the filtered rollups: a header, then one row per day and model."""
    yield CSV_HEADER
    rows = (
        _rows(account, usage_filter)
        .order_by("day", "component", "provider", "model")
        .values_list(
            "day",
            "component",
            "provider",
            "model",
            "items",
            "quantity",
            "output_tokens",
            "cost_micros",
            "refunded_micros",
            "savings_micros",
        )
    )
    for day, component, provider, model, items, quantity, out, cost, refunded, savings in rows:
        yield [
            day.isoformat(),
            component,
            provider,
            model,
            items,
            quantity,
            QUANTITY_UNITS.get(component, ""),
            out,
            micros_to_api(cost),
            micros_to_api(refunded),
            micros_to_api(savings),
        ]
