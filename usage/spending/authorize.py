"""Spending control: may this customer spend now, and for how long? (SPEC G1, G3)"""

import math
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from django.db import transaction

from accounts.models import Account
from billing.ledger.expiry import write_off_expired_credit
from billing.ledger.locks import lock_account
from billing.models import Allowance, Plan, RateComponent, Subscription
from billing.notifications.links import billing_page_url
from billing.payments.cards import has_usable_card
from billing.periods import current_period, period_containing
from billing.plans.allowances import current_allowance, period_included_seconds
from billing.plans.rates import RateCard
from usage.models import Direction
from usage.rating.destinations import destination_e164
from usage.rating.rules import FLEX_DURATION, FREE_ROUTING
from usage.reads.keys import LoadedKey
from usage.reports import Authorization, PaymentRequired, UsageError
from usage.spending.budgets import budget_refusal, reached_hard_budget
from usage.spending.holds import held_allowance_seconds, open_hold, place_hold

FEATURES = ("call", "chat", "sms", "llm", "embedding")
DIRECTIONS = frozenset(Direction.values)
# Longest call an authorization allows when credit is not the limit (postpaid, allowance), and
# so the most credit one call's hold takes (G3).
MAX_CALL_SECONDS = 4 * 3600


def is_billable(
    *,
    plan: Plan,
    card: RateCard,
    feature: str,
    provider: str,
    start_within: str,
    direction: str = Direction.INBOUND,
    at,
):
    """Return whether a request of this kind costs anything on the plan (free usage stays on).

    The answer follows how the item would be rated (usage.ingest.events, usage.rating), so that
    spending control pauses exactly what would be charged. It takes every field that makes an
    item free before it happens: a call's direction (outbound calls free on credits-monthly,
    as `call_seconds` rates them), a request's routing and provider, the plan's SMS price.
    """
    if feature == "call" and direction == Direction.OUTBOUND and plan.outbound_calls_free:
        return False
    commission_plan = plan.commission_percent is not None
    if feature == "llm" and commission_plan:
        routing = start_within.strip().lower()
        if not routing or routing in FREE_ROUTING:
            return False
        if not FLEX_DURATION.match(routing):
            raise UsageError(
                "start_within is default, priority, auto or a duration like 00h-00m-30s.",
                param="start_within",
            )
        return provider.strip().lower() not in plan.excluded_providers
    if feature == "sms":
        rate = card.rate(RateComponent.SMS, "", at)
        return rate is not None and rate.price > 0
    if feature == "chat":
        return bool(plan.chat_messages_per_minute)
    if commission_plan:
        # The customer's own provider keys pay for tokens (embeddings here): only the
        # commission on flex requests is billed, and calls only if the plan prices them.
        return feature == "call" and _calls_priced(card=card, at=at)
    return True


def _calls_priced(*, card: RateCard, at) -> bool:
    """Return whether any rate a call can be billed at is above zero."""
    components = (
        RateComponent.CALL,
        RateComponent.LLM,
        RateComponent.VOICE_ENGINE,
        RateComponent.DESTINATION,
    )
    for component in components:
        for key in card.keys(component):
            rate = card.rate(component, key, at)
            if rate is not None and rate.price > 0:
                return True
    return False


def call_price_per_minute(*, card: RateCard, model: str, destination: str, at) -> Decimal:
    """The per-minute price an authorization reserves against: the call's rates and, when the
    platform names the destination (E.164), its surcharge."""
    surcharge = card.destination(destination, at) if destination else None
    extra = surcharge.price if surcharge else Decimal(0)
    return _call_base_price(card=card, model=model, at=at) + extra


def _call_base_price(*, card: RateCard, model: str, at) -> Decimal:
    if card.has_component(RateComponent.LLM):
        llm = card.rate(RateComponent.LLM, model, at) if model else None
        if llm is None:  # unknown until the call reports: reserve at the dearest LLM
            prices = [card.rate(RateComponent.LLM, k, at) for k in card.keys(RateComponent.LLM)]
            llm_price = max((r.price for r in prices if r is not None), default=Decimal(0))
        else:
            llm_price = llm.price
        engine = card.rate(RateComponent.VOICE_ENGINE, "", at)
        return llm_price + (engine.price if engine else Decimal(0))
    flat = card.rate(RateComponent.CALL, "", at)
    return flat.price if flat else Decimal(0)


