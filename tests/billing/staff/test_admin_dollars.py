"""Admin shows money in dollars, exactly, on lists and detail pages (issue 16, item 4): staff
read "$50.00" and "$0.24", not "50000000" and "240000"."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from billing.models import AuditRecord, RefundApproval, StaffAction
from billing.money import format_usd_exact
from tests.billing.staff.scenery import topup_of
from tests.billing.staff_data import new_key
from tests.conftest import NOW
from tests.usage.metering import call
from usage.ingest.calls import report_call
from usage.ingest.staff_refunds import refund_usage_by_staff
from usage.rating.explain import call_steps


def page(client, name: str, *args) -> str:
    response = client.get(reverse(f"admin:{name}", args=args))
    assert response.status_code == 200
    return response.content.decode()


def shows_in_dollars(text: str, micros: int) -> bool:
    return format_usd_exact(micros) in text and f">{micros}<" not in text


@pytest.fixture
def refunded_call(prepaid, finance, settings):
    charged, _ = report_call(report=call(prepaid, 180), now=NOW)
    refund_usage_by_staff(
        item=charged, amount_micros=charged.charged_micros // 3, reason="r", note="",
        actor=finance, key=new_key(), now=NOW,
    )  # fmt: skip
    charged.refresh_from_db()
    return charged


def test_calls_show_cost_and_refund_in_dollars(finance, refunded_call, client):
    client.force_login(finance)

    listing = page(client, "usage_call_changelist")
    detail = page(client, "usage_call_change", refunded_call.pk)

    for text in (listing, detail):
        assert shows_in_dollars(text, refunded_call.cost_micros)
        assert shows_in_dollars(text, refunded_call.refunded_micros)


def test_top_ups_show_their_amount_in_dollars(finance, prepaid, client):
    topup = topup_of(prepaid)
    client.force_login(finance)

    for text in (
        page(client, "billing_topup_changelist"),
        page(client, "billing_topup_change", topup.pk),
    ):
        assert shows_in_dollars(text, topup.amount_micros)


def test_approvals_show_the_amount_to_the_micro_dollar(finance, refunded_call, client, settings):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 1
    amount = refunded_call.charged_micros - refunded_call.refunded_micros
    refund_usage_by_staff(
        item=refunded_call, amount_micros=amount, reason="r", note="", actor=finance,
        key=new_key(), now=NOW,
    )  # fmt: skip
    [approval] = RefundApproval.objects.all()
    client.force_login(finance)

    for text in (
        page(client, "billing_refundapproval_changelist"),
        page(client, "billing_refundapproval_change", approval.pk),
    ):
        assert shows_in_dollars(text, amount)


def test_a_calls_page_shows_its_price_explanation_as_the_steps_the_customer_reads(
    finance, refunded_call, client
):
    client.force_login(finance)

    text = page(client, "usage_call_change", refunded_call.pk)

    for step in call_steps(refunded_call):
        assert escape(step["text"]) in text
    assert f"{format_usd_exact(refunded_call.refunded_micros)} credited back" in text
    assert '"rounding":' not in text  # the rating's JSON is not shown


def test_an_audit_record_reads_before_and_after_in_dollars_with_the_staff_members_name(
    finance, refunded_call, client
):
    finance.name = "Fiona Finance"
    finance.save(update_fields=["name"])
    client.force_login(finance)
    [record] = AuditRecord.objects.filter(action=StaffAction.REFUND_CALL)
    before, after = record.before["balance_micros"], record.after["balance_micros"]

    text = page(client, "billing_auditrecord_change", record.pk)
    listed = page(client, "billing_auditrecord_changelist")

    for shown in (text, listed):
        assert f"Balance: {format_usd_exact(before)} → {format_usd_exact(after)}" in shown
        assert "Fiona Finance" in shown
    assert f"Amount: - → {format_usd_exact(refunded_call.refunded_micros)}" in text
    assert f"by {finance.pk} at" not in text and "by Fiona Finance at" in text
    assert f">{before}<" not in text and '"balance_micros"' not in text
