"""Request and response bodies of API v1 (SPEC section 11).

Requests are strict: unknown fields, unknown enum values, negative quantities, datetimes without
a time zone and money that is not an exact decimal are refused with 400 before any service runs.
Responses are built by hand in `usage.api` (the hot path skips re-validating its own output);
the response schemas here document them in the OpenAPI schema.
"""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from usage.models import CallStatus, Direction, EventType
from usage.reports import (
    MAX_EVENT_QUANTITIES,
    MAX_FLEX_PRICE_USD,
    MAX_ITEM_COST_MICROS,
    MAX_USAGE_DEBT_MICROS,
)

# No control characters (PostgreSQL refuses NUL in text; none belongs in an id or a name).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _text(max_length: int, *, min_length: int = 0):
    return Annotated[
        str, Field(min_length=min_length, max_length=max_length, pattern=PRINTABLE, strict=True)
    ]


def _parse_datetime(value: Any) -> datetime:
    """Accept only ISO 8601 text with a time zone: no Unix numbers, no naive times."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "must be an ISO 8601 date and time, e.g. 2026-03-15T12:00:00Z"
            ) from None
    else:
        raise ValueError("must be an ISO 8601 date and time in a string")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("needs a time zone, e.g. 2026-03-15T12:00:00Z or +01:00")
    return moment


def _decimal(*, int_digits: int, places: int, description: str):
    """An exact, non-negative decimal: a string such as "0.0015", or a JSON number (which the
    API's parser reads as Decimal, never as float)."""
    pattern = rf"^[0-9]{{1,{int_digits}}}(\.[0-9]{{1,{places}}})?$"
    maximum = Decimal(10**int_digits) - Decimal(1).scaleb(-places)
    text_form = re.compile(pattern)

    def parse(value: Any) -> Decimal:
        if isinstance(value, str):
            if not text_form.fullmatch(value):
                raise ValueError(f'must be a decimal such as "0.0015", at most {places} decimals')
            return Decimal(value)
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise ValueError('must be a decimal number in a string, e.g. "0.0015"')
        amount = Decimal(value)
        if not amount.is_finite() or amount < 0 or amount > maximum:
            raise ValueError(f"must be between 0 and {maximum}")
        if -amount.as_tuple().exponent > places:
            raise ValueError(f"has more than {places} decimals")
        return amount

    json_schema = {
        "anyOf": [
            {"type": "string", "pattern": pattern},
            {"type": "number", "minimum": 0, "exclusiveMaximum": 10**int_digits},
        ],
        "description": description,
    }
    return Annotated[Decimal, BeforeValidator(parse), WithJsonSchema(json_schema)]


Id = _text(100, min_length=1)
AccountId = _text(32, min_length=1)
# The operator's own id of a customer (Account.external_id). No "/": it is a path segment of
# /customers/{external_id}.
ExternalId = Annotated[
    str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f/]*$", strict=True)
]
ACCOUNT_DESCRIPTION = "The account's id (acc_...). Give `account` or `customer`, not both."
CUSTOMER_DESCRIPTION = (
    "The operator's own id of the customer (its external_id), instead of `account`."
)
# No schema maximum: an event over its field's maximum (usage.reports) is rejected alone, with
# its reason in the 200 answer, and the other events of the batch are charged.
Quantity = Annotated[int, Field(strict=True, ge=0)]


def _at_most(text: str, name: str) -> str:
    return (
        f"{text} At most {MAX_EVENT_QUANTITIES[name]:,}; an event over it is rejected alone "
        "(code 400 in its result) and the others are charged."
    )


