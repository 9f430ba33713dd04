"""Emitting an event: the outbox row and its deliveries, in the transaction of the cause.

`emit` writes the event and one delivery per subscribed, enabled endpoint with the caller's
change, and queues the deliveries only when that transaction commits: a change that rolls back
sends nothing, and a committed one always leaves pending deliveries that the sweep finds even
if the queueing is lost.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from accounts.models import Account, new_public_id
from webhooks.delivery import RETRY_FOR, queue_deliveries
from webhooks.event_types import EVENT_TYPES
from webhooks.models import Delivery, OutboundEvent, WebhookEndpoint


def customer_ids(account: Account) -> dict[str, str | None]:
    """Both ids of a customer, as every event's data names it."""
    return {"customer": account.external_id, "account": account.public_id}


@dataclass(frozen=True)
class Event:
    """One event for `emit_many`: the arguments of `emit` but `now`."""

    type: str
    data: dict
    account: Account | None


def emit(event_type: str, data: dict, *, account: Account | None, now: datetime) -> OutboundEvent:
    """Record an event of `account` (its ids are added to `data`) and deliver it after commit.

    `data` holds JSON values or what Django's encoder turns into them (datetimes, Decimals);
    money is already a decimal string of USD (billing.money.micros_to_api).
    """
    [event] = emit_many([Event(event_type, data, account)], now=now)
    return event


def emit_many(events: Sequence[Event], *, now: datetime) -> list[OutboundEvent]:
    """Record many events with one insert (period close issues thousands of invoices), and
    their deliveries with another; queue the deliveries after commit."""
    unknown = {e.type for e in events} - EVENT_TYPES.keys()
    if unknown:
        raise ValueError(f"Unknown webhook event type(s) {sorted(unknown)}")
    rows = []
    for event in events:
        data = event.data
        if event.account is not None:
            data = {**customer_ids(event.account), **data}
        event_id = new_public_id("evt")
        body = {"id": event_id, "type": event.type, "created_at": now, "data": data}
        rows.append(
            OutboundEvent(
                event_id=event_id,
                type=event.type,
                account=event.account,
                created_at=now,
                payload=json.loads(json.dumps(body, cls=DjangoJSONEncoder)),
            )
        )
    rows = OutboundEvent.objects.bulk_create(rows, batch_size=1000)
    endpoints = list(WebhookEndpoint.objects.filter(enabled=True))
    deliveries = Delivery.objects.bulk_create(
        (
            Delivery(
                event=row,
                endpoint=endpoint,
                created_at=now,
                next_attempt_at=now,
                retry_until=now + RETRY_FOR,
            )
            for row in rows
            for endpoint in endpoints
            if subscribes(endpoint, row.type)
        ),
        batch_size=1000,
    )
    if deliveries:
        ids = [d.pk for d in deliveries]
        transaction.on_commit(lambda: queue_deliveries(ids))
    return rows


def retract(*, account: Account, types: Sequence[str], now: datetime) -> None:
    """Withdraw the account's events of these types recorded at this very instant, before
    they were sent (billing.alerts.balance: a balance that touches zero and rises again
    within one period close is no crossing)."""
    OutboundEvent.objects.filter(account=account, type__in=types, created_at=now).delete()


def subscribes(endpoint: WebhookEndpoint, event_type: str) -> bool:
    """Whether the endpoint receives this type: it listed it, or listed none (all types)."""
    return not endpoint.event_types or event_type in endpoint.event_types
