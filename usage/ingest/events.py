"""Batches of usage events from the platform: chat, SMS, LLM and embedding requests (U5-U10).

Each event is claimed by its operator id (unique constraint): the same id with the same content
is a duplicate and charged once; with other content it is refused (409). A batch is handled per
account, in primary-key order, one transaction and one row lock per account.
"""

import itertools
from collections import Counter, defaultdict
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import Account, User
from billing.db.bulk_insert import allocate_ids, copy_available, copy_insert
from billing.ledger.locks import LockedAccount
from billing.ledger.posting import Posting
from billing.models import EntryKind, LedgerEntry, Subscription
from billing.money import round_micros
from billing.payments.refunds import credit_back
from billing.plans.rates import ModelCatalog
from usage.charging.lock import lock_for_charge
from usage.charging.refunds import record_refund
from usage.charging.rollups import rollup_day
from usage.charging.session import ChargeSession, Pricing
from usage.ingest.fingerprints import event_hash
from usage.ingest.validation import moment_problem
from usage.models import EventType, UsageEvent
from usage.rating.rules import Rating, rate_chat, rate_commission, rate_sms, rate_tokens
from usage.reads.events import stored_events, subscriptions_by_public_id
from usage.reports import (
    MAX_EVENT_QUANTITIES,
    MAX_FLEX_PRICE_USD,
    MAX_USAGE_DEBT_MICROS,
    EventReport,
    EventResult,
    UsageError,
)

MAX_BATCH = 1000
EVENT_TYPES = frozenset(EventType.values)  # EventType.values builds a new list on every read


def _problem(report: EventReport, now: datetime) -> str | None:
    if not report.id or len(report.id) > 100:
        return "id must be 1 to 100 characters"
    if report.type not in EVENT_TYPES:
        return f"unknown event type '{report.type}'"
    problem = moment_problem(name="occurred_at", moment=report.occurred_at, now=now)
    if problem:
        return problem
    for name, maximum in MAX_EVENT_QUANTITIES.items():
        value = getattr(report, name)
        if value is not None and value < 0:
            return f"{name} cannot be negative"
        if value is not None and value > maximum:
            return f"{name} is at most {maximum:,} in one event"
    for name in ("standard_price", "flex_price"):
        price = getattr(report, name)
        if price is not None and price > MAX_FLEX_PRICE_USD:
            return f"{name} is at most {MAX_FLEX_PRICE_USD:,} USD"
    return None


def ingest_events(*, reports: list[EventReport], now: datetime) -> list[EventResult]:
    """Rate and charge a batch of events; return one result per event, in order."""
    if len(reports) > MAX_BATCH:
        raise UsageError(f"At most {MAX_BATCH} events per request.", param="events")
    results: dict[int, EventResult] = {}
    seen: dict[str, tuple[int, str]] = {}
    by_account: dict[str, list[tuple[int, EventReport, str]]] = defaultdict(list)
    for index, report in enumerate(reports):
        problem = _problem(report, now)
        if problem:
            results[index] = EventResult(report.id, "rejected", reason=problem, code=400)
            continue
        digest = event_hash(report)
        if report.id in seen:
            # The same id twice in one batch: a repeat or a contradiction, like across batches.
            first_digest = seen[report.id][1]
            results[index] = (
                EventResult(report.id, "duplicate", reason="repeated in this batch")
                if first_digest == digest
                else EventResult(
                    report.id, "rejected", reason="id reused with other content", code=409
                )
            )
            continue
        seen[report.id] = (index, digest)
        by_account[report.account].append((index, report, digest))

    accounts = subscriptions_by_public_id(list(by_account))
    catalog = ModelCatalog(
        models={report.model for items in by_account.values() for _, report, _ in items}
    )
    for public_id in sorted(by_account, key=lambda p: accounts[p][0].pk if p in accounts else 0):
        items = by_account[public_id]
        if public_id not in accounts:
            for index, report, _ in items:
                results[index] = EventResult(
                    report.id, "rejected", reason=f"no account '{public_id}'", code=404
                )
            continue
        for attempt in itertools.count():
            try:
                with transaction.atomic():
                    results.update(
                        _ingest_for_account(
                            subscription=_subscription(*accounts[public_id]),
                            items=items,
                            now=now,
                            catalog=catalog,
                        )
                    )
                break
            except IntegrityError:
                # Another batch claimed some of these ids for another account and committed
                # while this one ran: the next pass sees those claims and answers 409 for
                # them. Several batches may do so in turn, but each failed pass meets at least
                # one more committed claim, so at most one pass per item fails.
                if attempt >= len(items):
                    raise
    # Results for duplicates within this batch take the cost of the first occurrence; a repeat
    # of an event that was refused is refused the same way, not reported as a duplicate.
    ordered = []
    for index, report in enumerate(reports):
        result = results[index]
        if result.status == "duplicate" and result.reason == "repeated in this batch":
            first = results[seen[report.id][0]]
            if first.status == "rejected":
                result = first
            else:
                result = EventResult(report.id, "duplicate", cost_micros=first.cost_micros)
        ordered.append(result)
    return ordered


