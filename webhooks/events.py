"""Emitting an event: the outbox row and its deliveries, in the transaction of the cause.

`emit` writes the event and one delivery per subscribed, enabled endpoint with the caller's
change, and queues the deliveries only when that transaction commits: a change that rolls back
sends nothing, and a committed one always leaves pending deliveries that the sweep finds even
if the queueing is lost.
"""

import json
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


def emit(event_type: str, data: dict, *, account: Account | None, now: datetime) -> OutboundEvent:
    """Record an event of `account` (its ids are added to `data`) and deliver it after commit.

    `data` holds JSON values or what Django's encoder turns into them (datetimes, Decimals);
    money is already a decimal string of USD (billing.money.micros_to_api).
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown webhook event type {event_type!r}")
    if account is not None:
        data = {**customer_ids(account), **data}
    event_id = new_public_id("evt")
    body = {"id": event_id, "type": event_type, "created_at": now, "data": data}
    event = OutboundEvent.objects.create(
        event_id=event_id,
        type=event_type,
        account=account,
        created_at=now,
        payload=json.loads(json.dumps(body, cls=DjangoJSONEncoder)),
    )
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(enabled=True)
        if subscribes(endpoint, event_type)
    ]
    if endpoints:
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                event=event,
                endpoint=e,
                created_at=now,
                next_attempt_at=now,
                retry_until=now + RETRY_FOR,
            )
            for e in endpoints
        )
        ids = [d.pk for d in deliveries]
        transaction.on_commit(lambda: queue_deliveries(ids))
    return event


def subscribes(endpoint: WebhookEndpoint, event_type: str) -> bool:
    """Whether the endpoint receives this type: it listed it, or listed none (all types)."""
    return not endpoint.event_types or event_type in endpoint.event_types
