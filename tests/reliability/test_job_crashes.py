"""A worker killed in the middle of period close or of an auto-top-up, then the jobs rerun
(SPEC I3, P2, N3).

Each test forks a child that runs the job as the scheduler would and is killed with SIGKILL at
one point: the invoice (or top-up) rows written but not committed; committed but nothing after
the commit done (the next chunk, the on-commit email and card charge); the card charged at the
gateway but its answer not recorded. Then the scheduled jobs run again, as they would after the
worker is restarted: the same job a minute later, the dunning / auto-top-up retries and the
notification resend after their leases. Whatever the kill point, the end state is the one of an
uninterrupted run: one invoice per period, one charge per invoice or crossing, one email per
cause, gapless invoice numbers and a ledger without drift, on PostgreSQL and on SQLite.
"""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing import jobs
from billing.invoicing import period_close
from billing.ledger.drift import ledger_drift
from billing.models import (
    EntryKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    LedgerEntry,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments.auto_topup import save_auto_topup_settings
from billing.payments.cards import add_test_card
from tests.conftest import NOW
from tests.reliability.crashes import KillPoint, mail_sent, run_until_killed
from tests.usage.metering import call, concurrent
from usage.ingest.calls import report_call
from usage.models import Call

USD = 1_000_000
CLOSE_AT = datetime(2026, 4, 15, 13, 0, tzinfo=UTC)  # an hour after the first periods end

pytestmark = [concurrent, pytest.mark.usefixtures("recording_gateway", "mailbox")]


def at(moment: datetime, job) -> None:
    with time_machine.travel(moment, tick=False):
        job()


def assert_each_email_once(*expected_keys: str) -> None:
    sent = Counter(mail_sent())
    assert [key for key, times in sent.items() if times > 1] == []
    assert set(expected_keys) <= set(sent), set(expected_keys) - set(sent)


# Period close --------------------------------------------------------------------------------


@pytest.fixture
def month_of_usage(make_account):
    """Four postpaid accounts with a card and usage to invoice, one prepaid with a statement."""
    postpaid = []
    for minutes in (10, 20, 30, 40):
        account = make_account("voice-payg")
        add_test_card(account=account, behaviour="succeed", now=NOW)
        report_call(report=call(account, minutes * 60, llm="gpt-4o"), now=NOW)
        postpaid.append(account)
    prepaid = make_account("voice-prepaid", credit_micros=50 * USD)
    report_call(report=call(prepaid, 83), now=NOW)
    return postpaid, prepaid


def close_in_small_chunks() -> None:
    """The period-close job, in chunks of two accounts, so that a kill after the first commit
    leaves accounts for the next chunk. Runs in the child that is killed."""
    close = period_close.close_periods
    period_close.close_periods = lambda **kwargs: close(chunk=2, **kwargs)
    at(CLOSE_AT, jobs.close_periods)


@pytest.mark.parametrize(
    "kill_point",
    [
        KillPoint("before_commit", "billing_invoice"),
        KillPoint("after_commit", "billing_invoice"),
        KillPoint("after_charge"),
    ],
    ids=str,
)
def test_period_close_killed_and_rerun_invoices_charges_and_emails_once(
    kill_point, month_of_usage, recording_gateway
):
    postpaid, prepaid = month_of_usage

    run_until_killed(close_in_small_chunks, kill_point)
    at(CLOSE_AT + timedelta(minutes=1), jobs.close_periods)  # the next scheduled run
    at(CLOSE_AT + timedelta(minutes=20), jobs.collect_invoices)  # dunning, past the lease
    at(CLOSE_AT + timedelta(minutes=20), jobs.send_notifications)

    invoices = list(Invoice.objects.filter(kind=InvoiceKind.INVOICE).order_by("number"))
    assert sorted(i.account_id for i in invoices) == sorted(a.pk for a in postpaid)
    assert [i.status for i in invoices] == [InvoiceStatus.PAID] * 4
    assert Invoice.objects.filter(kind=InvoiceKind.STATEMENT, account=prepaid).count() == 1
    numbers = sorted(int(n.split("-")[1]) for n in Invoice.objects.values_list("number", flat=True))
    assert numbers == list(range(1, 6))  # gapless, whatever was rolled back

    charges = recording_gateway.charges()
    assert sorted(c["amount_micros"] for c in charges) == sorted(
        i.amount_due_micros for i in invoices
    )
    assert len({c["key"] for c in charges}) == 4
    payments = LedgerEntry.objects.filter(kind=EntryKind.INVOICE_PAYMENT)
    assert sorted(e.amount_micros for e in payments) == sorted(i.total_micros for i in invoices)
    assert_each_email_once(
        *(f"invoice_issued:{i.number}" for i in invoices),
        *(f"invoice_paid:{i.number}" for i in invoices),
    )
    assert ledger_drift() == []


# Auto-top-up ---------------------------------------------------------------------------------

# 16,000 s at 0.08 USD/min is 21.333333 USD: 30 USD of credit falls below the 10 USD threshold.
BIG_CALL_SECONDS = 16_000
BIG_CALL_MICROS = 21_333_333


@pytest.fixture
def auto_account(make_account):
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    add_test_card(account=account, behaviour="succeed", now=NOW)
    save_auto_topup_settings(
        account=account, enabled=True, threshold_micros=10 * USD, amount_micros=20 * USD, now=NOW
    )
    return account


@pytest.mark.parametrize(
    "kill_point",
    [
        KillPoint("before_commit", "billing_topup"),
        KillPoint("after_commit", "billing_topup"),
        KillPoint("after_charge"),
    ],
    ids=str,
)
def test_auto_topup_killed_and_rerun_charges_the_card_once(
    kill_point, auto_account, recording_gateway
):
    report = call(auto_account, BIG_CALL_SECONDS, connected_at=NOW - timedelta(hours=5))

    def usage_crosses_the_threshold():
        at(NOW, lambda: report_call(report=report, now=NOW))

    run_until_killed(usage_crosses_the_threshold, kill_point)
    # The platform got no answer, so it reports the call again; the jobs run on schedule.
    at(NOW + timedelta(minutes=1), lambda: report_call(report=report, now=NOW))
    at(NOW + timedelta(minutes=16), jobs.retry_auto_topups)
    at(NOW + timedelta(minutes=20), jobs.send_notifications)

    assert Call.objects.get(call_id=report.call_id).cost_micros == BIG_CALL_MICROS
    usage = LedgerEntry.objects.filter(account=auto_account, kind=EntryKind.USAGE)
    assert [e.amount_micros for e in usage] == [-BIG_CALL_MICROS]
    [topup] = TopUp.objects.filter(account=auto_account, kind=TopUpKind.AUTO)
    assert (topup.status, topup.amount_micros) == (TopUpStatus.SUCCEEDED, 20 * USD)
    assert [(c["key"], c["amount_micros"]) for c in recording_gateway.charges()] == [
        (topup.key, 20 * USD)
    ]
    credits = LedgerEntry.objects.filter(account=auto_account, kind=EntryKind.AUTO_TOPUP)
    assert [e.amount_micros for e in credits] == [20 * USD]
    auto_account.refresh_from_db()
    assert auto_account.balance_micros == 30 * USD - BIG_CALL_MICROS + 20 * USD
    assert_each_email_once(f"topup_paid:{topup.public_id}")
    assert ledger_drift() == []
