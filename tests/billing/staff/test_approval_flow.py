"""Approvals that flow (issue 16, item 7): approvers are emailed and counted on the admin index
when a request waits; the requester follows their request's state and is never offered to
approve it."""

import pytest
from django.urls import reverse

from billing import staff
from billing.models import ApprovalStatus, RefundApproval
from billing.money import format_usd_exact
from tests.billing.staff_data import USD, new_key, staff_member
from tests.conftest import NOW

REASON = "Outage on the 3rd"
NOTE = "ticket 99"


@pytest.fixture
def waiting(finance, prepaid, settings, mailoutbox, django_capture_on_commit_callbacks):
    """A credit-back over the threshold, asked for by `finance`."""
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1 * USD
    with django_capture_on_commit_callbacks(execute=True):
        outcome = staff.credit_back(
            account=prepaid, amount_micros=3 * USD, reason=REASON, note=NOTE,
            actor=finance, key=new_key(), now=NOW,
        )  # fmt: skip
    return outcome.pending_approval


def decide_url(approval: RefundApproval) -> str:
    return reverse("admin:billing_approval_decide", args=[approval.pk])


def test_the_approvers_but_the_requester_are_emailed_when_a_request_waits(
    finance, second_finance, support, prepaid, settings, mailoutbox,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    inactive = staff_member("Finance")
    inactive.is_active = False
    inactive.save(update_fields=["is_active"])
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1 * USD
    with django_capture_on_commit_callbacks(execute=True):
        outcome = staff.credit_back(
            account=prepaid, amount_micros=3 * USD, reason=REASON, note=NOTE,
            actor=finance, key=new_key(), now=NOW,
        )  # fmt: skip

    [message] = [m for m in mailoutbox if "approval" in m.subject.lower()]
    assert message.to == [second_finance.email]
    assert format_usd_exact(3 * USD) in message.subject and prepaid.name in message.subject
    assert decide_url(outcome.pending_approval) in message.body
    assert REASON in message.body


def test_the_admin_index_counts_what_waits_for_each_staff_member(
    waiting, finance, second_finance, client
):
    client.force_login(second_finance)
    approver_index = client.get(reverse("admin:index")).content.decode()
    client.force_login(finance)
    requester_index = client.get(reverse("admin:index")).content.decode()

    assert "1 refund waiting for your approval" in approver_index
    assert "waiting for your approval" not in requester_index
    assert "1 request of yours waiting for another staff member" in requester_index


def test_the_requester_sees_the_state_of_their_request_and_no_approve_button(
    waiting, finance, client
):
    client.force_login(finance)

    page = client.get(decide_url(waiting)).content.decode()
    listed = client.get(reverse("admin:billing_refundapproval_changelist")).content.decode()
    client.post(decide_url(waiting), {"decision": "approve", "reason": "me"})

    assert "Waiting for approval" in page
    assert 'name="decision"' not in page and "Approve</option>" not in page
    assert "Yours: waiting for another staff member" in listed
    assert decide_url(waiting) not in listed
    waiting.refresh_from_db()
    assert waiting.status == ApprovalStatus.PENDING


def test_support_follows_their_own_request_though_they_may_not_approve(
    support, prepaid, settings, client
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1 * USD
    outcome = staff.credit_back(
        account=prepaid, amount_micros=2 * USD, reason=REASON, actor=support,
        key=new_key(), now=NOW,
    )  # fmt: skip
    client.force_login(support)

    assert client.get(decide_url(outcome.pending_approval)).status_code == 200
    other = staff_member("Support")
    client.force_login(other)
    assert client.get(decide_url(outcome.pending_approval)).status_code == 403


def test_the_second_staff_member_sees_the_form_and_the_decided_state_afterwards(
    waiting, finance, second_finance, client
):
    client.force_login(second_finance)
    assert 'name="decision"' in client.get(decide_url(waiting)).content.decode()

    client.post(decide_url(waiting), {"decision": "approve", "reason": "Checked"})
    client.force_login(finance)
    page = client.get(decide_url(waiting)).content.decode()

    assert "Approved and carried out" in page and str(second_finance) in page
