"""Invoices and statements made by the real services, for the invoice page and API tests.

Usage is charged through `usage.ingest.calls` and `usage.ingest.events`, then cut into invoices by
`billing.invoicing.invoices`, so the tests read exactly what production would show.
"""

from datetime import timedelta

from accounts.models import Account
from billing.invoicing.invoices import invoice_thresholds
from billing.invoicing.period_close import close_periods
from billing.models import Invoice, InvoiceKind, Subscription
from tests.conftest import NOW
from tests.usage.metering import call, event
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events

USD = 1_000_000
THRESHOLD_AT = NOW + timedelta(minutes=5)


def threshold_invoice(account: Account) -> Invoice:
    """Charge a voice-payg account past its 200 USD threshold and invoice it.

    83 s with gpt-4o (aggregated: 1 whole minute at 0.05 + 0.09) and 90,001,234 gpt-4o tokens
    (225 USD in, 0.01234 USD out): 225.152340 USD, due 225.15 USD, rounding -0.002340 USD.
    """
    report_call(report=call(account, 83, llm="gpt-4o"), now=NOW)
    ingest_events(
        reports=[
            event(
                account,
                "llm",
                model="gpt-4o",
                provider="openai",
                input_tokens=90_000_000,
                output_tokens=1234,
            )
        ],
        now=NOW,
    )
    [invoice] = invoice_thresholds(now=THRESHOLD_AT)
    assert invoice.account_id == account.pk
    return invoice


def two_statements(account: Account) -> tuple[Invoice, Invoice]:
    """Close two periods of a voice-prepaid account that started with 50 USD of credit.

    Period 1: a call of 83 s (0.110667 USD): opening 0, closing 49.889333 USD.
    Period 2: a call of 60 s (0.08 USD): opening 49.889333, closing 49.809333 USD.
    """
    report_call(report=call(account, 83), now=NOW)
    first_end = Subscription.objects.get(account=account).current_period_end
    close_periods(now=first_end)
    second_call_at = first_end + timedelta(hours=1)
    report_call(
        report=call(account, 60, connected_at=second_call_at),
        now=second_call_at + timedelta(minutes=5),
    )
    second_end = Subscription.objects.get(account=account).current_period_end
    close_periods(now=second_end)
    first, second = Invoice.objects.filter(account=account).order_by("created_at")
    assert first.kind == second.kind == InvoiceKind.STATEMENT
    return first, second
