"""What an account's usage cost and how much it used over some days, from the daily rollups.

The one place that says how spend is read (docs/billing-rules.md, Budgets): money and counts
from the item rollups only (`is_line` false; line rows price the same items again and would
count them twice), billable chat minutes also from the chat line rows (an item row holds its
messages, not its minutes), the
net cost (cost less what was credited back) of the usage that occurred on the days asked for,
whatever key it came through. Days are UTC days, half-open [first_day, end_day); a billing
period [start, end) begins and ends at midnight UTC, so its days are [start.date(), end.date()).
Budgets, the run-out estimate, the dashboard and the usage API read it here; each answer is one
query, returned as plain values.
"""

from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q, Sum

from accounts.models import Account
from usage.models import UsageRollup

# The sums every spend read takes, so that each read groups them its own way and no read
# forgets to take the refunds off.
_ITEM = Q(is_line=False)
_SPEND_SUMS = {
    "cost": Sum("cost_micros", filter=_ITEM),
    "refunded": Sum("refunded_micros", filter=_ITEM),
    "call_seconds": Sum("quantity", filter=_ITEM & Q(component="call")),
    # Chat minutes (U5): the paid ones are the chat lines' quantity (seconds), the ones the
    # included allowance covered are on the chat items. The allowance counts both kinds.
    "chat_paid_seconds": Sum("quantity", filter=Q(is_line=True, component="chat")),
    "chat_allowance_seconds": Sum("allowance_seconds", filter=_ITEM & Q(component="chat")),
    "item_count": Sum("items", filter=_ITEM),
}


@dataclass(frozen=True)
class Spend:
    """The cost of some usage and what it amounted to."""

    cost_micros: int = 0
    refunded_micros: int = 0
    # Billable seconds of calls (the `quantity` of call rows; other components count other units).
    call_seconds: int = 0
    # Billable chat minutes, in seconds: every N AI messages make a minute (SPEC U5).
    chat_seconds: int = 0
    items: int = 0  # calls, messages, requests

    @property
    def minute_seconds(self) -> int:
        """Return the billable minutes of calls and chat, in seconds: what an allowance counts."""
        return self.call_seconds + self.chat_seconds

    @property
    def net_micros(self) -> int:
        """Return what the customer spent: the cost less what was credited back."""
        return self.cost_micros - self.refunded_micros


@dataclass(frozen=True)
class ComponentUsage:
    """The usage of one component (call, chat, sms, llm, embedding, flex) and its cost."""

    items: int = 0
    # Billable seconds, messages, SMS, requests or input tokens, as the component counts.
    quantity: int = 0
    output_tokens: int = 0
    allowance_seconds: int = 0
    cost_micros: int = 0
    refunded_micros: int = 0


def _spend(row: dict) -> Spend:
    return Spend(
        cost_micros=row["cost"] or 0,
        refunded_micros=row["refunded"] or 0,
        call_seconds=row["call_seconds"] or 0,
        chat_seconds=(row["chat_paid_seconds"] or 0) + (row["chat_allowance_seconds"] or 0),
        items=row["item_count"] or 0,
    )


def _item_rows(*, first_day: date, end_day: date):
    return UsageRollup.objects.filter(is_line=False, day__gte=first_day, day__lt=end_day)


def _spend_rows(*, first_day: date, end_day: date):
    # Item and line rows: `_SPEND_SUMS` says which kind each sum reads.
    return UsageRollup.objects.filter(day__gte=first_day, day__lt=end_day)


def spend_between(*, account: Account, first_day: date, end_day: date) -> Spend:
    """Return the spend of the account's usage on the days [first_day, end_day)."""
    totals = (
        _spend_rows(first_day=first_day, end_day=end_day)
        .filter(account=account)
        .aggregate(**_SPEND_SUMS)
    )
    return _spend(totals)


def period_spend(*, account: Account, start: datetime, end: datetime) -> Spend:
    """Return the spend of the account's usage that occurred in the period [start, end)."""
    return spend_between(account=account, first_day=start.date(), end_day=end.date())


def period_spend_by_account(*, periods: dict[int, tuple[datetime, datetime]]) -> dict[int, Spend]:
    """Return the spend of each account (by id) in its own period [start, end), in one query.

    An account without usage in its period gets an empty `Spend`.
    """
    if not periods:
        return {}
    condition = Q()
    for account_id, (start, end) in periods.items():
        condition |= Q(account_id=account_id, day__gte=start.date(), day__lt=end.date())
    rows = (
        UsageRollup.objects.filter(condition)
        .values("account_id")
        .annotate(**_SPEND_SUMS)
        .order_by()
    )
    found = {row["account_id"]: _spend(row) for row in rows}
    return {account_id: found.get(account_id, Spend()) for account_id in periods}


def daily_spend(*, account: Account, first_day: date, end_day: date) -> dict[date, Spend]:
    """Return the spend of each day in [first_day, end_day) that had usage."""
    rows = (
        _spend_rows(first_day=first_day, end_day=end_day)
        .filter(account=account)
        .values("day")
        .annotate(**_SPEND_SUMS)
        .order_by()
    )
    return {row["day"]: _spend(row) for row in rows}


def period_usage_by_component(
    *, account: Account, start: datetime, end: datetime
) -> dict[str, ComponentUsage]:
    """Return the usage of each component the account used in the period [start, end)."""
    rows = (
        _item_rows(first_day=start.date(), end_day=end.date())
        .filter(account=account)
        .values("component")
        .annotate(
            item_count=Sum("items"),
            total_quantity=Sum("quantity"),
            total_output_tokens=Sum("output_tokens"),
            total_allowance_seconds=Sum("allowance_seconds"),
            cost=Sum("cost_micros"),
            refunded=Sum("refunded_micros"),
        )
        .order_by()
    )
    return {
        row["component"]: ComponentUsage(
            items=row["item_count"] or 0,
            quantity=row["total_quantity"] or 0,
            output_tokens=row["total_output_tokens"] or 0,
            allowance_seconds=row["total_allowance_seconds"] or 0,
            cost_micros=row["cost"] or 0,
            refunded_micros=row["refunded"] or 0,
        )
        for row in rows
    }
