"""The plan fee of an account's first period (issue 19, issue 14 item 1): an account opened
directly on a fee plan pays the fee of the period it opens in, once, before its included
allowance is granted; however it is opened (sign-up form, create_account command, the
platform's API, a subaccount).

Accounts open at tests.conftest.NOW, 2026-03-15 12:00 UTC, on anchor day 15: the first period
is [2026-03-15 00:00, 2026-04-15 00:00), 31 days, of which 30.5 are left at opening. The fee
is prorated by the second: 45 USD * 30.5 / 31 = 45 USD * 61 / 62 = 44.274193548... USD,
rounded half-up to 44,274,194 micro-dollars; the card invoice asks for 44.27 USD.
"""

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.test import override_settings

from accounts.models import Account, Membership
from billing.invoicing.plan_fees import FEE_COMPONENT
from billing.models import (
    Allowance,
    CreditGrant,
    EntryKind,
    FeePaidBy,
    Invoice,
    InvoiceReason,
    InvoiceStatus,
    LedgerEntry,
    Plan,
    PlanFee,
    PlanFeeCharge,
    Subscription,
)
from billing.payments.collection import collect_due_invoices, retry_account_invoices
from billing.payments.plan_changes import preview_plan_change
from billing.plans.subaccounts import create_subaccount
from tests.billing.usage_reports import (
    USD,
    add_card,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
)
from tests.conftest import NOW

FIRST_FEE = 44_274_194  # 45 USD * 61 / 62, rounded half-up (see the module docstring)
PASSWORD = "correct horse battery staple"


def open_by_signup_form(client, make_account, make_key):
    Plan.objects.filter(code="credits-monthly").update(selectable_at_signup=True)
    with override_settings(SIGNUP_PLAN_CODE="credits-monthly"):
        response = client.post(
            "/accounts/signup/",
            {"email": "new@example.test", "password1": PASSWORD, "password2": PASSWORD},
        )
    assert response.status_code == 302
    return Membership.objects.get(user__email="new@example.test").account


def open_by_command(client, make_account, make_key):
    out = StringIO()
    call_command(
        "create_account",
        "--email",
        "ops@example.test",
        "--plan",
        "credits-monthly",
        "--json",
        stdout=out,
        stderr=StringIO(),
    )
    return Account.objects.get(public_id=json.loads(out.getvalue())["account"])


def open_by_api(client, make_account, make_key):
    body = {
        "external_id": "ws_1",
        "name": "Acme Voice",
        "email": "billing@acme.example",
        "plan": "credits-monthly",
    }
    response = client.post(
        "/api/v1/customers",
        json.dumps(body),
        "application/json",
        HTTP_AUTHORIZATION=f"Bearer {make_key().token}",
    )
    assert response.status_code == 201, response.content
    return Account.objects.get(external_id="ws_1")


def open_as_subaccount(client, make_account, make_key):
    parent = make_account("voice-prepaid")
    return create_subaccount(
        parent=parent,
        name="Client A",
        plan_code="credits-monthly",
        email="",
        actor=None,
        now=NOW,
    )


OPENINGS = [open_by_signup_form, open_by_command, open_by_api, open_as_subaccount]


@pytest.fixture(autouse=True)
def opened_at_now():
    """The sign-up form, the command and the API read the clock; they all open at NOW."""
    with time_machine.travel(NOW, tick=False):
        yield


def included_credit(account):
    return list(
        CreditGrant.objects.filter(account=account, kind=EntryKind.ALLOWANCE).values_list(
            "amount_micros", flat=True
        )
    )


@pytest.mark.parametrize("opening", OPENINGS, ids=lambda f: f.__name__)
def test_every_way_of_opening_an_account_on_a_fee_plan_charges_its_first_period_once(
    client, plans, make_account, make_key, opening
):
    account = opening(client, make_account, make_key)

    charge = PlanFeeCharge.objects.get(account=account)
    subscription = Subscription.objects.get(account=account)
    assert (charge.period_start, charge.period_end) == (
        subscription.current_period_start,
        subscription.current_period_end,
    )
    assert (charge.amount_micros, charge.paid_by, charge.paid_at) == (
        FIRST_FEE,
        FeePaidBy.CARD,
        None,
    )
    invoice = Invoice.objects.get(account=account)
    assert invoice == charge.invoice
    assert (invoice.reason, invoice.status) == (InvoiceReason.PLAN_FEE, InvoiceStatus.OPEN)
    assert invoice.amount_due_micros == 44_270_000
    assert [line.component for line in invoice.lines.all()] == [FEE_COMPONENT]
    # Nothing included before the fee is paid.
    assert subscription.allowance_locked
    assert included_credit(account) == []
    assert reload(account).balance_micros == 0


