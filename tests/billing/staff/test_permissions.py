"""Who may do which staff money action: the Support and Finance groups, the Support limit
(SPEC P4, S1).
"""

import pytest
from django.core.exceptions import PermissionDenied

from billing import staff
from billing.models import StaffAction
from tests.billing.staff.scenery import ACTIONS, FINANCE_ONLY, SUPPORT_LIMIT
from tests.billing.staff_data import USD, audit_records, balance, everything_written, new_key
from tests.conftest import NOW


@pytest.mark.parametrize("grant", [staff.credit_back, staff.grant_credit], ids=["credit", "grant"])
def test_support_may_credit_back_and_grant_up_to_the_support_limit(grant, support, make_account):
    account = make_account()

    outcome = grant(
        account=account,
        amount_micros=SUPPORT_LIMIT,
        reason="Goodwill after an outage",
        actor=support,
        key=new_key(),
        now=NOW,
    )

    assert balance(account) == SUPPORT_LIMIT
    assert outcome.record.actor == support


@pytest.mark.parametrize("grant", [staff.credit_back, staff.grant_credit], ids=["credit", "grant"])
def test_support_may_not_credit_back_or_grant_above_the_support_limit(grant, support, make_account):
    account = make_account()
    before = everything_written()

    with pytest.raises(PermissionDenied, match="Finance"):
        grant(
            account=account,
            amount_micros=SUPPORT_LIMIT + 1,
            reason="Goodwill",
            actor=support,
            key=new_key(),
            now=NOW,
        )

    assert everything_written() == before


def test_the_support_limit_is_the_setting(support, make_account, settings):
    settings.SUPPORT_GRANT_LIMIT_MICROS = 10 * USD
    account = make_account()
    kwargs = {"account": account, "reason": "Goodwill", "actor": support, "now": NOW}

    staff.grant_credit(amount_micros=10 * USD, key=new_key(), **kwargs)
    with pytest.raises(PermissionDenied):
        staff.grant_credit(amount_micros=10 * USD + 1, key=new_key(), **kwargs)

    assert balance(account) == 10 * USD


@pytest.mark.parametrize("action", FINANCE_ONLY)
def test_support_may_not_refund_to_the_card_adjust_change_plans_or_write_off_invoices(
    action, support, scene
):
    before = everything_written()

    with pytest.raises(PermissionDenied):
        ACTIONS[action](support, scene, new_key())

    assert everything_written() == before


def test_finance_may_do_every_action(finance, scene):
    for name, action in ACTIONS.items():
        if name == "uncollectible":
            continue  # the invoice is void by then; marking it is tested on its own
        outcome = action(finance, scene, new_key())
        assert outcome.record.actor == finance, name

    assert {r.action for r in audit_records()} == set(StaffAction.values) - {
        StaffAction.MARK_UNCOLLECTIBLE,
        StaffAction.REQUEST_APPROVAL,
        StaffAction.APPROVE_REFUND,
        StaffAction.REJECT_REFUND,
        # Confirmed by the rate and model price forms in admin (tests/billing/staff/
        # test_admin_pages.py), not an action on an account.
        StaffAction.REPRICE_PAST,
        # The customer's own plan change, from the Billing page, not a staff action.
        StaffAction.SELF_SERVE_PLAN,
    }


def test_finance_is_not_held_to_the_support_limit(finance, make_account):
    account = make_account()

    staff.grant_credit(
        account=account,
        amount_micros=1_000 * USD,
        reason="Contract credit",
        actor=finance,
        key=new_key(),
        now=NOW,
    )

    assert balance(account) == 1_000 * USD


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_staff_member_in_no_group_may_do_no_action(action, no_group, scene):
    before = everything_written()

    with pytest.raises(PermissionDenied):
        ACTIONS[action](no_group, scene, new_key())

    assert everything_written() == before
