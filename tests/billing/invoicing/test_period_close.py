"""Period close: invoices and statements, allowances, included credit, plan changes and the
minimum charge (SPEC I3, I4, S2, U9).

Accounts open on 2026-03-15 (tests.conftest.NOW), so their first period is
[2026-03-15, 2026-04-15); closing "after the end" passes a `now` past 2026-04-15.
"""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from billing.invoicing.period_close import close_periods
from billing.models import (
    Allowance,
    CreditGrant,
    EntryKind,
    Invoice,
    InvoiceKind,
    InvoicePayment,
    InvoiceReason,
    InvoiceStatus,
    LedgerEntry,
    Subscription,
    UnbilledLine,
)
from billing.payments.collection import collect_due_invoices
from tests.billing.postings import credit_back, post_entry
from tests.billing.usage_reports import (
    USD,
    add_card,
    components,
    entries,
    flex_request,
    fresh_test_gateway,  # noqa: F401 - autouse
    line_sum,
    no_ledger_drift,  # noqa: F401 - autouse
    rated_costs,
    reload,
    report_minutes,
    unbilled,
)
from tests.conftest import NOW
from usage.ingest.calls import refund_call

# Included credit and period close as on a plan without a fee (plan fees: test_plan_fees.py).
pytestmark = pytest.mark.usefixtures("plans_without_fees")

FIRST_START = datetime(2026, 3, 15, tzinfo=UTC)
FIRST_END = datetime(2026, 4, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 5, 15, tzinfo=UTC)
THIRD_END = datetime(2026, 6, 15, tzinfo=UTC)
DURING_FIRST = NOW + timedelta(days=3)
AFTER_FIRST = FIRST_END + timedelta(hours=1)
DURING_SECOND = FIRST_END + timedelta(days=3)
AFTER_SECOND = SECOND_END + timedelta(hours=1)


def documents(account) -> list[Invoice]:
    return list(Invoice.objects.filter(account=account).order_by("period_start", "pk"))


def statement_balances(statement: Invoice) -> tuple[int, int, int, int]:
    """Return opening, the ledger lines (money in and out), usage lines (costs) and closing."""
    ledger_lines = sum(
        line.amount_micros for line in statement.lines.all() if line.component.startswith("ledger:")
    )
    usage_lines = sum(
        line.amount_micros
        for line in statement.lines.all()
        if not line.component.startswith("ledger:")
    )
    return (
        statement.opening_balance_micros,
        ledger_lines,
        usage_lines,
        statement.closing_balance_micros,
    )


# Invoices and statements (I3) -------------------------------------------------------------------


def test_nothing_closes_before_the_period_ends(make_account):
    make_account("voice-payg")

    assert close_periods(now=FIRST_END - timedelta(microseconds=1)) == 0
    assert not Invoice.objects.exists()


def test_a_postpaid_account_is_invoiced_its_unbilled_lines_when_the_period_ends(make_account):
    account = make_account("voice-payg")
    report_minutes(account, 100, now=DURING_FIRST)
    report_minutes(account, 10, now=DURING_FIRST, llm="claude-sonnet-4")
    before = sorted(
        UnbilledLine.objects.filter(account=account).values_list(
            "component", "model", "quantity", "amount_micros"
        )
    )

    assert close_periods(now=FIRST_END) == 1  # the end instant is in the next period

    [invoice] = documents(account)
    assert (invoice.kind, invoice.reason, invoice.status) == (
        InvoiceKind.INVOICE,
        InvoiceReason.PERIOD,
        InvoiceStatus.OPEN,
    )
    assert (invoice.period_start, invoice.period_end) == (FIRST_START, FIRST_END)
    assert (
        sorted(invoice.lines.values_list("component", "model", "quantity", "amount_micros"))
        == before
    )
    assert invoice.total_micros == line_sum(invoice) == rated_costs(account) == 15_500_000
    assert invoice.amount_due_micros == 15_500_000
    assert unbilled(account) == (0, 0)
    subscription = Subscription.objects.get(account=account)
    assert (subscription.current_period_start, subscription.current_period_end) == (
        FIRST_END,
        SECOND_END,
    )
    assert subscription.last_closed_at == FIRST_END


def test_usage_after_the_close_goes_on_the_next_periods_invoice(make_account):
    account = make_account("voice-payg")
    report_minutes(account, 100, now=DURING_FIRST)
    close_periods(now=AFTER_FIRST)
    report_minutes(account, 50, now=DURING_SECOND)

    close_periods(now=AFTER_SECOND)

    first, second = documents(account)
    assert (second.period_start, second.period_end) == (FIRST_END, SECOND_END)
    assert [first.total_micros, second.total_micros] == [14 * USD, 7 * USD]


