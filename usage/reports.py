"""What the platform reports, as plain data for the usage services, and their errors.

The API layer parses JSON into these; the services never see a request.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


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
    account: str  # public id
    status: str
    direction: str = "inbound"
    connected_at: datetime | None = None
    ended_at: datetime | None = None
    transferred_at: datetime | None = None
    hold_seconds: Decimal = Decimal(0)
    destination: str = ""
    llm: str = ""
    reservation_id: str = ""


@dataclass(frozen=True)
class EventReport:
    id: str
    account: str  # public id
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