def test_the_first_fee_waits_for_a_card_without_making_the_new_account_past_due(make_account):
    account = make_account("credits-monthly")
    invoice = Invoice.objects.get(account=account)
    assert invoice.next_payment_attempt_at is None

    assert collect_due_invoices(now=NOW + timedelta(days=7)) == 0

    assert invoice.payments.count() == 0
    assert reload(account).past_due_since is None


def test_paying_the_first_fee_with_a_new_card_releases_the_included_credit_once(make_account):
    account = make_account("credits-monthly")
    add_card(account)

    retry_account_invoices(account=account, now=NOW)
    retry_account_invoices(account=account, now=NOW)

    invoice = Invoice.objects.get(account=account)
    assert invoice.status == InvoiceStatus.PAID
    assert PlanFeeCharge.objects.get(account=account).paid_at == NOW
    assert not Subscription.objects.get(account=account).allowance_locked
    assert included_credit(account) == [plans_included_credit(account)]
    # The card paid the fee: the balance holds the included credit alone.
    assert reload(account).balance_micros == plans_included_credit(account)


def plans_included_credit(account):
    return Subscription.objects.get(account=account).plan.included_credit_micros


def test_a_postpaid_first_fee_is_the_first_line_of_its_first_invoice_and_the_ledger_carries_it(
    make_account, plans
):
    plan = plans["voice-enterprise"]
    PlanFee.objects.create(plan=plan, amount_micros=310 * USD, effective_from=NOW)
    account = make_account("voice-enterprise")

    invoice = Invoice.objects.get(account=account)
    line = invoice.lines.order_by("position").first()
    assert (line.component, line.amount_micros) == (FEE_COMPONENT, 305 * USD)  # 310 * 30.5 / 31
    charge = PlanFeeCharge.objects.get(account=account)
    assert (charge.paid_by, charge.invoice) == (FeePaidBy.INVOICE, invoice)
    assert reload(account).balance_micros == -305 * USD
    assert Allowance.objects.get(account=account).included_seconds == 0
    assert invoice.next_payment_attempt_at is None

    add_card(account)
    retry_account_invoices(account=account, now=NOW)

    assert reload(account).balance_micros == 0
    assert Allowance.objects.get(account=account).included_seconds == plan.included_minutes * 60
    assert not Subscription.objects.get(account=account).allowance_locked


def test_welcome_credit_never_pays_the_first_fee_of_a_plan_paid_from_credit(make_account, plans):
    Plan.objects.filter(code="credits-monthly").update(fee_payment="credit")

    account = make_account("credits-monthly", credit_micros=100 * USD)

    assert PlanFeeCharge.objects.get(account=account).paid_by == FeePaidBy.CARD
    assert included_credit(account) == []
    assert reload(account).balance_micros == 100 * USD


def test_a_plan_without_a_fee_opens_as_before(make_account, plans_without_fees):
    account = make_account("credits-monthly")

    assert not PlanFeeCharge.objects.filter(account=account).exists()
    assert not Invoice.objects.filter(account=account).exists()
    assert not Subscription.objects.get(account=account).allowance_locked
    assert included_credit(account) == [50 * USD]
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.PLAN_FEE).exists()


def test_an_unpaid_first_fee_gives_nothing_back_on_a_plan_change_and_a_paid_one_does(
    make_account, plans
):
    # The money gap: a prepaid account whose first fee's invoice is still open must not turn a
    # change of plan into balance credit for a fee it never paid.
    account = make_account("credits-monthly")
    subscription = Subscription.objects.select_related("plan").get(account=account)
    later = NOW + timedelta(days=10)

    unpaid = preview_plan_change(
        account=account,
        subscription=subscription,
        plan=plans["voice-prepaid"],
        when="now",
        now=later,
    )

    add_card(account)
    retry_account_invoices(account=account, now=NOW)
    paid = preview_plan_change(
        account=account,
        subscription=subscription,
        plan=plans["voice-prepaid"],
        when="now",
        now=later,
    )

    assert unpaid.proration.credit_micros == 0
    # 45 USD for the 31-day period, 20.5 days of it left at the change: 45 * 20.5 / 31.
    assert paid.proration.credit_micros == round(45 * USD * 41 / 62)
