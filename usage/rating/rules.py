"""Rating: turn a reported call or event into billable quantities and a cost (SPEC U1-U11).

Pure functions: no database, no clock. The caller passes the plan, the rate card, what is carried
from earlier items and the allowance left, and gets back the cost, the new carries and an
explanation the customer can read (U11).

WARNING (money): each priced line of an item (the call's LLM minutes, its voice-engine minutes,
an LLM request's input tokens...) is computed exactly in Decimal and rounded exactly once,
half-up to the micro-dollar (billing.money.round_micros), a commission down
(billing.money.round_commission_micros); the item's cost is the sum of its rounded lines, so
invoice lines built from line rollups add up to the items to the micro-dollar.
"""

import re
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from billing.models import Plan, RateComponent, Rounding
from billing.money import micros_to_api, round_commission_micros, round_micros
from billing.plans.rates import AppliedRate, ModelCatalog, RateCard
from usage.models import CallStatus, Direction, EventType
from usage.reports import MAX_ITEM_COST_MICROS, CallReport, EventReport, UsageError

SECONDS_PER_MINUTE = 60
FREE_ROUTING = frozenset({"default", "priority", "auto"})
FLEX_DURATION = re.compile(r"^\d{2}h-\d{2}m-\d{2}s$")
MILLION = Decimal(1_000_000)  # model prices are per million tokens


@dataclass
class Rating:
    """The outcome of rating one item."""

    cost_micros: int
    billable_quantity: int = 0  # seconds for calls, messages/SMS/tokens for events
    allowance_seconds: int = 0
    carries: dict[tuple[str, str], int] = field(default_factory=dict)  # new carried units
    explanation: dict = field(default_factory=dict)
    lines: list["Line"] = field(default_factory=list)


@dataclass(frozen=True)
class Line:
    """One priced component of an item: quantity x rate, rounded once."""

    component: str
    key: str
    quantity: int
    unit: str  # second, minute, message, token, request
    rate: Decimal  # USD per minute, per message, per million tokens, or percent of savings
    exact: Decimal  # USD before rounding
    # `exact` rounded, once: the item's cost, its explanation, rollups and unbilled line all
    # read it, and rounding a Decimal costs more than the rest of an event's rating.
    amount_micros: int = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # A commission rounds down, so it never exceeds its percentage of the savings.
        rounding = round_commission_micros if self.component == "commission" else round_micros
        object.__setattr__(self, "amount_micros", rounding(self.exact))  # frozen

    @property
    def base_quantity(self) -> int:
        """The quantity in base units (seconds for time) for rollups."""
        return self.quantity * SECONDS_PER_MINUTE if self.unit == "minute" else self.quantity

    def as_json(self) -> dict:
        return {
            "component": str(self.component),
            "key": self.key,
            "quantity": self.quantity,
            "unit": self.unit,
            "rate": str(self.rate),
            "exact": str(self.exact),
            "amount": micros_to_api(self.amount_micros),
        }


def _total(lines: list["Line"]) -> int:
    """Return an item's cost: the sum of its rounded lines, refused above one item's maximum."""
    total = sum(line.amount_micros for line in lines)
    if total > MAX_ITEM_COST_MICROS:
        # Rates are staff's and quantities the platform's: their product alone is unbounded.
        raise UsageError(
            f"The item would cost {micros_to_api(total)} USD, more than the maximum of one "
            f"item ({micros_to_api(MAX_ITEM_COST_MICROS)} USD)."
        )
    return total


# Calls --------------------------------------------------------------------------------------