def test_a_postpaid_account_without_usage_gets_an_invoice_of_nothing_that_is_not_charged(
    make_account,
):
    account = make_account("voice-payg")
    add_card(account)

    close_periods(now=AFTER_FIRST)

    [invoice] = documents(account)
    assert (invoice.total_micros, invoice.amount_due_micros) == (0, 0)
    assert invoice.status == InvoiceStatus.PAID
    assert collect_due_invoices(now=AFTER_FIRST) == 0
    assert not InvoicePayment.objects.exists()


def test_a_prepaid_account_gets_a_statement_whose_opening_plus_movements_is_its_closing(
    make_account,
):
    account = make_account("voice-prepaid", credit_micros=30 * USD)
    post_entry(account=account, amount_micros=20 * USD, kind=EntryKind.TOPUP, now=DURING_FIRST)
    report_minutes(account, 0, now=DURING_FIRST, llm="", extra_seconds=83)  # 0.110667 USD
    refunded = report_minutes(account, 10, now=DURING_FIRST, llm="")  # 0.80 USD, refunded
    refund_call(call_id=refunded.call_id, now=DURING_FIRST)

    close_periods(now=AFTER_FIRST)

    [statement] = documents(account)
    assert (statement.kind, statement.status, statement.amount_due_micros) == (
        InvoiceKind.STATEMENT,
        InvoiceStatus.PAID,
        0,
    )
    opening, money_in_and_out, usage, closing = statement_balances(statement)
    assert opening == 0
    assert closing == reload(account).balance_micros == 50 * USD - 110_667
    assert opening + money_in_and_out - usage == closing
    entered = sum(e.amount_micros for e in entries(account))
    assert opening + entered == closing
    assert components(statement) == {
        "call": 110_667 + 800_000,
        "refunds": -800_000,
        "ledger:promotional": 30 * USD,
        "ledger:topup": 20 * USD,
    }
    assert statement.total_micros == rated_costs(account) == 910_667


def test_a_staff_credit_back_is_a_line_of_the_statement_and_a_call_refund_is_not_counted_twice(
    make_account,
):
    account = make_account("voice-prepaid", credit_micros=50 * USD)
    report_minutes(account, 10, now=DURING_FIRST, llm="")  # 0.80 USD
    refunded = report_minutes(account, 5, now=DURING_FIRST, llm="")  # 0.40 USD, refunded
    refund_call(call_id=refunded.call_id, now=DURING_FIRST)
    credit_back(
        account=reload(account),
        amount_micros=3 * USD,
        reason="Goodwill after an outage",
        idempotency_key="goodwill-1",
        now=DURING_FIRST,
    )

    close_periods(now=AFTER_FIRST)

    [statement] = documents(account)
    assert components(statement) == {
        "call": 1_200_000,
        "refunds": -400_000,
        "ledger:promotional": 50 * USD,
        "ledger:refund": 3 * USD,
    }
    opening, money_in_and_out, usage, closing = statement_balances(statement)
    assert closing == reload(account).balance_micros == 50 * USD - 800_000 + 3 * USD
    assert opening + money_in_and_out - usage == closing


def test_the_next_statement_opens_at_the_previous_closing_balance(make_account):
    account = make_account("credits-monthly")
    post_entry(account=account, amount_micros=20 * USD, kind=EntryKind.TOPUP, now=DURING_FIRST)
    report_minutes(account, 100, now=DURING_FIRST, llm="")  # 10 USD at 0.10
    close_periods(now=AFTER_FIRST)
    report_minutes(account, 50, now=DURING_SECOND, llm="")  # 5 USD

    close_periods(now=AFTER_SECOND)

    first, second = documents(account)
    assert first.closing_balance_micros == 20 * USD  # 40 USD of included credit expired
    assert second.opening_balance_micros == first.closing_balance_micros
    assert second.closing_balance_micros == reload(account).balance_micros - 50 * USD
    for statement in (first, second):
        opening, money_in_and_out, usage, closing = statement_balances(statement)
        assert opening + money_in_and_out - usage == closing
    assert components(second) == {
        "call": 5 * USD,
        "ledger:allowance": 50 * USD,
        "ledger:expiry": -45 * USD,
    }


