"""Refunding a call from its own admin page, whole or in part (issue 16, item 1; SPEC P4).

Staff work the real admin pages through Django's test client, as members of the groups the
migration made; the customer then reads their real usage log and statement CSV. The refund goes
through the platform refund's path, so the call reads "Refunded" to the customer.
"""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse

from accounts.models import User
from billing.models import ApprovalStatus, EntryKind, LedgerEntry, RefundApproval, StaffAction
from billing.money import format_usd, format_usd_exact, usd_input
from billing.staff.checks import StaffActionError
from tests.billing.staff_data import (
    USD,
    audit_records,
    balance,
    everything_written,
    new_key,
    paid_topup,
)
from tests.conftest import NOW
from tests.usage.metering import call
from usage.ingest.calls import report_call
from usage.ingest.staff_refunds import refund_usage_by_staff
from usage.models import Call

LATER = NOW + timedelta(hours=1)
REASON = "Dropped by our network, sorry"
NOTE = "ticket 789, double click test"


@pytest.fixture
def charged_call(prepaid) -> Call:
    """A charged 3-minute call of the prepaid account."""
    charged, _ = report_call(report=call(prepaid, 180), now=NOW)
    assert charged.charged_micros > 0
    return charged


@pytest.fixture
def as_staff(client):
    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture(autouse=True)
def later():
    with time_machine.travel(LATER, tick=False):
        yield


def refund_url(a_call: Call) -> str:
    return reverse("admin:usage_call_refund", args=[a_call.pk])


def fresh(a_call: Call) -> Call:
    return Call.objects.get(pk=a_call.pk)


def form_of(response) -> dict:
    form = response.context["form"]
    return {name: form[name].value() or "" for name in ("token", "amount", "reason", "note")}


