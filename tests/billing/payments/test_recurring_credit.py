"""Recurring credit: a set amount bought once at the start of every billing period (SPEC
section 10, credits-monthly "extra credit purchasable one-time or recurring"; P2's machinery)."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from billing.invoicing.period_close import close_periods
from billing.models import (
    CreditGrant,
    EntryKind,
    Invoice,
    InvoiceKind,
    LedgerEntry,
    Notification,
    RecurringCreditPurchase,
    RecurringCreditSettings,
    TopUp,
    TopUpKind,
    TopUpStatus,
)
from billing.payments.cards import add_test_card, set_default_card
from billing.payments.recurring_credit import (
    RecurringCreditError,
    buy_recurring_credit,
    save_recurring_credit,
)
from tests.conftest import NOW

USD = 1_000_000
# Accounts opened at NOW (15 March, 12:00 UTC) have periods anchored on the 15th.
FIRST_END = datetime(2026, 4, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 5, 15, tzinfo=UTC)


@pytest.fixture
def recurring_account(make_account, django_capture_on_commit_callbacks):
    """A credits-monthly account with a test card; recurring credit not yet on."""

    def make(behaviour="succeed", *, plan="credits-monthly"):
        account = make_account(plan)
        with django_capture_on_commit_callbacks(execute=True):
            add_test_card(account=account, behaviour=behaviour, now=NOW)
        return account

    return make


def turn_on(account, capture, *, amount_micros=25 * USD, at=NOW):
    with time_machine.travel(at, tick=False), capture(execute=True):
        return save_recurring_credit(
            account=account, enabled=True, amount_micros=amount_micros, now=at
        )


def run_job(capture, *, at) -> int:
    with time_machine.travel(at, tick=False), capture(execute=True):
        return buy_recurring_credit(now=at)


def purchases(account):
    return list(TopUp.objects.filter(account=account, kind=TopUpKind.RECURRING).order_by("pk"))


def recurring_entries(account):
    return list(
        LedgerEntry.objects.filter(account=account, kind=EntryKind.RECURRING_TOPUP).values_list(
            "amount_micros", flat=True
        )
    )


def test_turning_it_on_mid_period_buys_the_current_period_at_once(
    plans_without_fees, recurring_account, django_capture_on_commit_callbacks, mailoutbox
):
    account = recurring_account()

    turn_on(account, django_capture_on_commit_callbacks)

    (topup,) = purchases(account)
    assert topup.status == TopUpStatus.SUCCEEDED
    assert topup.key == f"recurring-credit:{account.public_id}:20260315:1"
    assert recurring_entries(account) == [25 * USD]
    # A purchased grant, with no expiry, beside the plan's included 50 USD.
    grant = CreditGrant.objects.get(pk=topup.grant_id)
    assert grant.kind == EntryKind.RECURRING_TOPUP and grant.expires_at is None
    account.refresh_from_db()
    assert account.balance_micros == 75 * USD
    purchase = RecurringCreditPurchase.objects.get(account=account)
    assert (purchase.period_start, purchase.period_end) == (NOW.replace(hour=0), FIRST_END)
    [receipt] = [m for m in mailoutbox if "added to" in m.subject]
    assert receipt.subject == f"Recurring credit of $25.00 added to {account.name}"
    assert "A new billing period began" in receipt.body


def test_the_job_buys_each_period_once_however_often_it_runs(
    recurring_account, django_capture_on_commit_callbacks
):
    account = recurring_account()
    turn_on(account, django_capture_on_commit_callbacks)
    # Saving again in the same period (another amount) buys nothing more.
    turn_on(account, django_capture_on_commit_callbacks, amount_micros=30 * USD)

    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(days=3)) == 0
    started = [
        run_job(django_capture_on_commit_callbacks, at=FIRST_END + timedelta(minutes=5)),
        run_job(django_capture_on_commit_callbacks, at=FIRST_END + timedelta(minutes=20)),
    ]

    assert started == [1, 0]
    assert [t.key.rsplit(":", 2)[1] for t in purchases(account)] == ["20260315", "20260415"]
    assert recurring_entries(account) == [25 * USD, 30 * USD]
    assert RecurringCreditPurchase.objects.filter(account=account).count() == 2


def test_a_period_already_claimed_is_not_bought_again(
    recurring_account, django_capture_on_commit_callbacks
):
    """A second runner that finds the claim (the unique row) starts nothing."""
    account = recurring_account()
    turn_on(account, django_capture_on_commit_callbacks)
    RecurringCreditSettings.objects.filter(account=account).update(enabled=False)
    turn_on(account, django_capture_on_commit_callbacks)

    assert len(purchases(account)) == 1


def test_a_decline_posts_no_credit_and_is_retried_on_the_auto_top_up_back_off(
    plans_without_fees, recurring_account, django_capture_on_commit_callbacks, mailoutbox
):
    account = recurring_account("decline")
    turn_on(account, django_capture_on_commit_callbacks)

    (declined,) = purchases(account)
    assert declined.status == TopUpStatus.FAILED
    assert recurring_entries(account) == []
    account.refresh_from_db()
    assert account.balance_micros == 50 * USD
    failed = Notification.objects.get(kind="auto_topup_failed")
    assert failed.context["topup_kind"] == "recurring" and failed.context["amount"] == "$25.00"
    purchase = RecurringCreditPurchase.objects.get(account=account)
    assert purchase.next_attempt_at == NOW + timedelta(hours=1)

    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(minutes=30)) == 0
    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(hours=1)) == 1
    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(hours=7)) == 1
    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(hours=31)) == 1
    # After the third back-off it waits for the customer.
    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(days=5)) == 0

    assert [t.key.rsplit(":", 1)[1] for t in purchases(account)] == ["1", "2", "3", "4"]
    assert {t.status for t in purchases(account)} == {TopUpStatus.FAILED}
    purchase.refresh_from_db()
    assert purchase.consecutive_failures == 4 and purchase.next_attempt_at is None
    assert recurring_entries(account) == []


def test_a_new_card_and_saving_again_pays_the_declined_period(
    recurring_account, django_capture_on_commit_callbacks
):
    account = recurring_account("decline")
    turn_on(account, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        card = add_test_card(account=account, behaviour="succeed", now=NOW)
        set_default_card(account=account, card_id=card.pk, now=NOW)

    turn_on(account, django_capture_on_commit_callbacks, at=NOW + timedelta(minutes=10))

    assert [t.status for t in purchases(account)] == [TopUpStatus.FAILED, TopUpStatus.SUCCEEDED]
    assert recurring_entries(account) == [25 * USD]


def test_a_card_needing_authentication_emails_a_link_and_is_not_retried(
    recurring_account, django_capture_on_commit_callbacks
):
    account = recurring_account("require_action")
    turn_on(account, django_capture_on_commit_callbacks)

    (waiting,) = purchases(account)
    assert waiting.status == TopUpStatus.REQUIRES_ACTION
    assert Notification.objects.filter(kind="auto_topup_action_required").count() == 1
    assert run_job(django_capture_on_commit_callbacks, at=NOW + timedelta(days=2)) == 0


def test_the_amount_must_reach_the_plans_minimum_top_up(recurring_account):
    account = recurring_account()

    with pytest.raises(RecurringCreditError, match=r"at least the minimum top-up, \$10\.00"):
        save_recurring_credit(account=account, enabled=True, amount_micros=9_990_000, now=NOW)
    assert not RecurringCreditSettings.objects.exists()


def test_a_plan_without_auto_top_up_refuses_recurring_credit(recurring_account):
    account = recurring_account(plan="llm-api")

    with pytest.raises(RecurringCreditError, match="not available on the LLM API plan"):
        save_recurring_credit(account=account, enabled=True, amount_micros=20 * USD, now=NOW)
    assert not RecurringCreditSettings.objects.exists()


def test_turned_off_it_buys_nothing(recurring_account, django_capture_on_commit_callbacks):
    account = recurring_account()
    save_recurring_credit(account=account, enabled=False, amount_micros=25 * USD, now=NOW)

    assert run_job(django_capture_on_commit_callbacks, at=FIRST_END + timedelta(minutes=5)) == 0
    assert purchases(account) == []


def test_the_period_statement_shows_the_purchase(
    recurring_account, django_capture_on_commit_callbacks
):
    account = recurring_account()
    turn_on(account, django_capture_on_commit_callbacks)

    with time_machine.travel(FIRST_END + timedelta(hours=1), tick=False):
        close_periods(now=FIRST_END + timedelta(hours=1))

    statement = Invoice.objects.get(account=account, kind=InvoiceKind.STATEMENT)
    lines = {
        line.component: (line.description, line.amount_micros) for line in statement.lines.all()
    }
    assert lines[f"ledger:{EntryKind.RECURRING_TOPUP}"] == ("Recurring credit purchases", 25 * USD)
    assert statement.opening_balance_micros == 0


@pytest.mark.slow
def test_six_processes_running_the_job_at_once_buy_the_period_once(
    transactional_db, plans_without_fees, make_account
):
    from tests.billing.processes import run_in_processes

    account = make_account("credits-monthly")
    add_test_card(account=account, behaviour="succeed", now=NOW)
    RecurringCreditSettings.objects.create(account=account, enabled=True, amount_micros=25 * USD)

    started = run_in_processes(buy_in_process, [() for _ in range(6)])

    assert sorted(started) == [0, 0, 0, 0, 0, 1]
    (topup,) = purchases(account)
    assert topup.status == TopUpStatus.SUCCEEDED
    assert recurring_entries(account) == [25 * USD]
    account.refresh_from_db()
    assert account.balance_micros == 75 * USD


def buy_in_process():
    return buy_recurring_credit(now=NOW + timedelta(minutes=5))