def _rate(
    report: EventReport, pricing: Pricing, session: ChargeSession | None
) -> tuple[Rating, str, str]:
    """Return the rating, the ledger kind and the rollup component of one event.

    Chat messages carry from event to event and use the allowance, so they are rated in the
    charge `session` (under the lock); every other type needs only the prices.
    """
    plan = pricing.plan
    if report.type == EventType.CHAT:
        if session is None:
            raise ValueError("Chat is rated under the account's lock, in its charge session.")
        rating = rate_chat(
            report=report,
            plan=plan,
            card=pricing.card,
            carries=session.carries,
            allowance_remaining_seconds=session.allowance_remaining_seconds(at=report.occurred_at),
        )
        return rating, EntryKind.USAGE, "chat"
    if report.type == EventType.SMS:
        return rate_sms(report=report, card=pricing.card), EntryKind.USAGE, "sms"
    if report.type == EventType.LLM and plan.commission_percent is not None:
        return rate_commission(report=report, plan=plan), EntryKind.COMMISSION, "flex"
    if plan.commission_percent is not None:
        # A commission plan runs on the customer's own provider keys: tokens are never billed.
        free = Rating(
            cost_micros=0,
            billable_quantity=int(report.input_tokens or 0),
            explanation={
                "rule": "tokens are billed by your provider on this plan",
                "cost": "0.000000",
            },
        )
        return free, EntryKind.USAGE, report.type
    return rate_tokens(report=report, catalog=pricing.catalog), EntryKind.USAGE, report.type


def _subscription(account: Account, subscription: Subscription | None) -> Subscription:
    if subscription is None:
        raise Subscription.DoesNotExist(f"Account {account.public_id} has no subscription.")
    return subscription


def _ingest_for_account(
    *,
    subscription: Subscription,
    items: list[tuple[int, EventReport, str]],
    now: datetime,
    catalog: ModelCatalog,
) -> dict[int, EventResult]:
    account_id = subscription.account_id
    # Rating that depends on nothing the account lock protects (tokens, commission, SMS: not
    # chat, whose messages carry and use the allowance) is done before taking the lock, so
    # concurrent batches of one account rate in parallel and queue only to charge.
    pricing = Pricing(subscription=subscription, catalog=catalog)
    prerated: dict[int, tuple[Rating, str, str] | UsageError] = {}
    for index, report, _ in items:
        if report.type != EventType.CHAT:
            try:
                prerated[index] = _rate(report, pricing, None)
            except UsageError as exc:
                prerated[index] = exc

    # The statement after the lock also reads grants, alert and auto-top-up settings and holds.
    locked = lock_for_charge(account_id).locked
    account = locked.account
    existing = stored_events([r.id for _, r, _ in items])
    results: dict[int, EventResult] = {}
    session = ChargeSession(locked=locked, now=now, pricing=pricing)
    # Rows as {attname: value}, not model instances: a UsageEvent() costs more than rating it.
    rows: list[dict] = []
    postings: list[Posting | None] = []
    for index, report, digest in items:
        if report.id in existing:
            owner, old_digest, cost = existing[report.id]
            if owner == account.pk and old_digest == digest:
                results[index] = EventResult(report.id, "duplicate", cost_micros=cost)
            else:
                results[index] = EventResult(
                    report.id, "rejected", reason="id reused with other content", code=409
                )
            continue
        outcome = prerated.get(index)
        if outcome is None:
            try:
                outcome = _rate(report, pricing, session)
            except UsageError as exc:
                outcome = exc
        if isinstance(outcome, UsageError):
            results[index] = EventResult(
                report.id, "rejected", reason=outcome.message, code=outcome.status
            )
            continue
        rating, kind, component = outcome
        if session.spendable_micros() - rating.cost_micros < -MAX_USAGE_DEBT_MICROS:
            # Postpaid only (a prepaid charge stops at zero): keeps the balance inside BIGINT.
            results[index] = EventResult(
                report.id,
                "rejected",
                reason="the account owes the most usage it may; pay its invoices first",
                code=402,
            )
            continue
        charged = session.charge(
            rating=rating,
            kind=kind,
            cause=None,  # set by _store when the event is its entry's only item
            description=f"{report.type} {report.id}",
            day=rollup_day(report.occurred_at),
            component=component,
            provider=report.provider,
            model=report.model,
            output_tokens=report.output_tokens or 0,
        )
        rows.append(
            {
                "event_id": report.id,
                "account_id": account.pk,
                "type": report.type,
                "occurred_at": report.occurred_at,
                "content_hash": digest,
                "provider": report.provider[:50],
                "model": report.model[:100],
                "quantity": rating.billable_quantity,
                "output_tokens": report.output_tokens or 0,
                "start_within": report.start_within[:32],
                "standard_price_micros": _micros_or_none(report.standard_price),
                "flex_price_micros": _micros_or_none(report.flex_price),
                "cost_micros": rating.cost_micros,
                "charged_micros": charged.charged_micros,
                "uncollected_micros": charged.uncollected_micros,
                "explanation": rating.explanation,
                "created_at": now,
            }
        )
        postings.append(charged.posting)
        results[index] = EventResult(report.id, "accepted", cost_micros=rating.cost_micros)
    _store(rows, postings, session)
    return results


