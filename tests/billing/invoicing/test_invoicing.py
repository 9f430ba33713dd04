"""Threshold invoicing, invoice totals, gapless numbers and status rules (SPEC I1, I2)."""

import multiprocessing
import traceback
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from accounts.models import Account
from billing.invoicing.invoices import (
    InvoiceError,
    accounts_over_threshold,
    invoice_thresholds,
    transition,
)
from billing.invoicing.period_close import close_periods
from billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceReason,
    InvoiceStatus,
    Subscription,
)
from tests.billing.usage_reports import (
    USD,
    fresh_test_gateway,  # noqa: F401 - autouse
    line_sum,
    no_ledger_drift,  # noqa: F401 - autouse
    rated_costs,
    reload,
    report_minutes,
    report_usage_of_458_usd,
    unbilled,
)
from tests.conftest import NOW
from usage.ingest.events import ingest_events
from usage.reports import EventReport

LATER = NOW + timedelta(days=3)  # inside the first period, [2026-03-15, 2026-04-15)
AFTER_END = datetime(2026, 4, 15, 1, 0, tzinfo=UTC)


def lines_of(invoice: Invoice) -> list[tuple[str, str, int, int]]:
    return list(invoice.lines.values_list("component", "model", "quantity", "amount_micros"))


# Billing threshold (I2) -------------------------------------------------------------------------


def test_usage_of_458_usd_is_invoiced_for_458_usd_by_the_threshold_sweep(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=LATER)
    assert unbilled(account) == (458 * USD, 3)

    [invoice] = invoice_thresholds(now=LATER)

    assert invoice.account_id == account.pk
    assert (invoice.kind, invoice.reason, invoice.status) == (
        InvoiceKind.INVOICE,
        InvoiceReason.THRESHOLD,
        InvoiceStatus.OPEN,
    )
    assert invoice.total_micros == 458_000_000
    assert line_sum(invoice) == 458_000_000
    assert invoice.amount_due_micros == 458_000_000
    assert invoice.rounding_micros == 0
    assert lines_of(invoice) == [
        # Aggregated minutes, shown in seconds: 3,250 min of gpt-4o, 20 of Claude, and the voice
        # engine on all 3,270.
        ("llm", "claude-sonnet-4", 20 * 60, 1_200_000),
        ("llm", "gpt-4o", 3250 * 60, 162_500_000),
        ("voice_engine", "", 3270 * 60, 294_300_000),
    ]
    assert (invoice.period_start, invoice.period_end) == (
        account.subscription.current_period_start,
        LATER,
    )
    assert invoice.next_payment_attempt_at == LATER  # charged at once


def test_accrual_restarts_at_zero_after_a_threshold_invoice(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=LATER)

    invoice_thresholds(now=LATER)

    assert unbilled(account) == (0, 0)
    report_minutes(account, 10, now=LATER + timedelta(hours=2))
    assert unbilled(account) == (1_400_000, 2)


def test_the_threshold_is_a_trigger_that_is_reached_at_exactly_200_usd(make_account):
    just_under, exactly = make_account("voice-payg"), make_account("voice-payg")
    # 1,420 min at 0.14 + 7 min at 0.15 = 199.85 USD; one more Claude minute makes 200.00.
    for account, claude_minutes in ((just_under, 7), (exactly, 8)):
        report_minutes(account, 1420, now=LATER)
        report_minutes(account, claude_minutes, now=LATER, llm="claude-sonnet-4")
    assert reload(just_under).unbilled_micros == 199_850_000
    assert reload(exactly).unbilled_micros == 200_000_000

    invoices = invoice_thresholds(now=LATER)

    assert [(i.account_id, i.total_micros) for i in invoices] == [(exactly.pk, 200 * USD)]
    assert not Invoice.objects.filter(account=just_under).exists()
    assert reload(just_under).unbilled_micros == 199_850_000


def test_usage_under_the_threshold_makes_no_invoice(make_account):
    account = make_account("voice-payg")
    report_minutes(account, 1000, now=LATER)  # 140 USD

    assert invoice_thresholds(now=LATER) == []
    assert not Invoice.objects.exists()
    assert unbilled(account) == (140 * USD, 2)


