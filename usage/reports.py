"""What the platform reports, as plain data for the usage services, and their errors.

The API layer parses JSON into these; the services never see a request.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# The most one reported item may carry, documented in the API schema and docs/billing-rules.md.
# WARNING (money): they keep every sum of a batch far inside PostgreSQL's BIGINT (about 9.2 x
# 10^18): an item over one is rejected alone, and the other items of its batch are charged.
MAX_EVENT_QUANTITIES = {
    "messages": 1_000_000,  # chat: AI-generated messages in one event
    "count": 1_000_000,  # SMS sent in one event
    "input_tokens": 1_000_000_000,
    "output_tokens": 1_000_000_000,
}
MAX_FLEX_PRICE_USD = Decimal(1_000_000)  # standard_price and flex_price of one request
# One item's cost, whatever the rates staff set (a rate may be up to 10^10 USD per unit):
# 1,000 items of a batch cost at most 10^15 micros.
MAX_ITEM_COST_MICROS = 1_000_000 * 1_000_000  # 1,000,000 USD
# The most a postpaid account may owe for usage before a new item is refused: 10^17 micros
# (100 billion USD), so its balance and unbilled total never near the BIGINT limit.
MAX_USAGE_DEBT_MICROS = 10**17


class UsageError(Exception):
    """Refused usage input. `status` is the HTTP status the API answers with."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class NotFound(UsageError):
    status = 404
    type = "not_found"


class Conflict(UsageError):
    """The same id was reported before with different content (U10)."""

    status = 409
    type = "conflict"


class PaymentRequired(UsageError):
    """Billable usage is paused: no credit and no allowance, a past-due invoice, or a budget."""

    status = 402
    type = "insufficient_quota"


@dataclass(frozen=True)
class CallReport:
    call_id: str
    account: str  # public id; "" when reported by `customer`
    status: str
    direction: str = "inbound"
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    transferred_at: datetime | None = None
    hold_seconds: Decimal = Decimal(0)
    destination: str = ""
    llm: str = ""
    reservation_id: str = ""
    # The operator's id of the account, instead of `account` (usage.ingest.customers).
    customer: str = ""


@dataclass(frozen=True)
class EventReport:
    id: str
    account: str  # public id; "" when reported by `customer`
    type: str  # chat, sms, llm, embedding
    occurred_at: datetime
    messages: int | None = None
    count: int | None = None
    model: str = ""
    provider: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    start_within: str = ""
    standard_price: Decimal | None = None  # USD
    flex_price: Decimal | None = None  # USD
    # The operator's id of the account (Account.external_id), instead of `account`; the
    # ingest resolves it (usage.ingest.customers) before anything else reads the report.
    customer: str = ""


@dataclass(frozen=True)
class EventResult:
    id: str
    status: str  # accepted, duplicate, rejected
    cost_micros: int = 0
    reason: str = ""
    code: int = 200  # 409 for a conflicting duplicate, 400/404 for bad content


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    balance_micros: int
    max_seconds: int | None = None
    reservation_id: str = ""
    billable: bool = True