def _store(rows: list[dict], postings: list[Posting | None], session: ChargeSession) -> None:
    """Insert the batch's events, write its charges, and link each event to its ledger entry.

    The batch's charges become one ledger entry per kind (usage.charging.session.merge_postings); an
    entry of a single event points at that event, so the events need primary keys before the
    entries are written, and the entries need theirs before the events link to them.
    """
    use_copy = copy_available()
    if use_copy:
        for row, pk in zip(rows, allocate_ids(UsageEvent, len(rows)), strict=True):
            row["id"] = pk
    else:
        events = UsageEvent.objects.bulk_create([UsageEvent(**row) for row in rows])
        for row, event in zip(rows, events, strict=True):
            row["id"] = event.pk
    per_kind = Counter(p.kind for p in postings if p is not None)
    for row, posting in zip(rows, postings, strict=True):
        if posting is not None and per_kind[posting.kind] == 1:
            posting.cause = UsageEvent(pk=row["id"])
    session.close()
    for row, posting in zip(rows, postings, strict=True):
        row["ledger_entry_id"] = posting.entry.pk if posting is not None else None
    if use_copy:
        # WARNING (locking): insert in event-id order. A batch that reuses ids another batch
        # is inserting for another account waits on the unique index for each such id; if two
        # batches took them in different orders each would wait for the other (a deadlock).
        copy_insert(UsageEvent, sorted(rows, key=lambda row: row["event_id"]))
        return
    by_entry: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        if row["ledger_entry_id"] is not None:
            by_entry[row["ledger_entry_id"]].append(row["id"])
    for entry_id, event_ids in by_entry.items():
        UsageEvent.objects.filter(pk__in=event_ids).update(ledger_entry_id=entry_id)


def _micros_or_none(value) -> int | None:
    return None if value is None else round_micros(value)


def event_component(event: UsageEvent) -> str:
    """Return the rollup component the event was charged under (as `_rate` chose it).

    Only a commission-rated request's explanation carries the plan's percentage: that one was
    counted as "flex", every other event under its type.
    """
    if event.type == EventType.LLM and "percent" in (event.explanation or {}):
        return "flex"
    return event.type


def credit_event(
    *,
    locked: LockedAccount,
    event: UsageEvent,
    amount_micros: int,
    reason: str,
    idempotency_key: str,
    now: datetime,
    actor: User | None = None,
) -> LedgerEntry:
    """Credit back `amount_micros` of an event, whole or part, as `calls.credit_call` does a
    call's: the ledger entry names the event, the event counts it as refunded, its rollup row
    (day, component, provider, model) and the next invoice count it. The caller holds the
    account's lock and has re-read `event` under it."""
    entry = credit_back(
        locked=locked,
        amount_micros=amount_micros,
        now=now,
        cause=event,
        description=f"Refund of {event.get_type_display()} event {event.event_id}",
        reason=reason,
        idempotency_key=idempotency_key,
        actor=actor,
    )
    # F(): a part refund adds to what earlier ones gave back (the model's check keeps the sum
    # within the charge).
    UsageEvent.objects.filter(pk=event.pk).update(
        refunded_micros=F("refunded_micros") + amount_micros, refunded_at=now
    )
    record_refund(
        account=locked.account,
        day=rollup_day(event.occurred_at),
        component=event_component(event),
        provider=event.provider,
        model=event.model,
        entry=entry,
    )
    return entry
