"""Fixtures of the staff money-action tests (billing.staff; SPEC P4, S1, S2, I1, L2).

Usage is rated by the real services (`usage.ingest.calls.report_call`); invoices are cut and charged
by `billing.invoicing.invoices` and `billing.payments.collection`; top-ups are paid on the test-mode
payment page. The autouse fixtures imported here (test-mode payments, a fresh test gateway, no
ledger drift) apply to every test of the package.
"""

from datetime import timedelta
from decimal import Decimal

import pytest

from billing.invoicing.invoices import invoice_thresholds
from billing.models import Plan, Rate, RateComponent
from tests.billing.staff.scenery import ISSUED, charged_sms, topup_of
from tests.billing.staff_data import (
    USD,
    paid_topup,
    payments_in_test_mode,  # noqa: F401 - autouse
    staff_member,
)
from tests.billing.usage_reports import (
    fresh_test_gateway,  # noqa: F401 - autouse
    report_usage_of_458_usd,
)
from tests.conftest import NOW
from tests.usage.metering import call, no_ledger_drift  # noqa: F401 - autouse
from usage.ingest.calls import report_call

# Staff members of the groups migration 0010 made -------------------------------------------------


@pytest.fixture
def support(db):
    return staff_member("Support")


@pytest.fixture
def finance(db):
    return staff_member("Finance")


@pytest.fixture
def second_finance(db):
    return staff_member("Finance")


@pytest.fixture
def no_group(db):
    return staff_member()


# Scenery -----------------------------------------------------------------------------------------


@pytest.fixture
def prepaid(make_account):
    """A voice-prepaid account (0.08 USD/min) holding a paid 50 USD top-up."""
    account = make_account()
    paid_topup(account, 50 * USD, now=NOW)
    return account


@pytest.fixture
def open_invoice(make_account):
    """A voice-payg account's 458 USD threshold invoice, issued and not charged yet."""
    account = make_account("voice-payg")
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)
    return invoice


@pytest.fixture
def dearer_plan(plans) -> Plan:
    """voice-prepaid at 0.12 USD a minute instead of 0.08."""
    plan = Plan.objects.get(code="voice-prepaid")
    plan.pk = None
    plan._state.adding = True
    plan.code, plan.name = "voice-prepaid-plus", "Voice Prepaid Plus"
    plan.save()
    Rate.objects.create(
        plan=plan,
        component=RateComponent.CALL,
        price=Decimal("0.12"),
        effective_from=NOW - timedelta(days=60),
    )
    return plan


@pytest.fixture
def locked_child(prepaid, make_account):
    """A credits-monthly subaccount of `prepaid` whose included credit waits for approval."""
    return make_account("credits-monthly", parent=prepaid, allowance_locked=True)


@pytest.fixture
def scene(prepaid, open_invoice, dearer_plan, locked_child):
    return {
        "account": prepaid,
        "topup": topup_of(prepaid),
        "call": report_call(report=call(prepaid, 180), now=NOW)[0],
        "event": charged_sms(prepaid),
        "invoice": open_invoice,
        "locked_child": locked_child,
    }
