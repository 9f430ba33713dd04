"""Refunding an event from its admin page and from the account's usage list (issue 16, item 1).

Staff work the real admin pages through Django's test client; the customer then reads their real
usage log and statement. The refund goes through the same path as a call's (`credit_event`, the
twin of `credit_call`), so the event reads "Refunded" and its explanation shows the amount.
"""

from datetime import timedelta

import pytest
import time_machine
from django.db.models import Sum
from django.urls import reverse

from billing.models import ApprovalStatus, EntryKind, LedgerEntry, RefundApproval, StaffAction
from billing.money import format_usd_exact, usd_input
from tests.billing.staff.scenery import charged_event, charged_sms
from tests.billing.staff_data import USD, audit_records, balance, everything_written
from tests.conftest import NOW
from tests.usage.metering import flex
from usage.models import UsageEvent, UsageRollup

LATER = NOW + timedelta(hours=1)
REASON = "Sent twice by our gateway, sorry"
NOTE = "ticket 4711, carrier bug"


@pytest.fixture(autouse=True)
def later():
    with time_machine.travel(LATER, tick=False):
        yield


@pytest.fixture
def sms_event(prepaid) -> UsageEvent:
    return charged_sms(prepaid)


@pytest.fixture
def as_staff(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def refund_url(event: UsageEvent) -> str:
    return reverse("admin:usage_usageevent_refund", args=[event.pk])


def form_of(response) -> dict:
    form = response.context["form"]
    return {name: form[name].value() or "" for name in ("token", "amount", "reason", "note")}


def fresh(event: UsageEvent) -> UsageEvent:
    return UsageEvent.objects.get(pk=event.pk)


def refunded_in_rollups(event: UsageEvent, component: str) -> int:
    return (
        UsageRollup.objects.filter(
            account=event.account,
            is_line=False,
            component=component,
            provider=event.provider,
            model=event.model,
        ).aggregate(total=Sum("refunded_micros"))["total"]
        or 0
    )


def test_support_finds_the_event_in_the_accounts_usage_list_and_refunds_part_of_it(
    support, sms_event, as_staff
):
    account = sms_event.account
    client = as_staff(support)
    account_page = client.get(
        reverse("admin:accounts_account_change", args=[account.pk])
    ).content.decode()
    events_list = f"{reverse('admin:usage_usageevent_changelist')}?account__id__exact={account.pk}"
    assert f'href="{events_list}"'.replace("&", "&amp;") in account_page
    listed = client.get(events_list).content.decode()
    assert sms_event.event_id in listed and f'href="{refund_url(sms_event)}"' in listed

    page = client.get(refund_url(sms_event))
    posted = form_of(page)
    assert posted["amount"] == usd_input(sms_event.charged_micros)
    part = sms_event.charged_micros // 3 + 1
    balance_before = balance(account)
    done = client.post(
        refund_url(sms_event),
        {**posted, "amount": usd_input(part), "reason": REASON, "note": NOTE},
        follow=True,
    )

    assert f"Refunded {format_usd_exact(part)} of event {sms_event.event_id}." in [
        str(m) for m in done.context["messages"]
    ]
    assert fresh(sms_event).refunded_micros == part
    assert fresh(sms_event).refunded_at == LATER
    assert balance(account) == balance_before + part
    [entry] = LedgerEntry.objects.filter(account=account, kind=EntryKind.REFUND)
    assert (entry.amount_micros, entry.reason, entry.cause) == (part, REASON, sms_event)
    assert refunded_in_rollups(sms_event, "sms") == part
    [record] = audit_records(account, StaffAction.REFUND_EVENT)
    assert (record.actor, record.reason, record.note) == (support, REASON, NOTE)
    assert record.after["event_refunded_micros"] == part
    # The event's page now offers only what is left.
    change_page = client.get(
        reverse("admin:usage_usageevent_change", args=[sms_event.pk])
    ).content.decode()
    assert f"(up to {format_usd_exact(sms_event.charged_micros - part)})" in change_page


def test_the_customer_sees_the_event_refunded_with_the_reason_never_the_note(
    support, sms_event, as_staff, client
):
    account = sms_event.account
    posted = form_of(as_staff(support).get(refund_url(sms_event)))
    client.post(refund_url(sms_event), {**posted, "reason": REASON, "note": NOTE})

    client.force_login(account.memberships.get().user)
    base = f"/app/a/{account.public_id}"
    log = client.get(f"{base}/usage/log/", {"kind": "events", "refunded": "on"}).content.decode()
    statement = client.get(f"{base}/billing/statement/").content.decode()

    assert sms_event.event_id in log and 'data-testid="refunded"' in log
    assert f"{format_usd_exact(sms_event.charged_micros)} credited back" in log
    assert REASON in statement
    for text in (log, statement):
        assert NOTE not in text


def test_the_same_form_posted_twice_refunds_the_event_once(support, sms_event, as_staff):
    client = as_staff(support)
    posted = {**form_of(client.get(refund_url(sms_event))), "reason": REASON}

    client.post(refund_url(sms_event), posted)
    written = everything_written()
    again = client.post(refund_url(sms_event), posted, follow=True)

    assert "Already done." in [str(m) for m in again.context["messages"]]
    assert everything_written() == written


def test_more_than_the_event_charged_is_a_form_error(support, sms_event, as_staff):
    client = as_staff(support)
    posted = form_of(client.get(refund_url(sms_event)))
    written = everything_written()

    response = client.post(
        refund_url(sms_event),
        {**posted, "amount": usd_input(sms_event.charged_micros + 1), "reason": "r"},
    )

    assert f"At most {format_usd_exact(sms_event.charged_micros)} of this event" in (
        response.content.decode()
    )
    assert everything_written() == written


def test_a_commission_refund_comes_off_the_flex_rollup_of_its_provider_and_model(
    finance, make_account, as_staff
):
    router = make_account("flex-router", credit_micros=20 * USD)
    event = charged_event(flex(router, provider="openai"))
    client = as_staff(finance)
    posted = form_of(client.get(refund_url(event)))

    client.post(refund_url(event), {**posted, "reason": REASON})

    assert fresh(event).refunded_micros == event.charged_micros
    assert refunded_in_rollups(event, "flex") == event.charged_micros


def test_an_event_refund_above_the_threshold_waits_for_a_second_staff_member(
    finance, second_finance, sms_event, as_staff, settings
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = sms_event.charged_micros - 1
    client = as_staff(finance)
    posted = form_of(client.get(refund_url(sms_event)))
    client.post(refund_url(sms_event), {**posted, "reason": REASON, "note": NOTE})
    [approval] = RefundApproval.objects.filter(account=sms_event.account)
    assert (approval.status, approval.action) == (ApprovalStatus.PENDING, StaffAction.REFUND_EVENT)
    assert fresh(sms_event).refunded_micros == 0

    as_staff(second_finance).post(
        reverse("admin:billing_approval_decide", args=[approval.pk]),
        {"decision": "approve", "reason": "Checked the gateway log"},
    )

    assert fresh(sms_event).refunded_micros == sms_event.charged_micros
    [record] = audit_records(sms_event.account, StaffAction.REFUND_EVENT)
    assert (record.actor, record.note) == (finance, NOTE)


def test_a_staff_member_without_the_permission_is_refused_the_event_refund(
    no_group, sms_event, as_staff
):
    client = as_staff(no_group)
    assert client.get(refund_url(sms_event)).status_code == 403
    assert client.post(refund_url(sms_event), {"token": "t"}).status_code == 403
    assert fresh(sms_event).refunded_micros == 0