def authorize(
    *,
    key: LoadedKey,
    feature: str,
    model: str,
    provider: str,
    start_within: str,
    call_id: str,
    now: datetime,
    direction: str = Direction.INBOUND,
    destination: str = "",
) -> Authorization:
    """Answer whether the key's account may start a call or request; hold credit for calls.

    `key` is the customer key as this request's key query read it (usage.reads.keys), with
    its account, subscription and plan, all fresh.
    """
    if feature not in FEATURES:
        raise UsageError(f"feature is one of {', '.join(FEATURES)}.", param="feature")
    if direction not in DIRECTIONS:
        raise UsageError("direction is inbound or outbound.", param="direction")
    destination = destination_e164(destination)
    api_key, account, subscription = key.api_key, key.account, key.subscription
    if subscription is None:
        raise Subscription.DoesNotExist(f"Account {account.public_id} has no subscription.")
    plan = subscription.plan
    if key.has_expired_credit(now=now):
        # Credit past its expiry is still in the cached balance until the hourly job runs, and
        # is never spendable: the first authorization to find it writes it off under the lock,
        # and answers from the balance without it (L5).
        written_off = write_off_expired_credit(account_id=account.pk, now=now)
        account.balance_micros = written_off.balance_micros
        account.held_micros = written_off.held_micros
    # Rates are read only for the features whose answer depends on them (SMS, calls).
    card = _LazyRateCard(plan=plan, account=account)
    billable = is_billable(
        plan=plan,
        card=card,
        feature=feature,
        provider=provider,
        start_within=start_within,
        direction=direction,
        at=now,
    )
    if not billable:
        # Free usage is allowed whatever the balance, and a free call holds nothing.
        max_seconds = MAX_CALL_SECONDS if feature == "call" else None
        return Authorization(
            allowed=True,
            balance_micros=account.balance_micros,
            max_seconds=max_seconds,
            billable=False,
        )
    if key.hard_budget_possible(period_start=current_period(subscription=subscription, now=now)[0]):
        budget = reached_hard_budget(
            account=account, api_key=api_key, subscription=subscription, now=now
        )
        if budget is not None:
            raise PaymentRequired(budget_refusal(budget))
    if not account.is_prepaid:
        if account.past_due_since is not None:
            raise PaymentRequired(
                "Your account is past due: an invoice could not be charged. Update your card at "
                f"{billing_page_url(account)} to continue."
            )
        # A postpaid subaccount uses first and pays later: without a card to pay with (its
        # own or its parent's) that usage would be value from nothing.
        if account.parent_id is not None and not has_usable_card(account=account, now=now):
            raise PaymentRequired(
                "This subaccount is billed after use and has no saved card, nor has its parent "
                f"account. Add a card at {billing_page_url(account)} to continue."
            )
        max_seconds = MAX_CALL_SECONDS if feature == "call" else None
        return Authorization(True, account.balance_micros, max_seconds=max_seconds)
    if feature != "call":
        # Nothing is held for a request, so no lock is needed: the balance the key query read
        # in this request answers, and the charge itself never overdraws (usage.charging).
        if account.balance_micros - account.held_micros > 0:
            return Authorization(True, account.balance_micros)
        if feature == "chat" and _allowance_left(
            account=account, subscription=subscription, now=now
        ):
            return Authorization(True, account.balance_micros)
        raise PaymentRequired(_no_credit_message(account))
    with transaction.atomic():
        locked = lock_account(account.pk)
        account = locked.account
        existing = open_hold(account=account, call_id=call_id)
        if existing is not None:
            # A repeated authorization of the call: its hold already covers this promise, and
            # answering from what is left would promise seconds nothing holds.
            return Authorization(
                True,
                account.balance_micros,
                max_seconds=existing.max_seconds,
                reservation_id=existing.public_id,
            )
        allowance = current_allowance(account=account, subscription=subscription, now=now)
        # Included seconds already promised to calls in progress are not there to promise again.
        allowance_seconds = (
            max(allowance.remaining_seconds - held_allowance_seconds(account=account), 0)
            if allowance
            else 0
        )
        available = account.balance_micros - account.held_micros
        per_minute = call_price_per_minute(card=card, model=model, destination=destination, at=now)
        # WARNING (money): an exact fraction, not a Decimal: 0.10 USD/min is 1666.66...67 micros
        # per second as a Decimal, and 300 s of it would hold 500,001 micros, not 500,000.
        micros_per_second = Fraction(per_minute) * 1_000_000 / 60
        if micros_per_second > 0:
            affordable = int(max(available, 0) / micros_per_second)
        else:
            affordable = MAX_CALL_SECONDS
        max_seconds = min(allowance_seconds + affordable, MAX_CALL_SECONDS)
        if max_seconds < 1:
            raise PaymentRequired(_no_credit_message(account))
        # WARNING (money, G3): hold every second the answer allows, included seconds first, so
        # the seconds all open authorizations promise never cost more than the credit and a
        # call in parallel is offered only what this one cannot use. A hold shorter than
        # max_seconds would let parallel calls each be promised the whole balance. The paid
        # part fits the available credit (paid_seconds <= affordable), rounded up to the micro.
        covered_seconds = min(allowance_seconds, max_seconds)
        paid_seconds = max_seconds - covered_seconds
        reservation = place_hold(
            locked=locked,
            amount_micros=math.ceil(paid_seconds * micros_per_second),
            max_seconds=max_seconds,
            allowance_seconds=covered_seconds,
            call_id=call_id,
            api_key=api_key,
            now=now,
        )
        return Authorization(
            True,
            account.balance_micros,
            max_seconds=max_seconds,
            reservation_id=reservation.public_id,
        )


class _LazyRateCard:
    """A RateCard read from the database on first use."""

    def __init__(self, *, plan: Plan, account: Account):
        self._plan, self._account = plan, account
        self._card: RateCard | None = None

    def __getattr__(self, name):
        if self._card is None:
            self._card = RateCard(plan=self._plan, account=self._account)
        return getattr(self._card, name)


def _allowance_left(*, account: Account, subscription: Subscription, now: datetime) -> bool:
    start, _ = period_containing(anchor_day=subscription.anchor_day, moment=now)
    allowance = Allowance.objects.filter(account=account, period_start=start).first()
    if allowance is None:
        # No row yet means nothing of this period's allowance was used. A plan without
        # included minutes may still have a row: the period an immediate plan change was
        # made in keeps the minutes it began with (S2).
        return (
            period_included_seconds(
                plan=subscription.plan, allowance_locked=subscription.allowance_locked
            )
            > 0
        )
    return allowance.remaining_seconds > 0


def _no_credit_message(account: Account) -> str:
    return f"Insufficient credit. Add funds at {billing_page_url(account)} to continue."
