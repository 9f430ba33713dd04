"""A staff form submitted twice, or a double click whose twin commits first, does the action
once.
"""

from datetime import timedelta

import pytest

from billing import staff
from billing.models import EntryKind, Refund, StaffAction
from billing.staff import audit as staff_audit
from tests.billing.staff.scenery import ACTIONS, topup_of
from tests.billing.staff_data import USD, audit_records, balance, everything_written, new_key
from tests.conftest import NOW
from tests.usage.metering import entries


@pytest.mark.parametrize("action", list(ACTIONS))
def test_the_same_token_twice_does_the_action_once(action, finance, scene):
    key = new_key()
    first = ACTIONS[action](finance, scene, key)
    after_first = everything_written()

    second = ACTIONS[action](finance, scene, key)

    assert everything_written() == after_first
    assert second.record == first.record
    assert len(audit_records()) == 1


def test_a_money_refund_submitted_twice_makes_one_refund(finance, prepaid):
    topup = topup_of(prepaid)
    kwargs = {"topup": topup, "amount_micros": 20 * USD, "reason": "r", "actor": finance}
    key = new_key()

    staff.refund_topup(key=key, now=NOW, **kwargs)
    staff.refund_topup(key=key, now=NOW + timedelta(seconds=1), **kwargs)

    assert Refund.objects.count() == 1
    assert len(entries(prepaid, EntryKind.TOPUP_REFUND)) == 1
    assert len(audit_records(prepaid, StaffAction.REFUND_TOPUP)) == 1
    assert balance(prepaid) == 30 * USD


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_double_click_whose_twin_committed_first_still_does_the_action_once(
    action, finance, scene, monkeypatch
):
    """The second request looked for the token before the first committed, then waited for the
    account's lock (or the audit record's unique key) behind it."""
    key = new_key()
    first = ACTIONS[action](finance, scene, key)
    after_first = everything_written()
    looked = staff_audit.already_done
    early = []

    def looked_before_the_twin_committed(action_name, token):
        if not early:
            early.append(token)
            return None
        return looked(action_name, token)

    monkeypatch.setattr(staff_audit, "already_done", looked_before_the_twin_committed)
    second = ACTIONS[action](finance, scene, key)

    assert early
    assert everything_written() == after_first
    assert second.record == first.record