def test_a_second_threshold_sweep_makes_nothing(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=LATER)
    invoice_thresholds(now=LATER)

    assert invoice_thresholds(now=LATER) == []
    assert invoice_thresholds(now=LATER + timedelta(minutes=30)) == []
    assert Invoice.objects.filter(account=account).count() == 1


def test_several_threshold_invoices_in_one_period_are_normal(make_account):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=LATER)
    [first] = invoice_thresholds(now=LATER)
    second_run = LATER + timedelta(days=2)
    report_minutes(account, 1500, now=second_run)  # 210 USD

    [second] = invoice_thresholds(now=second_run)

    assert [first.total_micros, second.total_micros] == [458 * USD, 210 * USD]
    assert second.period_start == first.period_end == LATER
    assert second.period_end == second_run
    assert second.period_end < reload(account).subscription.current_period_end
    assert [first.number, second.number] == ["2026-000001", "2026-000002"]


def test_only_postpaid_accounts_with_a_threshold_are_swept(make_account):
    payg = make_account("voice-payg")
    enterprise = make_account("voice-enterprise")  # no threshold: billed at period end
    prepaid = make_account("voice-prepaid", credit_micros=500 * USD)
    report_usage_of_458_usd(payg, now=LATER)
    report_minutes(enterprise, 7000, now=LATER)  # 1,000 min over the allowance: 140 USD
    report_minutes(prepaid, 5000, now=LATER, llm="")  # 400 USD at 0.08

    assert [i.account_id for i in invoice_thresholds(now=LATER)] == [payg.pk]


def test_the_threshold_sweep_finds_due_accounts_with_one_query(
    make_account, django_assert_num_queries
):
    over = [make_account("voice-payg") for _ in range(3)]
    under = [make_account("voice-payg") for _ in range(3)]
    for account in over:
        report_minutes(account, 1500, now=LATER)  # 210 USD
    for account in under:
        report_minutes(account, 100, now=LATER)  # 14 USD
    make_account("voice-prepaid", credit_micros=300 * USD)

    with django_assert_num_queries(1):
        due = accounts_over_threshold()

    assert due == sorted(a.pk for a in over)


def test_the_threshold_sweep_invoices_in_chunks_with_statements_per_chunk_not_per_account(
    make_account,
):
    def sweep(count, *, chunk):
        accounts = [make_account("voice-payg") for _ in range(count)]
        for minutes, account in enumerate(accounts, start=1500):
            report_minutes(account, minutes, now=LATER)  # 210.00 USD and up, 0.14 USD a minute
        with CaptureQueriesContext(connection) as queries:
            invoices = invoice_thresholds(now=LATER, chunk=chunk)
        return accounts, invoices, len(queries)

    sweep(1, chunk=10)  # the first invoice of the year also creates its number sequence
    _, _, two_in_one_chunk = sweep(2, chunk=10)
    accounts, invoices, five_in_one_chunk = sweep(5, chunk=10)
    assert five_in_one_chunk == two_in_one_chunk

    more, more_invoices, _ = sweep(5, chunk=2)  # three transactions
    assert [(i.account_id, i.total_micros) for i in invoices + more_invoices] == [
        (account.pk, (1500 + n) * 140_000)
        for account, n in zip(accounts + more, [*range(5)] * 2, strict=True)
    ]
    assert [i.number for i in more_invoices] == [f"2026-{n:06d}" for n in range(9, 14)]
    assert all(reload(account).unbilled_micros == 0 for account in accounts + more)


# Totals (I1) ------------------------------------------------------------------------------------


def mixed_usage(account: Account, *, input_tokens: int, now: datetime) -> None:
    """Calls with carried seconds and a surcharge, chat, free SMS and LLM tokens on voice-payg."""
    for seconds in (31, 31, 31, 32):  # 125 s: 2 aggregated minutes, 5 s carried (U4)
        report_minutes(account, 0, now=now, extra_seconds=seconds)
    report_minutes(account, 7, now=now, destination="+442071234567", extra_seconds=42)
    report_minutes(account, 3, now=now, llm="gpt-4o-mini")
    results = ingest_events(
        reports=[
            EventReport(
                id=f"{account.public_id}-chat",
                account=account.public_id,
                type="chat",
                occurred_at=now - timedelta(hours=1),
                messages=12,  # 2 minutes, 2 messages carried
            ),
            EventReport(
                id=f"{account.public_id}-sms",
                account=account.public_id,
                type="sms",
                occurred_at=now - timedelta(hours=1),
                count=3,
            ),
            EventReport(
                id=f"{account.public_id}-llm",
                account=account.public_id,
                type="llm",
                occurred_at=now - timedelta(hours=1),
                provider="openai",
                model="gpt-4o",
                input_tokens=input_tokens,
                output_tokens=1234,  # 0.01234 USD at 10 USD per million
            ),
        ],
        now=now,
    )
    assert [r.status for r in results] == ["accepted"] * 3


