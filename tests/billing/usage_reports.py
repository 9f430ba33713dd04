"""Usage, cards and checks for the invoice, period and collection tests.

Usage goes through the real rating services (`usage.ingest.calls.report_call`,
`usage.ingest.events.ingest_events`), so every invoice in these tests is cut from what rating wrote.
Test modules import `no_ledger_drift` and `fresh_test_gateway`, which then apply to every test
of the module.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum

from accounts.models import Account
from billing.ledger.drift import ledger_drift
from billing.models import (
    Invoice,
    LedgerEntry,
    PaymentMethod,
    UnbilledLine,
)
from billing.models import (
    TestCardBehaviour as Card,
)
from billing.payments.gateway import test_mode
from tests.usage.metering import new_id  # one counter: a test may use both modules' helpers
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.models import Call, UsageEvent
from usage.reports import CallReport, EventReport

USD = 1_000_000


@pytest.fixture(autouse=True)
def no_ledger_drift(request):
    """After the test, every cached balance equals its ledger and its grants (SPEC L3)."""
    # Requested here rather than in the signature so the database outlives this check.
    request.getfixturevalue("db")
    yield
    assert ledger_drift() == []


@pytest.fixture(autouse=True)
def fresh_test_gateway(monkeypatch):
    """Forget the test-mode gateway's answers between tests.

    It remembers one answer per idempotency key for the life of the process, like Stripe; keys
    are built from invoice ids, which a rolled-back test database hands out again.
    """
    monkeypatch.setattr(test_mode.TestModeGateway, "_results", {})


def report_minutes(
    account: Account, minutes: int, *, now: datetime, llm: str = "gpt-4o", **fields
) -> Call:
    """Report one completed call of whole `minutes`, ending an hour before `now`."""
    ended_at = fields.pop("ended_at", now - timedelta(hours=1))
    connected_at = ended_at - timedelta(minutes=minutes, seconds=fields.pop("extra_seconds", 0))
    call, _ = report_call(
        report=CallReport(
            call_id=fields.pop("call_id", None) or new_id("call"),
            account=account.public_id,
            status=fields.pop("status", "completed"),
            connected_at=connected_at,
            ended_at=ended_at,
            llm=llm,
            **fields,
        ),
        now=now,
    )
    return call


def report_usage_of_458_usd(account: Account, *, now: datetime) -> list[Call]:
    """Calls on voice-payg that cost exactly 458 USD (SPEC I2's example).

    Every aggregated minute bills the voice engine (0.09) and the call's LLM: gpt-4o 0.05 makes
    0.14 a minute, claude-sonnet-4 0.06 makes 0.15. 3,250 x 0.14 + 20 x 0.15 = 455 + 3 = 458.
    """
    calls = [
        report_minutes(account, 650, now=now, ended_at=now - timedelta(hours=12 * n))
        for n in range(1, 6)
    ]
    calls.append(report_minutes(account, 20, now=now, llm="claude-sonnet-4"))
    return calls


def flex_request(
    account: Account,
    *,
    now: datetime,
    standard: str = "0.1530",
    flex: str = "0.0810",
    provider: str = "openai",
    model: str = "gpt-4o",
    start_within: str = "00h-00m-30s",
):
    """Report one flex request on flex-router; 0.1530 vs 0.0810 costs 0.0144 (SPEC U8)."""
    [result] = ingest_events(
        reports=[
            EventReport(
                id=new_id("flex"),
                account=account.public_id,
                type="llm",
                occurred_at=now - timedelta(minutes=30),
                provider=provider,
                model=model,
                start_within=start_within,
                standard_price=Decimal(standard),
                flex_price=Decimal(flex),
            )
        ],
        now=now,
    )
    assert result.status == "accepted", result
    return result


def add_card(account: Account, behaviour: str = Card.SUCCEED) -> PaymentMethod:
    """Save a test-mode card as the account's default."""
    return PaymentMethod.objects.create(
        account=account,
        gateway_id=new_id("test_pm"),
        brand="visa",
        last4="4242",
        is_default=True,
        test_behaviour=behaviour,
    )


def reload(account: Account) -> Account:
    return Account.objects.get(pk=account.pk)


def line_sum(invoice: Invoice) -> int:
    return invoice.lines.aggregate(total=Sum("amount_micros"))["total"] or 0


def rated_costs(account: Account) -> int:
    """What rating charged for the account's calls and events, to the micro-dollar."""
    calls = Call.objects.filter(account=account).aggregate(t=Sum("cost_micros"))["t"] or 0
    events = UsageEvent.objects.filter(account=account).aggregate(t=Sum("cost_micros"))["t"] or 0
    return calls + events


def unbilled(account: Account) -> tuple[int, int]:
    """Return the cached unbilled amount and the number of unbilled lines behind it."""
    return reload(account).unbilled_micros, UnbilledLine.objects.filter(account=account).count()


def entries(account: Account, kind: str | None = None) -> list[LedgerEntry]:
    rows = LedgerEntry.objects.filter(account=account).order_by("pk")
    return list(rows.filter(kind=kind) if kind else rows)


def components(invoice: Invoice) -> dict[str, int]:
    """Return the invoice's amounts by line component (summed over models)."""
    amounts: dict[str, int] = {}
    for line in invoice.lines.all():
        amounts[line.component] = amounts.get(line.component, 0) + line.amount_micros
    return amounts
