"""Two texts on a staff money action (issue 16, item 2): the reason is the customer's, the
internal note is staff's. Staff post the real admin forms; the customer reads their real
statement and its CSV, which show the reason and never the note; the audit trail keeps both."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from billing.models import RefundApproval, StaffAction
from tests.billing.staff.scenery import topup_of
from tests.billing.staff_data import audit_records
from tests.conftest import NOW

LATER = NOW + timedelta(hours=1)
REASON = "Goodwill for the outage on 14 March"
NOTE = "ticket 789, customer angry, double click test"

ACTIONS = {
    "credit-back": StaffAction.CREDIT_BACK,
    "grant": StaffAction.GRANT_CREDIT,
    "adjust": StaffAction.ADJUST_BALANCE,
    "refund-topup": StaffAction.REFUND_TOPUP,
}


@pytest.fixture(autouse=True)
def later():
    with time_machine.travel(LATER, tick=False):
        yield


def text_of(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def post_action(client, account, action: str, **extra) -> None:
    url = reverse("admin:account_staff_action", args=[account.pk, action])
    token = client.get(url).context["form"]["token"].value()
    fields = {"token": token, "amount": "5.00", "reason": REASON, "note": NOTE, **extra}
    if action == "refund-topup":
        fields["topup"] = topup_of(account).pk
    assert client.post(url, fields).status_code == 302


@pytest.mark.parametrize("action", ACTIONS)
def test_the_customer_reads_the_reason_and_never_the_internal_note(
    action, finance, prepaid, client
):
    client.force_login(finance)
    post_action(client, prepaid, action)

    [record] = audit_records(prepaid, ACTIONS[action])
    assert (record.reason, record.note) == (REASON, NOTE)
    client.force_login(prepaid.memberships.get().user)
    base = f"/app/a/{prepaid.public_id}"
    statement = text_of(client.get(f"{base}/billing/statement/"))
    statement_csv = text_of(client.get(f"{base}/billing/statement/export.csv"))
    billing_page = text_of(client.get(f"{base}/billing/"))
    for text in (statement, statement_csv, billing_page):
        assert NOTE not in text
        assert "ticket 789" not in text
    assert REASON in statement and REASON in statement_csv


def test_a_request_waiting_for_approval_keeps_the_note_for_the_approver(
    finance, second_finance, prepaid, client, settings
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1_000_000
    client.force_login(finance)
    post_action(client, prepaid, "credit-back")
    [approval] = RefundApproval.objects.filter(account=prepaid)
    assert (approval.reason, approval.note) == (REASON, NOTE)

    client.force_login(second_finance)
    client.post(
        reverse("admin:billing_approval_decide", args=[approval.pk]),
        {"decision": "approve", "reason": "Checked"},
    )

    [record] = audit_records(prepaid, StaffAction.CREDIT_BACK)
    assert (record.actor, record.reason, record.note) == (finance, REASON, NOTE)