def test_running_close_periods_twice_makes_no_duplicate(make_account):
    payg = make_account("voice-payg")
    prepaid = make_account("voice-prepaid", credit_micros=20 * USD)
    report_minutes(payg, 100, now=DURING_FIRST)
    report_minutes(prepaid, 100, now=DURING_FIRST, llm="")
    assert close_periods(now=AFTER_FIRST) == 2
    snapshot = list(Invoice.objects.order_by("pk").values_list("pk", "number", "total_micros"))

    assert close_periods(now=AFTER_FIRST) == 0
    assert close_periods(now=AFTER_FIRST + timedelta(hours=1)) == 0

    assert (
        list(Invoice.objects.order_by("pk").values_list("pk", "number", "total_micros")) == snapshot
    )


def test_a_close_that_crashed_between_chunks_resumes_without_duplicates_or_gaps(
    make_account, monkeypatch
):
    from billing.invoicing import period_close

    accounts = [make_account("voice-payg") for _ in range(5)]
    for n, account in enumerate(accounts, start=1):
        # 4 minutes or more (0.56 USD): an invoice under 0.50 USD would be carried instead.
        report_minutes(account, 4 * n, now=DURING_FIRST)
    save_drafts = period_close.save_drafts
    calls = []

    def crash_on_the_second_chunk(drafts, *, now):
        calls.append(len(drafts))
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return save_drafts(drafts, now=now)

    monkeypatch.setattr(period_close, "save_drafts", crash_on_the_second_chunk)
    with pytest.raises(RuntimeError):
        close_periods(now=AFTER_FIRST, chunk=2)
    assert Invoice.objects.count() == 2  # the first chunk was committed
    monkeypatch.setattr(period_close, "save_drafts", save_drafts)

    assert close_periods(now=AFTER_FIRST, chunk=2) == 3

    assert sorted(Invoice.objects.values_list("account_id", flat=True)) == [a.pk for a in accounts]
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [
        f"2026-{n:06d}" for n in range(1, 6)
    ]
    assert [i.total_micros for i in Invoice.objects.order_by("account_id")] == [
        4 * n * 140_000 for n in range(1, 6)
    ]


def test_an_account_several_periods_behind_gets_one_document_per_period(make_account):
    payg = make_account("voice-payg")
    prepaid = make_account("voice-prepaid", credit_micros=20 * USD)
    report_minutes(payg, 100, now=DURING_FIRST)
    report_minutes(prepaid, 100, now=DURING_FIRST, llm="")
    three_periods_later = THIRD_END + timedelta(days=5)

    assert close_periods(now=three_periods_later) == 6

    for account in (payg, prepaid):
        periods = [(d.period_start, d.period_end) for d in documents(account)]
        assert periods == [
            (FIRST_START, FIRST_END),
            (FIRST_END, SECOND_END),
            (SECOND_END, THIRD_END),
        ]
        subscription = Subscription.objects.get(account=account)
        assert subscription.current_period_start == THIRD_END
    assert [d.total_micros for d in documents(payg)] == [14 * USD, 0, 0]
    statements = documents(prepaid)
    for earlier, later in pairwise(statements):
        assert later.opening_balance_micros == earlier.closing_balance_micros
    assert statements[-1].closing_balance_micros == 12 * USD
    assert close_periods(now=three_periods_later) == 0


def test_included_credit_is_not_granted_for_periods_that_ended_before_the_close(make_account):
    account = make_account("credits-monthly")
    report_minutes(account, 100, now=DURING_FIRST, llm="")

    close_periods(now=THIRD_END + timedelta(days=5))

    statements = documents(account)
    assert len(statements) == 3
    for earlier, later in pairwise(statements):
        assert later.opening_balance_micros == earlier.closing_balance_micros
    # Only the period that is still running got its 50 USD.
    grants = entries(account, EntryKind.ALLOWANCE)
    assert [e.amount_micros for e in grants] == [50 * USD, 50 * USD]
    assert reload(account).balance_micros == 50 * USD
    assert CreditGrant.objects.get(account=account, remaining_micros__gt=0).expires_at == (
        datetime(2026, 7, 15, tzinfo=UTC)
    )


# Included minutes (U9) --------------------------------------------------------------------------


def allowance(account, start) -> Allowance:
    return Allowance.objects.get(account=account, period_start=start)


def test_enterprise_usage_within_the_included_minutes_is_free_and_shown_as_allowance(
    make_account,
):
    account = make_account("voice-enterprise")
    report_minutes(account, 1000, now=DURING_FIRST)

    close_periods(now=AFTER_FIRST)

    [invoice] = documents(account)
    assert invoice.total_micros == invoice.amount_due_micros == 0
    assert invoice.status == InvoiceStatus.PAID
    # Only the minutes the allowance paid for: no rate line is priced at nothing.
    assert components(invoice) == {"allowance": 0}
    line = invoice.lines.get(component="allowance")
    assert (line.quantity, line.unit, line.description) == (
        1000 * 60,
        "second",
        "Included minutes used",
    )
    assert allowance(account, FIRST_START).used_seconds == 1000 * 60


