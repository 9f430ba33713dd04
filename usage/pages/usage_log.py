"""The log of calls and requests on the usage page (SPEC D2, U11), newest first.

Keyset pagination on the indexed (account, -created_at) of calls and (account, -occurred_at) of
events: a page costs the same on the first day of an account and after a million calls, where
an OFFSET would read every row before the page.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from django.db.models import Q, QuerySet

from accounts.models import Account
from billing.db.keyset import day_bounds, make_cursor, parse_cursor
from billing.money import micros_to_api
from usage.ingest.calls import call_moment
from usage.models import Call, UsageEvent
from usage.rating.explain import call_steps, event_steps

PAGE_SIZE = 50


@dataclass(frozen=True)
class LogFilter:
    kind: str  # "calls" or "events"
    start: date | None = None
    end: date | None = None  # inclusive
    status: str = ""  # calls: a status; events: a type
    model: str = ""
    refunded_only: bool = False
    cursor: str = ""


def _bounds(log_filter: LogFilter) -> tuple[datetime | None, datetime | None]:
    return day_bounds(log_filter.start, log_filter.end)


def _calls(account: Account, log_filter: LogFilter) -> QuerySet[Call]:
    calls = Call.objects.filter(account=account)
    start, end = _bounds(log_filter)
    if start:
        calls = calls.filter(created_at__gte=start)
    if end:
        calls = calls.filter(created_at__lt=end)
    if log_filter.status:
        calls = calls.filter(status=log_filter.status)
    if log_filter.model:
        calls = calls.filter(llm=log_filter.model)
    if log_filter.refunded_only:
        calls = calls.filter(refunded_micros__gt=0)
    return calls


def _events(account: Account, log_filter: LogFilter) -> QuerySet[UsageEvent]:
    events = UsageEvent.objects.filter(account=account)
    start, end = _bounds(log_filter)
    if start:
        events = events.filter(occurred_at__gte=start)
    if end:
        events = events.filter(occurred_at__lt=end)
    if log_filter.status:
        events = events.filter(type=log_filter.status)
    if log_filter.model:
        events = events.filter(model=log_filter.model)
    if log_filter.refunded_only:
        events = events.filter(refunded_micros__gt=0)
    return events


def _happened_at(call: Call) -> datetime:
    return call_moment(
        connected_at=call.connected_at,
        ended_at=call.ended_at,
        charged_at=call.charged_at or call.created_at,
    )


def log_page(*, account: Account, log_filter: LogFilter, page_size: int = PAGE_SIZE) -> dict:
    """Return one page of the log with each item's price explanation and the next cursor."""
    is_calls = log_filter.kind == "calls"
    items = _calls(account, log_filter) if is_calls else _events(account, log_filter)
    field = "created_at" if is_calls else "occurred_at"
    after = parse_cursor(log_filter.cursor)
    if after is not None:
        moment, pk = after
        # (moment, pk) < cursor, written so the index on (account, -moment) does the work.
        items = items.filter(**{f"{field}__lte": moment}).exclude(
            Q(**{field: moment}) & Q(pk__gte=pk)
        )
    rows = list(items.order_by(f"-{field}", "-pk")[: page_size + 1])
    more = len(rows) > page_size
    rows = rows[:page_size]
    entries = [
        {
            "item": row,
            # When it happened (what it was rated and counted at), not when it was reported.
            "at": _happened_at(row) if is_calls else row.occurred_at,
            "reported_at": getattr(row, field),
            "steps": call_steps(row) if is_calls else event_steps(row),
            "refunded": row.refunded_micros > 0,
        }
        for row in rows
    ]
    return {
        "kind": log_filter.kind,
        "entries": entries,
        "next_cursor": make_cursor(getattr(rows[-1], field), rows[-1].pk) if more else "",
        "is_first_page": after is None,
    }


CALL_CSV_HEADER = [
    "created_at",
    "call_id",
    "status",
    "direction",
    "llm",
    "destination",
    "billable_seconds",
    "allowance_seconds",
    "cost_usd",
    "charged_usd",
    "refunded_usd",
]
EVENT_CSV_HEADER = [
    "occurred_at",
    "event_id",
    "type",
    "provider",
    "model",
    "quantity",
    "output_tokens",
    "cost_usd",
    "charged_usd",
    "refunded_usd",
]


def log_csv_rows(*, account: Account, log_filter: LogFilter) -> Iterator[list]:
    """Yield the whole filtered log as CSV rows, oldest first, reading it in chunks."""
    if log_filter.kind == "calls":
        yield CALL_CSV_HEADER
        rows = (
            _calls(account, log_filter)
            .order_by("created_at", "pk")
            .values_list(
                "created_at",
                "call_id",
                "status",
                "direction",
                "llm",
                "destination",
                "billable_seconds",
                "allowance_seconds",
                "cost_micros",
                "charged_micros",
                "refunded_micros",
            )
        )
        for *head, cost, charged, refunded in rows.iterator(chunk_size=5000):
            yield [
                head[0].isoformat(),
                *head[1:],
                micros_to_api(cost),
                micros_to_api(charged),
                micros_to_api(refunded),
            ]
        return
    yield EVENT_CSV_HEADER
    rows = (
        _events(account, log_filter)
        .order_by("occurred_at", "pk")
        .values_list(
            "occurred_at",
            "event_id",
            "type",
            "provider",
            "model",
            "quantity",
            "output_tokens",
            "cost_micros",
            "charged_micros",
            "refunded_micros",
        )
    )
    for *head, cost, charged, refunded in rows.iterator(chunk_size=5000):
        yield [
            head[0].isoformat(),
            *head[1:],
            micros_to_api(cost),
            micros_to_api(charged),
            micros_to_api(refunded),
        ]


def default_log_kind(*, account: Account) -> str:
    """Return the log an account sees first: its calls if it has any, else its events."""
    has_calls = Call.objects.filter(account=account).exists()
    return "calls" if has_calls else "events"