def call_seconds(*, report: CallReport, plan: Plan) -> tuple[int, dict]:
    """Return the billable seconds of a final call and how they were found (U1, U2)."""
    status = report.status
    if status in (CallStatus.FAILED, CallStatus.SPAM):
        return 0, {"rule": f"{status} calls are not billed"}
    # Before the flat seconds of unanswered calls: a plan that makes outbound calls free
    # bills no outbound call, answered or not.
    if report.direction == Direction.OUTBOUND and plan.outbound_calls_free:
        return 0, {"rule": "outbound calls are free on this plan"}
    if status in (CallStatus.NO_ANSWER, CallStatus.HANGUP_ON_VOICEMAIL):
        flat = plan.unanswered_flat_seconds
        return flat, {"rule": f"{status} calls are billed a flat {flat} s"}
    if report.connected_at is None:
        return 0, {"rule": "the call never connected"}
    end = report.ended_at
    rule = "connect to end"
    # A transfer ends the billed time whatever the final status says: a report may say
    # `completed` and still carry the transfer. Validation refuses a transfer after the end.
    if report.transferred_at is not None and (end is None or report.transferred_at < end):
        end = report.transferred_at
        rule = "connect to transfer (time after a transfer is free)"
    if end is None:
        raise UsageError("A final call needs ended_at (or transferred_at).", param="ended_at")
    if end < report.connected_at:
        raise UsageError("The call ends before it connects.", param="ended_at")
    hold_ms = int(report.hold_seconds * 1000)
    # Whole milliseconds by integer division: total_seconds() is a float, and 1.001 s * 1000
    # is 1000.99..., which would bill 1 s instead of 2 when rounding up.
    raw_ms = max((end - report.connected_at) // timedelta(milliseconds=1) - hold_ms, 0)
    if plan.rounding == Rounding.UP:
        seconds = -(-raw_ms // 1000)
        rounding = "milliseconds rounded up to the second"
    else:
        seconds = (raw_ms + 500) // 1000  # half-up to the nearest second
        rounding = "rounded to the nearest second"
    if hold_ms:
        rule += f", minus {report.hold_seconds} s on hold"
    return seconds, {"rule": rule, "raw_ms": raw_ms, "rounding": rounding}


def call_components(*, report: CallReport, plan: Plan, card: RateCard, at) -> list[AppliedRate]:
    """Return the per-minute rates a call is billed at (U3)."""
    rates: list[AppliedRate] = []
    if card.has_component(RateComponent.LLM):
        # Pay-as-you-go: the LLM's minute rate plus the voice engine on every call.
        llm = report.llm.strip()
        if not llm:
            raise UsageError("This plan bills calls per LLM; the call needs `llm`.", param="llm")
        llm_rate = card.rate(RateComponent.LLM, llm, at)
        if llm_rate is None:
            known = ", ".join(card.keys(RateComponent.LLM))
            raise UsageError(f"No rate for LLM '{llm}'. Priced LLMs: {known}.", param="llm")
        rates.append(llm_rate)
        engine = card.rate(RateComponent.VOICE_ENGINE, "", at)
        if engine is not None:
            rates.append(engine)
    else:
        flat = card.rate(RateComponent.CALL, "", at)
        if flat is None:
            raise UsageError("The account's plan has no call rate.")
        rates.append(flat)
    if report.destination:
        surcharge = card.destination(report.destination, at)
        if surcharge is not None:
            rates.append(surcharge)
    return rates


def rate_minutes(
    *,
    seconds: int,
    rates: list[AppliedRate],
    aggregation: bool,
    carries: dict[tuple[str, str], int],
) -> tuple[list[Line], dict[tuple[str, str], int], dict]:
    """Price paid seconds at per-minute rates, per second or by aggregated whole minutes (U4)."""
    lines: list[Line] = []
    new_carries: dict[tuple[str, str], int] = {}
    events: dict[str, int] = {}
    for rate in rates:
        if aggregation:
            ident = (rate.component, rate.key)
            total = carries.get(ident, 0) + seconds
            minutes, carried = divmod(total, SECONDS_PER_MINUTE)
            new_carries[ident] = carried
            events[f"{rate.component}:{rate.key}".rstrip(":")] = minutes
            if minutes:  # seconds still short of a minute are carried, not priced yet
                lines.append(
                    Line(
                        rate.component,
                        rate.key,
                        minutes,
                        "minute",
                        rate.price,
                        minutes * rate.price,
                    )
                )
        elif seconds:
            exact = Decimal(seconds) * rate.price / SECONDS_PER_MINUTE
            lines.append(Line(rate.component, rate.key, seconds, "second", rate.price, exact))
    if not aggregation:
        return lines, new_carries, {}
    carried = {f"{c}:{k}".rstrip(":"): v for (c, k), v in new_carries.items()}
    return lines, new_carries, {"billing_events": events, "carried_seconds": carried}


def rate_call(
    *,
    report: CallReport,
    plan: Plan,
    card: RateCard,
    carries: dict[tuple[str, str], int],
    allowance_remaining_seconds: int,
    at,
) -> Rating:
    """Rate a final call: seconds, allowance, per-minute components, one rounding."""
    seconds, how = call_seconds(report=report, plan=plan)
    rates = call_components(report=report, plan=plan, card=card, at=at) if seconds else []
    covered = min(seconds, max(allowance_remaining_seconds, 0))
    paid = seconds - covered
    lines, new_carries, aggregation = rate_minutes(
        seconds=paid, rates=rates, aggregation=plan.minute_aggregation, carries=carries
    )
    cost = _total(lines)
    explanation = {
        "raw": how,
        "billed_seconds": seconds,
        "allowance_seconds": covered,
        "paid_seconds": paid,
        **aggregation,
        "lines": [line.as_json() for line in lines],
        "rounding": "each line rounded once, half-up to the micro-dollar",
        "cost": micros_to_api(cost),
    }
    return Rating(
        cost_micros=cost,
        billable_quantity=seconds,
        allowance_seconds=covered,
        carries=new_carries,
        explanation=explanation,
        lines=lines,
    )


# Events -------------------------------------------------------------------------------------


def _required(value, name: str) -> int:
    if value is None:
        raise UsageError(f"`{name}` is required for this event type.", param=name)
    if value < 0:
        raise UsageError(f"`{name}` cannot be negative.", param=name)
    return int(value)


def rate_chat(
    *,
    report: EventReport,
    plan: Plan,
    card: RateCard,
    carries: dict[tuple[str, str], int],
    allowance_remaining_seconds: int,
) -> Rating:
    """Every N AI messages is one billable minute; the remainder carries (U5)."""
    messages = _required(report.messages, "messages")
    per_minute = plan.chat_messages_per_minute
    if not per_minute:
        return Rating(
            cost_micros=0,
            billable_quantity=messages,
            explanation={"rule": "chat is not billed on this plan", "cost": "0.000000"},
        )
    ident = (RateComponent.CHAT, "")
    total = carries.get(ident, 0) + messages
    minutes, carried = divmod(total, per_minute)
    covered_minutes = min(minutes, max(allowance_remaining_seconds, 0) // SECONDS_PER_MINUTE)
    paid_minutes = minutes - covered_minutes
    rate = card.rate(RateComponent.CHAT, "", report.occurred_at) or card.rate(
        RateComponent.CALL, "", report.occurred_at
    )
    if rate is None and paid_minutes:
        raise UsageError("The account's plan has no chat rate.")
    price = rate.price if rate else Decimal(0)
    lines = [Line(RateComponent.CHAT, "", paid_minutes, "minute", price, paid_minutes * price)]
    cost = _total(lines)
    return Rating(
        cost_micros=cost,
        billable_quantity=messages,
        allowance_seconds=covered_minutes * SECONDS_PER_MINUTE,
        carries={ident: carried},
        lines=lines if paid_minutes else [],
        explanation={
            "rule": f"{per_minute} AI messages make one billable minute",
            "messages": messages,
            "billable_minutes": minutes,
            "allowance_minutes": covered_minutes,
            "carried_messages": carried,
            "lines": [line.as_json() for line in lines],
            "cost": micros_to_api(cost),
        },
    )


def rate_sms(*, report: EventReport, card: RateCard) -> Rating:
    """SMS are charged when sent, at the plan's SMS price, often zero (U6)."""
    count = _required(report.count, "count")
    rate = card.rate(RateComponent.SMS, "", report.occurred_at)
    price = rate.price if rate else Decimal(0)
    lines = [Line(RateComponent.SMS, "", count, "message", price, count * price)]
    cost = _total(lines)
    return Rating(
        cost_micros=cost,
        billable_quantity=count,
        lines=lines,
        explanation={
            "rule": "SMS are charged when sent, at the plan's SMS price",
            "lines": [line.as_json() for line in lines],
            "cost": micros_to_api(cost),
        },
    )


def rate_tokens(*, report: EventReport, catalog: ModelCatalog) -> Rating:
    """Per-model prices per million input and output tokens at the time of the request (U7).

    A stream stopped early reports the tokens generated before it stopped; they are billed.
    """
    input_tokens = _required(report.input_tokens, "input_tokens")
    output_tokens = int(report.output_tokens or 0)
    if output_tokens < 0:
        raise UsageError("`output_tokens` cannot be negative.", param="output_tokens")
    if not report.model:
        raise UsageError("`model` is required for this event type.", param="model")
    price = catalog.price(model=report.model, provider=report.provider, at=report.occurred_at)
    if price is None:
        raise UsageError(
            f"Unknown model '{report.model}' at {report.occurred_at:%Y-%m-%d}.", param="model"
        )
    if report.type == EventType.EMBEDDING and price.kind != "embedding":
        raise UsageError(f"'{report.model}' is not an embedding model.", param="model")
    million = MILLION
    p_in, p_out = price.input_per_million, price.output_per_million
    lines = [
        Line(
            "input_tokens", price.model, input_tokens, "token", p_in, input_tokens * p_in / million
        )
    ]
    if report.type == EventType.LLM:
        lines.append(
            Line(
                "output_tokens",
                price.model,
                output_tokens,
                "token",
                p_out,
                output_tokens * p_out / million,
            )
        )
    cost = _total(lines)
    return Rating(
        cost_micros=cost,
        billable_quantity=input_tokens,
        lines=lines,
        explanation={
            "rule": "USD per million tokens from the model catalog",
            "price_effective_from": price.effective_from.isoformat(),
            "lines": [line.as_json() for line in lines],
            "rounding": "each line rounded once, half-up to the micro-dollar",
            "cost": micros_to_api(cost),
        },
    )


def rate_commission(*, report: EventReport, plan: Plan) -> Rating:
    """The plan's percentage of what a flex request saved, when it saved anything (U8)."""
    start_within = report.start_within.strip().lower()
    inputs = {
        "start_within": report.start_within,
        "provider": report.provider,
        "model": report.model,
        "standard_price": str(report.standard_price) if report.standard_price is not None else None,
        "flex_price": str(report.flex_price) if report.flex_price is not None else None,
        "percent": str(plan.commission_percent),
    }

    def free(rule: str, savings: Decimal = Decimal(0)) -> Rating:
        return Rating(
            cost_micros=0,
            explanation={"rule": rule, **inputs, "savings": str(savings), "cost": "0.000000"},
        )

    if not start_within or start_within in FREE_ROUTING:
        return free("standard routing is free")
    if not FLEX_DURATION.match(start_within):
        raise UsageError(
            "`start_within` is default, priority, auto or a duration like 00h-00m-30s.",
            param="start_within",
        )
    if report.provider.strip().lower() in plan.excluded_providers:
        return free(f"{report.provider} models are free")
    if report.standard_price is None or report.flex_price is None:
        raise UsageError(
            "A flex request needs standard_price and flex_price.", param="standard_price"
        )
    if report.standard_price < 0 or report.flex_price < 0:
        raise UsageError("Prices cannot be negative.", param="standard_price")
    if report.standard_price == 0:
        return free("the model is not priced")
    savings = report.standard_price - report.flex_price
    if savings <= 0:
        return free("flex was not cheaper than standard", savings)
    fee = savings * plan.commission_percent / 100
    lines = [Line("commission", report.model, 1, "request", plan.commission_percent, fee)]
    cost = _total(lines)
    return Rating(
        cost_micros=cost,
        billable_quantity=1,
        lines=lines,
        explanation={
            "rule": f"{plan.commission_percent}% of the savings of a flex request",
            **inputs,
            "savings": str(savings),
            "savings_micros": round_micros(savings),
            "fee_exact": str(fee),
            "rounding": "rounded down to the micro-dollar, never above the percentage",
            "cost": micros_to_api(cost),
        },
    )


def savings_micros(rating: Rating) -> int:
    return int(rating.explanation.get("savings_micros", 0))
