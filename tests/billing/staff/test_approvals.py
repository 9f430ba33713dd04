"""The second approval of refunds above the threshold (SPEC P4)."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied

from billing import staff
from billing.models import (
    ApprovalStatus,
    EntryKind,
    Notification,
    Refund,
    RefundApproval,
    RefundStatus,
    StaffAction,
)
from billing.staff import StaffActionError
from tests.billing.staff.scenery import topup_of
from tests.billing.staff_data import (
    USD,
    audit_records,
    balance,
    everything_written,
    new_key,
    staff_member,
)
from tests.conftest import NOW
from tests.usage.metering import call, entries
from usage.ingest.calls import report_call


@pytest.fixture
def approval_threshold(settings):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 10 * USD
    return 10 * USD


def request_credit_back(account, actor, amount_micros=25 * USD, key=None):
    return staff.credit_back(
        account=account,
        amount_micros=amount_micros,
        reason="Outage refund",
        actor=actor,
        key=key or new_key(),
        now=NOW,
    )


def request_money_refund(account, actor):
    return staff.refund_topup(
        topup=topup_of(account),
        amount_micros=25 * USD,
        reason="Leaving",
        actor=actor,
        key=new_key(),
        now=NOW,
    )


def money_state() -> dict:
    """What a refund changes (the customer's emails included); approvals, audit records and
    the approvers' email aside."""
    written = everything_written()
    return {
        **{k: v for k, v in written.items() if k not in ("approvals", "audit")},
        "notifications": Notification.objects.exclude(kind="approval_waiting").count(),
    }


def test_a_credit_back_above_the_threshold_waits_for_approval_and_changes_nothing(
    finance, prepaid, approval_threshold
):
    before = money_state()

    outcome = request_credit_back(prepaid, finance)

    approval = outcome.pending_approval
    assert (approval.status, approval.action, approval.amount_micros, approval.requested_by) == (
        ApprovalStatus.PENDING,
        StaffAction.CREDIT_BACK,
        25 * USD,
        finance,
    )
    assert money_state() == before
    assert [r.action for r in audit_records()] == [StaffAction.REQUEST_APPROVAL]


def test_a_refund_of_exactly_the_threshold_needs_no_approval(finance, prepaid, approval_threshold):
    outcome = request_credit_back(prepaid, finance, amount_micros=approval_threshold)

    assert outcome.pending_approval is None
    assert balance(prepaid) == 60 * USD


def test_a_money_refund_above_the_threshold_waits_for_approval_and_changes_nothing(
    finance, prepaid, approval_threshold
):
    before = money_state()

    outcome = request_money_refund(prepaid, finance)

    assert outcome.pending_approval.topup == topup_of(prepaid)
    assert outcome.pending_approval.action == StaffAction.REFUND_TOPUP
    assert money_state() == before
    assert not Refund.objects.exists()


def test_the_default_approval_threshold_is_500_usd(finance, make_account):
    account = make_account()

    outcome = request_credit_back(account, finance, amount_micros=500 * USD + 1)

    assert outcome.pending_approval is not None
    assert balance(account) == 0


def test_the_requester_cannot_approve_their_own_refund(finance, prepaid, approval_threshold):
    approval = request_credit_back(prepaid, finance).pending_approval
    before = everything_written()

    with pytest.raises(PermissionDenied, match="another staff member"):
        staff.decide_approval(
            approval=approval, approve=True, actor=finance, reason="Fine", now=NOW
        )

    assert everything_written() == before


def test_support_cannot_approve_a_refund(finance, support, prepaid, approval_threshold):
    approval = request_credit_back(prepaid, finance).pending_approval
    before = everything_written()

    with pytest.raises(PermissionDenied):
        staff.decide_approval(
            approval=approval, approve=True, actor=support, reason="Fine", now=NOW
        )

    assert everything_written() == before


def test_rejecting_a_refund_changes_no_money(finance, second_finance, prepaid, approval_threshold):
    approval = request_credit_back(prepaid, finance).pending_approval
    before = money_state()

    outcome = staff.decide_approval(
        approval=approval, approve=False, actor=second_finance, reason="Not our fault", now=NOW
    )
    again = staff.decide_approval(
        approval=approval, approve=True, actor=second_finance, reason="Changed mind", now=NOW
    )

    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == (ApprovalStatus.REJECTED, second_finance)
    assert money_state() == before
    assert outcome.record.action == StaffAction.REJECT_REFUND
    assert again.record is None
    assert not entries(prepaid, EntryKind.REFUND)


def test_approving_a_credit_back_carries_it_out_once(
    finance, second_finance, prepaid, approval_threshold
):
    key = new_key()
    approval = request_credit_back(prepaid, finance, key=key).pending_approval

    staff.decide_approval(
        approval=approval, approve=True, actor=second_finance, reason="Checked", now=NOW
    )
    staff.decide_approval(
        approval=approval, approve=True, actor=staff_member("Finance"), reason="Also", now=NOW
    )
    request_credit_back(prepaid, finance, key=key)  # the requester's page posted again

    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == (ApprovalStatus.APPROVED, second_finance)
    [entry] = entries(prepaid, EntryKind.REFUND)
    assert entry.amount_micros == 25 * USD
    assert balance(prepaid) == 75 * USD
    assert [(r.action, r.actor) for r in audit_records()] == [
        (StaffAction.REQUEST_APPROVAL, finance),
        (StaffAction.APPROVE_REFUND, second_finance),
        (StaffAction.CREDIT_BACK, finance),
    ]


def test_approving_a_money_refund_carries_it_out_once(
    finance, second_finance, prepaid, approval_threshold
):
    approval = request_money_refund(prepaid, finance).pending_approval

    outcome = staff.decide_approval(
        approval=approval, approve=True, actor=second_finance, reason="Checked", now=NOW
    )
    staff.decide_approval(
        approval=approval, approve=True, actor=second_finance, reason="Again", now=NOW
    )

    [refund] = Refund.objects.all()
    assert (refund.status, refund.amount_micros) == (RefundStatus.SUCCEEDED, 25 * USD)
    assert balance(prepaid) == 25 * USD
    assert outcome.record.action == StaffAction.REFUND_TOPUP
    assert len(entries(prepaid, EntryKind.TOPUP_REFUND)) == 1


def test_approving_a_money_refund_that_can_no_longer_be_made_leaves_it_pending(
    finance, second_finance, prepaid, approval_threshold
):
    approval = request_money_refund(prepaid, finance).pending_approval
    # 400 minutes at 0.08: 32 USD spent meanwhile, 18 USD of the top-up left.
    report_call(report=call(prepaid, 60 * 400, connected_at=NOW - timedelta(hours=8)), now=NOW)
    before = everything_written()

    with pytest.raises(StaffActionError, match=r"\$18\.00"):
        staff.decide_approval(
            approval=approval, approve=True, actor=second_finance, reason="Checked", now=NOW
        )

    assert everything_written() == before
    assert RefundApproval.objects.get(pk=approval.pk).status == ApprovalStatus.PENDING
    staff.decide_approval(
        approval=approval, approve=False, actor=second_finance, reason="Spent", now=NOW
    )


def test_resubmitting_a_refund_request_makes_one_approval(finance, prepaid, approval_threshold):
    key = new_key()

    request_credit_back(prepaid, finance, key=key)
    request_credit_back(prepaid, finance, key=key)

    assert RefundApproval.objects.count() == 1
    assert len(audit_records()) == 1