def test_an_invoice_total_is_the_sum_of_its_lines_and_of_the_rated_usage(make_account):
    account = make_account("voice-payg")
    mixed_usage(account, input_tokens=1000, now=LATER)

    close_periods(now=AFTER_END)
    invoice = Invoice.objects.get(account=account)

    assert invoice.total_micros == line_sum(invoice) == rated_costs(account)
    components = dict(
        invoice.lines.values("component")
        .annotate(t=Sum("amount_micros"))
        .values_list("component", "t")
    )
    assert components == {
        # 2 + 7 + 3 aggregated minutes of calls; the 5 s and 42 s carried are not billed yet.
        "llm": 2 * 50_000 + 7 * 50_000 + 3 * 20_000,
        "voice_engine": 12 * 90_000,
        "destination": 7 * 20_000,  # London landline surcharge, 0.02/min
        "chat": 2 * 90_000,
        "sms": 0,
        "input_tokens": 2_500,  # 1,000 tokens at 2.50 USD per million
        "output_tokens": 12_340,
    }


@pytest.mark.parametrize(
    ("input_tokens", "due_micros", "rounding_micros"),
    [
        # 1.922340 USD of other usage plus 2.5 micros per gpt-4o input token.
        (1000, 1_920_000, -4_840),  # 1.924840 -> 1.92
        (2000, 1_930_000, 2_660),  # 1.927340 -> 1.93
        (1064, 1_930_000, 5_000),  # 1.925000 -> 1.93: a tie goes up
        (1063, 1_920_000, -4_998),  # 2,657.5 micros round to 2,658; 1.924998 -> 1.92
    ],
)
def test_the_amount_due_is_the_total_rounded_half_up_to_cents(
    make_account, input_tokens, due_micros, rounding_micros
):
    account = make_account("voice-payg")
    mixed_usage(account, input_tokens=input_tokens, now=LATER)

    close_periods(now=AFTER_END)
    invoice = Invoice.objects.get(account=account)

    assert invoice.total_micros == rated_costs(account) == line_sum(invoice)
    assert invoice.amount_due_micros == due_micros
    assert invoice.amount_due_micros % 10_000 == 0
    assert invoice.rounding_micros == rounding_micros == due_micros - invoice.total_micros


def test_threshold_and_period_invoices_together_bill_every_rated_micro_dollar_once(
    make_account,
):
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=LATER)
    invoice_thresholds(now=LATER)
    mixed_usage(account, input_tokens=777, now=LATER + timedelta(days=1))

    close_periods(now=AFTER_END)

    invoices = Invoice.objects.filter(account=account)
    assert invoices.count() == 2
    assert sum(i.total_micros for i in invoices) == rated_costs(account)
    assert all(i.total_micros == line_sum(i) for i in invoices)


# Gapless numbers (I1) ---------------------------------------------------------------------------


def numbers() -> list[str]:
    return sorted(Invoice.objects.values_list("number", flat=True))


def test_invoice_and_statement_numbers_run_from_1_without_gaps(make_account):
    payg = make_account("voice-payg")
    prepaid = make_account("voice-prepaid", credit_micros=20 * USD)
    flex = make_account("flex-router")
    report_usage_of_458_usd(payg, now=LATER)
    invoice_thresholds(now=LATER)

    close_periods(now=AFTER_END)

    assert numbers() == [f"2026-{n:06d}" for n in range(1, 5)]
    assert InvoiceNumberSequence.objects.get(year=2026).last_number == 4
    assert {i.account_id for i in Invoice.objects.all()} == {payg.pk, prepaid.pk, flex.pk}