_PRICE_MAXIMUM = (
    f" At most {MAX_FLEX_PRICE_USD:,} USD; an event over it is rejected alone (code 400 in its "
    "result) and the others are charged."
)
Moment = Annotated[
    datetime,
    BeforeValidator(_parse_datetime),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
MoneyIn = _decimal(int_digits=9, places=12, description='USD, e.g. "0.0015".')
# An amount of credit: whole micro-dollars (billing.money.usd_to_micros), under 100 million USD.
CreditAmount = _decimal(int_digits=8, places=6, description='USD, e.g. "25.00".')
HoldSeconds = _decimal(int_digits=7, places=3, description="Seconds on hold, to the millisecond.")
Money = Annotated[
    str, Field(description='USD with six decimals, e.g. "0.110667".', examples=["0.110667"])
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class NamesOneAccount(Strict):
    """A report that names its account by Meterline's id or by the operator's: exactly one."""

    account: AccountId | None = Field(None, description=ACCOUNT_DESCRIPTION)
    customer: ExternalId | None = Field(None, description=CUSTOMER_DESCRIPTION)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.account is None) == (self.customer is None):
            raise ValueError("give exactly one of account and customer")
        return self


# Requests ----------------------------------------------------------------------------------


DESTINATION_DESCRIPTION = (
    "The called number in international format: +44 20 7946 0000, 0044 20 7946 0000 and "
    "+442079460000 are the same number. It is stored in E.164 and matched against the "
    "destination prefixes of the plan (the longest wins). An invalid number answers 400."
)


class AuthorizeIn(Strict):
    """What decides whether the usage is free, as the report of it will say (free usage is
    allowed whatever the balance)."""

    feature: Literal["call", "chat", "sms", "llm", "embedding"]
    model: _text(100) = Field("", description="The model, or for a call its LLM (`llm`).")
    provider: _text(50) = ""
    start_within: _text(32) = Field(
        "", description="'default', 'priority', 'auto' or a flex window such as 00h-00m-30s."
    )
    call_id: _text(100) = Field("", description="The platform's id of the call to hold for.")
    direction: Direction = Field(
        Direction.INBOUND, description="Calls: as in the call report; outbound may be free."
    )
    destination: _text(32) = Field("", description=DESTINATION_DESCRIPTION)


class CallIn(NamesOneAccount):
    status: CallStatus
    direction: Direction = Direction.INBOUND
    connected_at: Moment | None = None
    ended_at: Moment | None = None
    transferred_at: Moment | None = None
    hold_seconds: HoldSeconds = Decimal(0)
    destination: _text(32) = Field("", description=DESTINATION_DESCRIPTION)
    llm: _text(100) = ""
    reservation_id: _text(32) = Field("", description="From the authorize answer, if any.")


class RefundIn(Strict):
    reason: _text(500) = ""


class EventIn(NamesOneAccount):
    id: Id
    type: EventType
    occurred_at: Moment
    messages: Quantity | None = Field(
        None, description=_at_most("chat: AI-generated messages.", "messages")
    )
    count: Quantity | None = Field(None, description=_at_most("sms: messages sent.", "count"))
    model: _text(100) = ""
    provider: _text(50) = ""
    input_tokens: Quantity | None = Field(
        None, description=_at_most("llm, embedding: input tokens.", "input_tokens")
    )
    output_tokens: Quantity | None = Field(
        None, description=_at_most("llm: output tokens.", "output_tokens")
    )
    start_within: _text(32) = ""
    standard_price: MoneyIn | None = Field(
        None, description="Flex requests: what standard routing costs, USD." + _PRICE_MAXIMUM
    )
    flex_price: MoneyIn | None = Field(
        None, description="Flex requests: what flex routing cost, USD." + _PRICE_MAXIMUM
    )


class EventsIn(Strict):
    events: list[EventIn] = Field(
        min_length=1,
        max_length=1000,
        description=(
            "Each event is rated alone. One that would cost more than "
            f"{MAX_ITEM_COST_MICROS // 1_000_000:,} USD is rejected (code 400 in its result); "
            "one that would take a postpaid account's unpaid usage past "
            f"{MAX_USAGE_DEBT_MICROS // 1_000_000:,} USD is rejected with code 402."
        ),
    )


# Responses ---------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str = Field(description="The HTTP status as a string.", examples=["402"])
    request_id: str = Field(
        description="The request's id (also the X-Request-ID response header): quote it to "
        "support, it finds the request's log lines.",
        examples=["4f1c2a9e0b7d4c61a3e8d2b5f6a70c19"],
    )


class ErrorOut(BaseModel):
    error: ErrorDetail


class AuthorizeOut(BaseModel):
    allowed: bool
    balance: Money
    max_seconds: int | None = Field(None, description="Calls only: the longest affordable call.")
    reservation_id: str | None = Field(None, description="Calls only: the credit hold.")
    billable: bool


class CallOut(BaseModel):
    call_id: str
    account: str
    customer: str | None = Field(description="The account's external_id, if it has one.")
    status: str
    direction: str
    billable_seconds: int
    cost: Money
    refunded: Money
    explanation: dict[str, Any]


class EventResultOut(BaseModel):
    id: str
    status: Literal["accepted", "duplicate", "rejected"]
    cost: Money
    reason: str | None = Field(None, description="Why an event was rejected.")
    code: str | None = Field(None, description="Rejected only: 400, 402, 404 or 409.")


class EventsOut(BaseModel):
    results: list[EventResultOut]


class NamesAccount(Loose):
    account: str = Field(description="The account's id (acc_...).")
    customer: str | None = Field(description="The account's external_id, if it has one.")


class UsageOut(NamesAccount):
    period_start: str
    period_end: str
    minutes: str
    calls: int
    sms: int
    chat_messages: int
    input_tokens: int
    output_tokens: int
    cost: Money
    allowance_minutes: str = Field(description="Included minutes of the period, with rollover.")
    allowance_used_minutes: str
    allowance_remaining_minutes: str
    included_credit: Money = Field(
        description="Included credit granted for the period (e.g. credits-monthly); 0 if none."
    )
    included_credit_used: Money = Field(description="Included credit spent this period.")
    included_credit_remaining: Money = Field(description="Included credit left this period.")
    balance: Money


class BalanceOut(NamesAccount):
    balance: Money
    held: Money
    available: Money
    currency: Literal["USD"]


class PricingPlanOut(Loose):
    code: str
    name: str
    billing_mode: str
    rounding: str
    minute_aggregation: bool


class PricingOut(Loose):
    plan: PricingPlanOut
    rates: list[dict[str, Any]]
    model_prices: list[dict[str, Any]]