def text_of(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_support_refunds_part_of_a_call_from_its_admin_page(
    support, charged_call, as_staff, client
):
    account = charged_call.account
    client = as_staff(support)
    change_page = client.get(
        reverse("admin:usage_call_change", args=[charged_call.pk])
    ).content.decode()
    assert f'href="{refund_url(charged_call)}"' in change_page
    page = client.get(refund_url(charged_call))
    posted = form_of(page)
    # The whole charge is offered, in dollars, to the micro-dollar.
    assert posted["amount"] == usd_input(charged_call.charged_micros)
    # A part that does not fall on a cent: the message must not round it.
    part = charged_call.charged_micros * 7 // 10 + 1
    assert format_usd(part) != format_usd_exact(part)
    balance_before = balance(account)

    done = client.post(
        refund_url(charged_call),
        {**posted, "amount": usd_input(part), "reason": REASON, "note": NOTE},
        follow=True,
    )

    assert f"Refunded {format_usd_exact(part)} of call {charged_call.call_id}." in (
        messages_of(done)
    )
    assert fresh(charged_call).refunded_micros == part
    assert balance(account) == balance_before + part
    [entry] = LedgerEntry.objects.filter(account=account, kind=EntryKind.REFUND)
    assert (entry.amount_micros, entry.reason) == (part, REASON)
    assert NOTE not in entry.description
    [record] = audit_records(account, StaffAction.REFUND_CALL)
    assert (record.actor, record.reason, record.note) == (support, REASON, NOTE)
    assert record.after["call_refunded_micros"] == part


def test_the_customer_sees_the_refund_and_the_reason_never_the_note(
    support, charged_call, as_staff, client
):
    account = charged_call.account
    client = as_staff(support)
    posted = form_of(client.get(refund_url(charged_call)))
    client.post(refund_url(charged_call), {**posted, "reason": REASON, "note": NOTE})

    client.force_login(account.memberships.get().user)
    base = f"/app/a/{account.public_id}"
    log = text_of(client.get(f"{base}/usage/log/", {"kind": "calls", "refunded": "on"}))
    log_csv = text_of(client.get(f"{base}/usage/log/export.csv", {"kind": "calls"}))
    statement = text_of(client.get(f"{base}/billing/statement/"))
    statement_csv = text_of(client.get(f"{base}/billing/statement/export.csv"))

    assert charged_call.call_id in log and 'data-testid="refunded"' in log
    assert REASON in statement and REASON in statement_csv
    for text in (log, log_csv, statement, statement_csv):
        assert NOTE not in text
        assert "ticket 789" not in text


def test_the_same_form_posted_twice_refunds_once(support, charged_call, as_staff):
    client = as_staff(support)
    posted = {**form_of(client.get(refund_url(charged_call))), "reason": REASON, "note": ""}

    client.post(refund_url(charged_call), posted)
    written = everything_written()
    again = client.post(refund_url(charged_call), posted, follow=True)

    assert "Already done." in messages_of(again)
    assert everything_written() == written
    assert fresh(charged_call).refunded_micros == charged_call.charged_micros


def test_more_than_is_left_to_refund_is_a_form_error_and_changes_nothing(
    support, charged_call, as_staff
):
    client = as_staff(support)
    first_part = charged_call.charged_micros // 2
    posted = form_of(client.get(refund_url(charged_call)))
    client.post(
        refund_url(charged_call), {**posted, "amount": usd_input(first_part), "reason": "r"}
    )
    left = charged_call.charged_micros - first_part
    written = everything_written()

    posted = form_of(client.get(refund_url(charged_call)))
    assert posted["amount"] == usd_input(left)
    response = client.post(
        refund_url(charged_call), {**posted, "amount": usd_input(left + 1), "reason": "r"}
    )

    assert response.status_code == 200
    assert f"At most {format_usd_exact(left)} of this call is left" in response.content.decode()
    assert everything_written() == written
    assert fresh(charged_call).refunded_micros == first_part


def test_the_service_refuses_more_than_is_left_even_when_the_form_was_shown_earlier(
    finance, charged_call
):
    """Two pages opened on the same call: the second refund finds, under the lock, that the
    first took what was left, and writes nothing."""
    whole = charged_call.charged_micros
    refund_usage_by_staff(
        item=charged_call, amount_micros=whole, reason="r", note="", actor=finance,
        key=new_key(), now=LATER,
    )  # fmt: skip
    written = everything_written()

    with pytest.raises(StaffActionError, match="Nothing of this call is left"):
        refund_usage_by_staff(
            item=charged_call, amount_micros=whole, reason="r", note="", actor=finance,
            key=new_key(), now=LATER,
        )  # fmt: skip
    assert everything_written() == written


def test_a_staff_member_without_the_permission_is_refused_the_page(
    no_group, charged_call, as_staff
):
    client = as_staff(no_group)
    assert client.get(refund_url(charged_call)).status_code == 403
    assert client.post(refund_url(charged_call), {"token": "t"}).status_code == 403
    assert fresh(charged_call).refunded_micros == 0


def test_a_refund_above_the_threshold_waits_for_a_second_staff_member(
    finance, second_finance, charged_call, as_staff, settings
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = charged_call.charged_micros - 1
    client = as_staff(finance)
    posted = form_of(client.get(refund_url(charged_call)))
    client.post(refund_url(charged_call), {**posted, "reason": REASON, "note": NOTE})
    [approval] = RefundApproval.objects.filter(account=charged_call.account)
    assert (approval.status, approval.note) == (ApprovalStatus.PENDING, NOTE)
    assert fresh(charged_call).refunded_micros == 0

    client = as_staff(second_finance)
    client.post(
        reverse("admin:billing_approval_decide", args=[approval.pk]),
        {"decision": "approve", "reason": "Checked the call log"},
    )

    assert fresh(charged_call).refunded_micros == charged_call.charged_micros
    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.APPROVED
    [record] = audit_records(charged_call.account, StaffAction.REFUND_CALL)
    assert (record.actor, record.reason, record.note) == (finance, REASON, NOTE)


def test_concurrent_refunds_of_the_whole_call_refund_it_once(transactional_db, make_account):
    """Two staff members refund the whole call at once: one refunds it, the other is told that
    nothing is left, and one ledger entry is written."""
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite locks the whole database).")
    # Superusers: a transactional test's database has no groups from the migrations.
    staff = [
        User.objects.create_superuser(email=f"boss{n}@operator.example", password="x")
        for n in (1, 2)
    ]
    prepaid = make_account()
    paid_topup(prepaid, 50 * USD, now=NOW)
    charged, _ = report_call(report=call(prepaid, 180), now=NOW)
    start = threading.Barrier(2)
    results = []

    def refund(actor):
        try:
            start.wait()
            refund_usage_by_staff(
                item=charged, amount_micros=charged.charged_micros, reason="r", note="",
                actor=actor, key=new_key(), now=LATER,
            )  # fmt: skip
            results.append("refunded")
        except StaffActionError:
            results.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=refund, args=(u,)) for u in staff]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == ["refunded", "refused"]
    assert fresh(charged).refunded_micros == charged.charged_micros
    assert LedgerEntry.objects.filter(account=prepaid, kind=EntryKind.REFUND).count() == 1