def test_enterprise_usage_beyond_the_6000_included_minutes_is_charged(make_account):
    account = make_account("voice-enterprise")
    for n in range(6):  # all connected in the first period, whose minutes they use
        report_minutes(account, 1000, now=DURING_FIRST, ended_at=NOW + timedelta(days=1 + n / 3))
    report_minutes(account, 10, now=DURING_FIRST)  # overage: 10 min at 0.14

    close_periods(now=AFTER_FIRST)

    [invoice] = documents(account)
    assert components(invoice) == {"allowance": 0, "llm": 500_000, "voice_engine": 900_000}
    assert invoice.lines.get(component="allowance").quantity == 6000 * 60
    assert invoice.total_micros == rated_costs(account) == 1_400_000
    assert invoice.status == InvoiceStatus.OPEN


def test_unused_included_minutes_roll_over_into_the_next_period(make_account):
    account = make_account("voice-enterprise")
    assert Subscription.objects.get(account=account).rollover_enabled
    report_minutes(account, 1000, now=DURING_FIRST)

    close_periods(now=AFTER_FIRST)

    next_allowance = allowance(account, FIRST_END)
    assert next_allowance.period_end == SECOND_END
    assert next_allowance.included_seconds == 6000 * 60
    assert next_allowance.rollover_seconds == 5000 * 60
    assert next_allowance.remaining_seconds == 11000 * 60

    close_periods(now=AFTER_SECOND)  # nothing used in the second period: all of it rolls on

    assert allowance(account, SECOND_END).rollover_seconds == 11000 * 60


def test_rolled_over_minutes_are_spent_before_anything_is_charged(make_account):
    account = make_account("voice-enterprise")
    report_minutes(account, 1000, now=DURING_FIRST)
    close_periods(now=AFTER_FIRST)
    for _ in range(11):  # 6,000 included + 5,000 rolled over
        report_minutes(account, 1000, now=DURING_SECOND + timedelta(days=2))

    close_periods(now=AFTER_SECOND)

    second = documents(account)[1]
    assert second.total_micros == 0
    assert second.lines.get(component="allowance").quantity == 11000 * 60


def test_unused_included_minutes_expire_when_rollover_is_off(make_account):
    account = make_account("voice-enterprise")
    Subscription.objects.filter(account=account).update(rollover_enabled=False)
    report_minutes(account, 1000, now=DURING_FIRST)

    close_periods(now=AFTER_FIRST)

    next_allowance = allowance(account, FIRST_END)
    assert (next_allowance.included_seconds, next_allowance.rollover_seconds) == (6000 * 60, 0)


# Included credit (credits-monthly, seed 002) ----------------------------------------------------


def test_the_included_credit_is_granted_each_period_and_unused_credit_expires(make_account):
    account = make_account("credits-monthly")
    assert reload(account).balance_micros == 50 * USD
    report_minutes(account, 100, now=DURING_FIRST, llm="")  # 10 USD at 0.10

    close_periods(now=AFTER_FIRST)

    [expiry] = entries(account, EntryKind.EXPIRY)
    assert expiry.amount_micros == -40 * USD
    assert expiry.created_at == AFTER_FIRST
    granted = entries(account, EntryKind.ALLOWANCE)
    assert [e.amount_micros for e in granted] == [50 * USD, 50 * USD]
    assert granted[-1].grant.expires_at == SECOND_END
    assert reload(account).balance_micros == 50 * USD  # no carry-over
    [statement] = documents(account)
    assert components(statement)["ledger:expiry"] == -40 * USD
    assert statement.closing_balance_micros == 0


def test_bought_credit_outlives_the_period_and_is_spent_after_the_included_credit(make_account):
    account = make_account("credits-monthly")
    post_entry(account=account, amount_micros=20 * USD, kind=EntryKind.TOPUP, now=NOW)
    report_minutes(account, 100, now=DURING_FIRST, llm="")  # 10 USD, from the included credit

    close_periods(now=AFTER_FIRST)

    assert reload(account).balance_micros == 20 * USD + 50 * USD
    topup = CreditGrant.objects.get(account=account, kind=EntryKind.TOPUP)
    assert topup.remaining_micros == 20 * USD