def test_invoice_numbers_start_again_at_1_each_year(make_account):
    make_account("voice-prepaid", at=datetime(2026, 11, 20, tzinfo=UTC))
    make_account("voice-payg", at=datetime(2026, 11, 25, tzinfo=UTC))

    close_periods(now=datetime(2026, 12, 31, tzinfo=UTC))
    close_periods(now=datetime(2027, 1, 26, tzinfo=UTC))

    assert numbers() == ["2026-000001", "2026-000002", "2027-000001", "2027-000002"]


def close_in_a_worker(now: datetime, chunk: int) -> int:
    return close_periods(now=now, chunk=chunk)


def _child(target, args, barrier, results, index):
    # The forked child opens its own database connection, never the parent's.
    connections.close_all()
    try:
        barrier.wait(timeout=60)
        results.put((index, "ok", target(*args)))
    except BaseException as exc:
        results.put((index, "error", f"{exc!r}\n{traceback.format_exc()}"))
    finally:
        connections.close_all()


def race(target, args_per_worker: list[tuple]) -> list:
    """Run `target(*args)` in one forked OS process per args, released together."""
    connections.close_all()  # children must not inherit the parent's connection
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_per_worker))
    results = context.Queue()
    workers = [
        context.Process(target=_child, args=(target, args, barrier, results, index))
        for index, args in enumerate(args_per_worker)
    ]
    for worker in workers:
        worker.start()
    outcomes = sorted(results.get(timeout=180) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    assert [detail for _, status, detail in outcomes if status == "error"] == []
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    return [value for _, _, value in outcomes]


@pytest.mark.slow
def test_two_workers_closing_the_same_periods_make_one_gapless_invoice_each(
    transactional_db, make_account
):
    # Opened on February 12: two periods behind on April 15 (Feb 12 and Mar 12).
    payg = [make_account("voice-payg", at=NOW - timedelta(days=31)) for _ in range(6)]
    prepaid = [make_account("voice-prepaid", credit_micros=50 * USD) for _ in range(6)]
    for n, account in enumerate(payg, start=1):
        # 4 minutes or more (0.56 USD): an invoice under 0.50 USD would be carried instead.
        report_minutes(account, 4 * n, now=NOW)
    for account in prepaid:
        report_minutes(account, 30, now=NOW, llm="")
    subscriptions = Subscription.objects.all()
    expected_periods = {(s.account_id, s.current_period_start) for s in subscriptions} | {
        (s.account_id, s.current_period_end) for s in subscriptions if s.account in payg
    }
    assert len(expected_periods) == 18
    expected_totals = {a.pk: reload(a).unbilled_micros for a in payg + prepaid}

    closed = race(close_in_a_worker, [(AFTER_END, 3), (AFTER_END, 5)])

    assert sum(closed) == 18
    invoices = list(Invoice.objects.all())
    assert {(i.account_id, i.period_start) for i in invoices} == expected_periods
    assert len(invoices) == 18
    assert numbers() == [f"2026-{n:06d}" for n in range(1, 19)]
    assert InvoiceNumberSequence.objects.get(year=2026).last_number == 18
    totals = {
        a.pk: sum(i.total_micros for i in invoices if i.account_id == a.pk) for a in payg + prepaid
    }
    assert totals == expected_totals  # the same as one worker closing them one by one
    assert InvoiceLine.objects.filter(invoice__account__in=payg).aggregate(t=Sum("amount_micros"))[
        "t"
    ] == sum(expected_totals[a.pk] for a in payg)
    assert close_periods(now=AFTER_END) == 0


def sweep_in_a_worker(now: datetime) -> list[str]:
    return [invoice.number for invoice in invoice_thresholds(now=now)]


@pytest.mark.slow
def test_two_threshold_sweeps_at_once_invoice_each_account_once(transactional_db, make_account):
    accounts = [make_account("voice-payg") for _ in range(4)]
    for account in accounts:
        report_minutes(account, 1500, now=LATER)  # 210 USD

    issued = race(sweep_in_a_worker, [(LATER,), (LATER,)])

    assert sorted(issued[0] + issued[1]) == [f"2026-{n:06d}" for n in range(1, 5)]
    assert sorted(Invoice.objects.values_list("account_id", flat=True)) == [a.pk for a in accounts]
    assert set(Invoice.objects.values_list("total_micros", flat=True)) == {210 * USD}
    assert [unbilled(a) for a in accounts] == [(0, 0)] * 4


# Status rules (I1) ------------------------------------------------------------------------------

ALLOWED = {
    (InvoiceStatus.DRAFT, InvoiceStatus.OPEN),
    (InvoiceStatus.DRAFT, InvoiceStatus.VOID),
    (InvoiceStatus.OPEN, InvoiceStatus.PAID),
    (InvoiceStatus.OPEN, InvoiceStatus.VOID),
    (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
    (InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID),
    (InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.VOID),
}
EVERY_CHANGE = [(a, b) for a in InvoiceStatus for b in InvoiceStatus]


def an_invoice(account: Account, status: str) -> Invoice:
    return Invoice.objects.create(
        account=account,
        number=None if status == InvoiceStatus.DRAFT else f"2026-9{Invoice.objects.count():05d}",
        kind=InvoiceKind.INVOICE,
        reason=InvoiceReason.PERIOD,
        status=status,
        period_start=NOW - timedelta(days=31),
        period_end=NOW,
        idempotency_key=f"test:{status}:{Invoice.objects.count()}",
        total_micros=25 * USD,
        amount_due_micros=25 * USD,
        created_at=NOW,
        next_payment_attempt_at=NOW if status == InvoiceStatus.OPEN else None,
    )


@pytest.mark.parametrize(("before", "after"), sorted(ALLOWED))
def test_an_allowed_status_change_is_made(make_account, before, after):
    invoice = an_invoice(make_account("voice-payg"), before)

    transition(invoice=invoice, to=after, now=LATER, reason="test")

    invoice.refresh_from_db()
    assert (invoice.status, invoice.status_reason) == (after, "test")
    if after == InvoiceStatus.PAID:
        assert invoice.paid_at == LATER
    if after == InvoiceStatus.VOID:
        assert invoice.voided_at == LATER
    if after != InvoiceStatus.OPEN:
        assert invoice.next_payment_attempt_at is None  # no longer collected
    if before == InvoiceStatus.DRAFT:  # issued now: it takes the year's next number
        assert (invoice.number, invoice.issued_at) == ("2026-000001", LATER)


@pytest.mark.parametrize(("before", "after"), sorted(set(EVERY_CHANGE) - ALLOWED))
def test_any_other_status_change_is_refused(make_account, before, after):
    invoice = an_invoice(make_account("voice-payg"), before)

    with pytest.raises(InvoiceError):
        transition(invoice=invoice, to=after, now=LATER)

    assert Invoice.objects.get(pk=invoice.pk).status == before


def test_a_status_change_from_a_stale_copy_is_refused(make_account):
    invoice = an_invoice(make_account("voice-payg"), InvoiceStatus.OPEN)
    stale = Invoice.objects.get(pk=invoice.pk)
    transition(invoice=invoice, to=InvoiceStatus.PAID, now=LATER)

    with pytest.raises(InvoiceError):
        transition(invoice=stale, to=InvoiceStatus.VOID, now=LATER)

    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID


def test_a_refused_change_of_a_draft_takes_no_number(make_account):
    account = make_account("voice-payg")
    draft = an_invoice(account, InvoiceStatus.DRAFT)
    stale = Invoice.objects.get(pk=draft.pk)
    transition(invoice=draft, to=InvoiceStatus.VOID, now=LATER)
    second = an_invoice(account, InvoiceStatus.DRAFT)

    with pytest.raises(InvoiceError):
        transition(invoice=stale, to=InvoiceStatus.OPEN, now=LATER)
    transition(invoice=second, to=InvoiceStatus.OPEN, now=LATER)

    assert Invoice.objects.get(pk=draft.pk).number == "2026-000001"
    assert Invoice.objects.get(pk=second.pk).number == "2026-000002"


def test_issued_invoices_need_a_number(make_account):
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            account=make_account("voice-payg"),
            kind=InvoiceKind.INVOICE,
            reason=InvoiceReason.PERIOD,
            status=InvoiceStatus.OPEN,
            period_start=NOW,
            period_end=LATER,
            idempotency_key="unnumbered",
            created_at=NOW,
        )