# Plan changes (S2) ------------------------------------------------------------------------------


def test_a_pending_plan_takes_effect_when_the_period_changes(make_account, plans):
    account = make_account("voice-payg")
    Subscription.objects.filter(account=account).update(pending_plan=plans["voice-enterprise"])
    report_minutes(account, 100, now=DURING_FIRST)  # still billed on voice-payg

    close_periods(now=AFTER_FIRST)

    subscription = Subscription.objects.get(account=account)
    assert subscription.plan.code == "voice-enterprise"
    assert subscription.pending_plan is None
    [invoice] = documents(account)
    assert invoice.total_micros == 14 * USD
    assert allowance(account, FIRST_END).included_seconds == 6000 * 60
    report_minutes(account, 100, now=DURING_SECOND)  # now within the included minutes
    close_periods(now=AFTER_SECOND)
    assert documents(account)[1].total_micros == 0


# Minimum charge (I4) ----------------------------------------------------------------------------


def test_commission_under_the_minimum_charge_is_carried_to_the_next_invoice(make_account):
    account = make_account("flex-router")
    add_card(account)
    flex_request(account, now=DURING_FIRST)  # 0.0144 USD

    close_periods(now=AFTER_FIRST)
    collect_due_invoices(now=AFTER_FIRST)

    [invoice] = documents(account)
    assert components(invoice) == {"commission": 14_400, "carried_to_next": -14_400}
    carried = invoice.lines.get(component="carried_to_next")
    assert "20.00" in carried.description
    assert invoice.total_micros == invoice.amount_due_micros == 0
    assert invoice.status == InvoiceStatus.PAID
    assert not InvoicePayment.objects.exists()  # nothing charged
    assert unbilled(account) == (14_400, 1)
    assert UnbilledLine.objects.get(account=account).component == "carried_forward"
    assert not LedgerEntry.objects.filter(kind=EntryKind.INVOICE_PAYMENT).exists()


def test_the_next_invoice_shows_the_carried_forward_amount(make_account):
    account = make_account("flex-router")
    flex_request(account, now=DURING_FIRST)
    close_periods(now=AFTER_FIRST)
    flex_request(account, now=DURING_SECOND)

    close_periods(now=AFTER_SECOND)

    second = documents(account)[1]
    assert components(second) == {
        "commission": 14_400,
        "carried_forward": 14_400,
        "carried_to_next": -28_800,
    }
    assert second.total_micros == 0
    assert unbilled(account) == (28_800, 1)


def test_commission_is_invoiced_and_charged_once_it_reaches_the_minimum(make_account):
    account = make_account("flex-router")
    add_card(account)
    # 20% of (60 - 10) = 10 USD, plus the 0.0144 of the worked example: under 20 USD.
    flex_request(account, now=DURING_FIRST, standard="60", flex="10")
    flex_request(account, now=DURING_FIRST)
    close_periods(now=AFTER_FIRST)
    flex_request(account, now=DURING_SECOND, standard="60", flex="10")
    flex_request(account, now=DURING_SECOND)

    close_periods(now=AFTER_SECOND)
    assert collect_due_invoices(now=AFTER_SECOND) == 1

    first, second = documents(account)
    assert first.total_micros == 0
    assert components(second) == {"commission": 10_014_400, "carried_forward": 10_014_400}
    assert second.total_micros == 20_028_800 == rated_costs(account)
    assert second.amount_due_micros == 20_030_000
    assert second.rounding_micros == 1_200
    second.refresh_from_db()
    assert second.status == InvoiceStatus.PAID
    [payment] = InvoicePayment.objects.all()
    assert payment.amount_micros == 20_030_000
    [paid] = entries(account, EntryKind.INVOICE_PAYMENT)
    assert paid.amount_micros == 20_028_800
    assert reload(account).balance_micros == 0  # every commission entry is paid
    assert unbilled(account) == (0, 0)


def test_standard_routing_and_anthropic_add_nothing_to_the_commission_invoice(make_account):
    account = make_account("flex-router")
    flex_request(account, now=DURING_FIRST, start_within="default")
    flex_request(account, now=DURING_FIRST, start_within="priority")
    flex_request(account, now=DURING_FIRST, provider="anthropic", model="claude-sonnet-4")
    flex_request(account, now=DURING_FIRST, standard="0.08", flex="0.09")  # flex was dearer

    close_periods(now=AFTER_FIRST)

    [invoice] = documents(account)
    assert invoice.total_micros == line_sum(invoice) == 0
    assert unbilled(account) == (0, 0)
