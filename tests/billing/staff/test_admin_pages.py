"""Staff work in Django admin, page by page: who may open what, the money-action form pages with
their one-time tokens, invoices, approvals, the reconciliation page, read-only money records, and
rates that cannot be changed once they take effect (SPEC P4, S1, S2, I1, L2).

Pages are requested through Django's test client as real staff members of the Support and
Finance groups the migration made (the package's conftest.py); forms are posted with what the
page itself rendered.
"""

from datetime import timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
import time_machine
from django.contrib import admin
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from accounts.admin import ACTION_FORMS
from billing.ledger.locks import lock_account
from billing.models import (
    ApprovalStatus,
    AuditRecord,
    EntryKind,
    Invoice,
    InvoiceStatus,
    LedgerEntry,
    ModelPrice,
    Rate,
    RateComponent,
    Refund,
    RefundApproval,
    StaffAction,
)
from billing.money import format_usd
from billing.payments.topups import fulfil_topup, new_topup
from tests.billing.staff_data import (
    USD,
    audit_records,
    balance,
    everything_written,
    paid_topup,
)
from tests.billing.usage_reports import report_usage_of_458_usd
from tests.conftest import NOW
from tests.usage.metering import call, entries, sms
from usage.ingest.calls import report_call
from usage.ingest.events import ingest_events
from usage.models import Call
from usage.spending.holds import place_hold

ISSUED = NOW + timedelta(days=3)
OUR_APPS = ("accounts", "billing", "usage")


# Scenery and helpers -----------------------------------------------------------------------------


@pytest.fixture
def prepaid(make_account, make_user):
    """A voice-prepaid account with a paid 50 USD top-up and one rated call."""
    account = make_account(name="Acme Voice Ltd", owner=make_user("billing@acme.example"))
    paid_topup(account, 50 * USD, now=NOW)
    report_call(report=call(account, 60), now=NOW)
    return account


@pytest.fixture
def invoice(make_account):
    """A voice-payg account's 458 USD threshold invoice, open."""
    from billing.invoicing.invoices import invoice_thresholds

    account = make_account("voice-payg", name="Payg Robotics")
    report_usage_of_458_usd(account, now=ISSUED)
    [invoice] = invoice_thresholds(now=ISSUED)
    return invoice


@pytest.fixture
def as_staff(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def action_url(account, action: str) -> str:
    return reverse("admin:account_staff_action", args=[account.pk, action])


def invoice_action_url(invoice, action: str) -> str:
    return reverse("admin:billing_invoice_action", args=[invoice.pk, action])


def change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def token_of(response) -> str:
    token = response.context["form"]["token"].value()
    assert token and f'name="token" value="{token}"' in response.content.decode()
    return token


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


class FormFields(HTMLParser):
    """What a browser would submit from a page's form: every named input with its value."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._select_chosen = False
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("id") == self.form_id
        if not self.inside:
            return
        name = attrs.get("name")
        if name and "__prefix__" in name:
            return  # the template of a new inline row, not a row
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in attrs:
                    self.fields[name] = attrs.get("value") or "on"
            elif kind not in ("submit", "button", "file", "image", "reset"):
                self.fields[name] = attrs.get("value") or ""
        elif tag == "select" and name:
            self._select, self._select_chosen = name, False
            self.fields[name] = ""
        elif tag == "option" and self._select:
            if "selected" in attrs or not self._select_chosen:
                self.fields[self._select] = attrs.get("value") or ""
                self._select_chosen = self._select_chosen or "selected" in attrs
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.fields[self._textarea] += data


def form_fields(response, form_id: str) -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(response.content.decode())
    assert parser.fields, f"no form #{form_id} on the page"
    return parser.fields


# Who may open what -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["credit-back", "grant"])
def test_support_opens_the_credit_back_and_grant_pages(action, support, prepaid, as_staff):
    response = as_staff(support).get(action_url(prepaid, action))

    assert response.status_code == 200
    token_of(response)


@pytest.mark.parametrize("action", ["refund-topup", "adjust", "change-plan"])
def test_support_is_refused_the_refund_adjustment_and_plan_change_pages(
    action, support, prepaid, as_staff
):
    client = as_staff(support)

    assert client.get(action_url(prepaid, action)).status_code == 403
    assert client.post(action_url(prepaid, action), {"token": "t"}).status_code == 403


@pytest.mark.parametrize("action", ["void", "uncollectible"])
def test_support_is_refused_voiding_and_writing_off_invoices(action, support, invoice, as_staff):
    client = as_staff(support)
    before = everything_written()

    assert client.get(invoice_action_url(invoice, action)).status_code == 403
    assert (
        client.post(invoice_action_url(invoice, action), {"token": "t", "reason": "r"}).status_code
        == 403
    )
    assert everything_written() == before


def test_support_is_refused_the_reconciliation_page(support, as_staff):
    response = as_staff(support).get(reverse("admin:billing_reconciliation"))

    assert response.status_code == 403


def test_support_reads_accounts_and_invoices_without_changing_them(
    support, prepaid, invoice, as_staff
):
    client = as_staff(support)

    account_page = client.get(change_url(prepaid))
    invoice_page = client.get(change_url(invoice))

    assert account_page.status_code == invoice_page.status_code == 200
    assert 'name="_save"' not in account_page.content.decode()
    assert client.post(change_url(prepaid), {"name": "Renamed"}).status_code == 403


def test_support_above_the_limit_sees_why_and_nothing_is_written(support, prepaid, as_staff):
    client = as_staff(support)
    url = action_url(prepaid, "grant")
    token = token_of(client.get(url))
    before = everything_written()

    response = client.post(url, {"token": token, "amount": "100.01", "reason": "Goodwill"})

    assert response.status_code == 200
    assert "need a Finance staff member" in response.content.decode()
    assert everything_written() == before


def test_a_staff_member_in_no_group_sees_an_empty_admin(no_group, as_staff):
    response = as_staff(no_group).get(reverse("admin:index"))

    assert response.status_code == 200
    assert response.context["app_list"] == []


def test_a_staff_member_in_no_group_is_refused_every_page_of_our_apps(
    no_group, prepaid, invoice, as_staff, second_finance
):
    approval = RefundApproval.objects.create(
        account=prepaid,
        action=StaffAction.CREDIT_BACK,
        amount_micros=600 * USD,
        reason="Outage",
        requested_by=second_finance,
        key="approval-key",
    )
    client = as_staff(no_group)
    urls = [
        *(action_url(prepaid, action) for action in ACTION_FORMS),
        *(invoice_action_url(invoice, action) for action in ("void", "uncollectible", "resend")),
        reverse("admin:billing_invoice_pdf", args=[invoice.pk]),
        reverse("admin:billing_reconciliation"),
        reverse("admin:billing_approval_decide", args=[approval.pk]),
        change_url(prepaid),
        change_url(invoice),
        change_url(Rate.objects.first()),
    ]
    for model in admin.site._registry:
        if model._meta.app_label in OUR_APPS:
            urls.append(
                reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            )
    before = everything_written()

    refused = {url: client.get(url).status_code for url in urls}

    assert refused == dict.fromkeys(urls, 403)
    assert client.post(invoice_action_url(invoice, "resend"), {"token": "t"}).status_code == 403
    assert everything_written() == before


def test_finance_is_in_every_staff_permission(finance):
    for permission in [
        "billing.credit_back",
        "billing.grant_credit",
        "billing.refund_topup",
        "billing.adjust_balance",
        "billing.move_account_plan",
        "billing.change_plan",
        "billing.approve_refund",
        "billing.void_invoice",
        "billing.view_reconciliation",
        "billing.add_rate",
        "billing.change_rate",
        "billing.delete_rate",
        "accounts.change_account",
    ]:
        assert finance.has_perm(permission), permission


# Pages render for Finance ------------------------------------------------------------------------


@pytest.fixture
def searchable(prepaid, make_account, make_key):
    make_account(name="Other Corp")
    return {
        "name": "Acme Voice",
        "email": "billing@acme.example",
        "public id": prepaid.public_id,
        "key id": make_key(prepaid).api_key.key_id,
    }


@pytest.mark.parametrize("field", ["name", "email", "public id", "key id"])
def test_the_account_list_finds_an_account_by_name_email_public_id_and_key_id(
    field, searchable, prepaid, finance, as_staff
):
    response = as_staff(finance).get(
        reverse("admin:accounts_account_changelist"), {"q": searchable[field]}
    )

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [prepaid]


def test_the_account_page_links_its_lists_shows_recent_usage_and_the_money_actions(
    finance, prepaid, as_staff
):
    response = as_staff(finance).get(change_url(prepaid))

    page = response.content.decode()
    assert response.status_code == 200
    for action in ACTION_FORMS:
        assert action_url(prepaid, action) in page
    calls = f"{reverse('admin:usage_call_changelist')}?account__id__exact={prepaid.pk}"
    for name in ("usage_usageevent", "billing_ledgerentry", "billing_invoice", "billing_topup"):
        assert f"{reverse(f'admin:{name}_changelist')}?account__id__exact={prepaid.pk}" in page
    assert f'href="{calls}"' in page
    # Recent usage and top-ups are shown, each linking its own page; nothing is inlined in full.
    assert reverse("admin:usage_call_change", args=[Call.objects.get(account=prepaid).pk]) in page
    assert reverse("admin:billing_topup_change", args=[prepaid.topups.get().pk]) in page
    assert "ledger entries (newest first)" not in page.lower()
    assert prepaid.subscription.plan.code in page
    assert format_usd(balance(prepaid), places=6) in page
    # The list is the account's calls only, each with its refund link.
    listed = as_staff(finance).get(calls).content.decode()
    call = Call.objects.get(account=prepaid)
    assert call.call_id in listed
    assert reverse("admin:usage_call_refund", args=[call.pk]) in listed
    assert listed.count('class="field-call_id"') == 1


@pytest.mark.parametrize("action", list(ACTION_FORMS))
def test_each_money_action_page_carries_a_fresh_one_time_token(action, finance, prepaid, as_staff):
    client = as_staff(finance)

    first = client.get(action_url(prepaid, action))
    second = client.get(action_url(prepaid, action))

    assert first.status_code == second.status_code == 200
    assert token_of(first) != token_of(second)
    assert prepaid.public_id in first.content.decode()


def test_the_invoice_page_links_the_pdf_and_the_invoice_actions(finance, invoice, as_staff):
    response = as_staff(finance).get(change_url(invoice))

    page = response.content.decode()
    assert response.status_code == 200
    assert invoice.number in page
    assert reverse("admin:billing_invoice_pdf", args=[invoice.pk]) in page
    for action in ("void", "uncollectible", "resend"):
        assert invoice_action_url(invoice, action) in page


def test_the_invoice_pdf_downloads(finance, invoice, as_staff):
    response = as_staff(finance).get(reverse("admin:billing_invoice_pdf", args=[invoice.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")


@pytest.mark.parametrize("action", ["void", "uncollectible", "resend"])
def test_each_invoice_action_page_carries_a_one_time_token(action, finance, invoice, as_staff):
    response = as_staff(finance).get(invoice_action_url(invoice, action))

    assert response.status_code == 200
    token_of(response)
    assert invoice.number in response.content.decode()


def test_voiding_from_the_invoice_page_twice_with_one_token_voids_once(finance, invoice, as_staff):
    client = as_staff(finance)
    url = invoice_action_url(invoice, "void")
    data = {"token": token_of(client.get(url)), "reason": "Billed twice"}

    first = client.post(url, data)
    second = client.post(url, data)

    assert first.status_code == second.status_code == 302
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.VOID
    assert len(entries(invoice.account, EntryKind.ADJUSTMENT)) == 1
    assert len(audit_records(invoice.account, StaffAction.VOID_INVOICE)) == 1
    assert balance(invoice.account) == 0


def test_the_reconciliation_page_compares_balances_top_ups_and_open_invoices(
    finance, prepaid, invoice, as_staff
):
    from djstripe.models import PaymentIntent

    # Two top-ups paid through Stripe: one in the Stripe mirror, one whose payment is missing.
    PaymentIntent.objects.create(
        id="pi_Synced0001",
        livemode=False,
        stripe_data={"id": "pi_Synced0001", "status": "succeeded", "amount_received": 2000},
    )
    for reference in ("pi_Synced0001", "pi_Missing0001"):
        topup = new_topup(account=prepaid, kind="manual", amount_micros=20 * USD, now=NOW)
        fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id=reference)

    response = as_staff(finance).get(reverse("admin:billing_reconciliation"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Every balance equals the sum of its ledger entries." in page
    assert "3 paid top-ups for $90.00 (1 in test mode" in page
    assert "1 succeeded payments for $20.00" in page
    assert "pi_Missing0001" in page
    assert "pi_Synced0001" not in page
    assert invoice.number in page
    assert f"Open invoices ({format_usd(invoice.amount_due_micros)} due)" in page


def test_the_reconciliation_page_shows_a_balance_that_drifted_from_its_ledger(
    finance, prepaid, as_staff
):
    true_balance = balance(prepaid)
    type(prepaid).objects.filter(pk=prepaid.pk).update(balance_micros=true_balance + 1)
    try:
        response = as_staff(finance).get(reverse("admin:billing_reconciliation"))
    finally:
        type(prepaid).objects.filter(pk=prepaid.pk).update(balance_micros=true_balance)

    page = response.content.decode()
    assert prepaid.public_id in page
    assert format_usd(true_balance + 1, places=6) in page


def test_every_page_of_our_apps_renders_for_finance(finance, prepaid, invoice, as_staff):
    ingest_events(reports=[sms(prepaid)], now=NOW)
    with transaction.atomic():
        place_hold(
            locked=lock_account(prepaid.pk),
            amount_micros=USD,
            max_seconds=750,
            call_id="call-held",
            api_key=None,
            now=NOW,
        )
    client = as_staff(finance)
    rendered = {}

    for model in admin.site._registry:
        meta = model._meta
        if meta.app_label not in OUR_APPS:
            continue
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        expected = 200 if finance.has_perm(f"{meta.app_label}.view_{meta.model_name}") else 403
        rendered[changelist] = (client.get(changelist).status_code, expected)
        obj = model._default_manager.first()
        if obj is not None and expected == 200:
            rendered[change_url(obj)] = (client.get(change_url(obj)).status_code, 200)

    assert {url: got for url, (got, _) in rendered.items()} == {
        url: expected for url, (_, expected) in rendered.items()
    }
    assert change_url(invoice) in rendered


# Money records are read-only ---------------------------------------------------------------------


@pytest.mark.parametrize("model", [LedgerEntry, AuditRecord, Refund])
def test_money_records_have_no_add_change_or_delete_in_admin(
    model, finance, prepaid, as_staff, admin_client
):
    from billing import staff

    staff.refund_topup(
        topup=prepaid.topups.get(),
        amount_micros=USD,
        reason="r",
        actor=finance,
        key="read-only",
        now=NOW,
    )
    obj = model.objects.first()
    meta = model._meta
    add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
    delete = reverse(f"admin:{meta.app_label}_{meta.model_name}_delete", args=[obj.pk])
    before = everything_written()

    for client in (as_staff(finance), admin_client):  # not even a superuser
        page = client.get(change_url(obj))
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert client.get(add).status_code == 403
        assert client.post(change_url(obj), {"reason": "rewritten"}).status_code == 403
        assert client.post(delete, {"post": "yes"}).status_code == 403

    assert everything_written() == before


# Money actions through their pages ---------------------------------------------------------------


def test_posting_the_credit_back_page_twice_with_one_token_credits_once(finance, prepaid, as_staff):
    client = as_staff(finance)
    url = action_url(prepaid, "credit-back")
    data = {"token": token_of(client.get(url)), "amount": "12.50", "reason": "Dropped calls"}
    before = balance(prepaid)

    first = client.post(url, data)
    second = client.post(url, data, follow=True)

    assert first.status_code == 302 and first["Location"] == change_url(prepaid)
    assert "Already done." in messages_of(second)
    [entry] = entries(prepaid, EntryKind.REFUND)
    assert (entry.amount_micros, entry.actor, entry.reason) == (
        12_500_000,
        finance,
        "Dropped calls",
    )
    assert balance(prepaid) == before + 12_500_000
    [record] = audit_records(prepaid)
    assert (record.actor, record.action, record.reason) == (
        finance,
        StaffAction.CREDIT_BACK,
        "Dropped calls",
    )


def test_posting_the_refund_page_twice_with_one_token_refunds_once(finance, prepaid, as_staff):
    client = as_staff(finance)
    url = action_url(prepaid, "refund-topup")
    topup = prepaid.topups.get()
    data = {
        "token": token_of(client.get(url)),
        "topup": topup.pk,
        "amount": "20.00",
        "reason": "Bought too much",
    }
    before = balance(prepaid)

    assert client.post(url, data).status_code == 302
    assert client.post(url, data).status_code == 302

    [refund] = Refund.objects.all()
    assert (refund.topup, refund.amount_micros, refund.status) == (topup, 20 * USD, "succeeded")
    assert len(entries(prepaid, EntryKind.TOPUP_REFUND)) == 1
    assert len(audit_records(prepaid, StaffAction.REFUND_TOPUP)) == 1
    assert balance(prepaid) == before - 20 * USD


def test_a_grant_with_an_expiry_from_its_page(finance, prepaid, as_staff):
    client = as_staff(finance)
    url = action_url(prepaid, "grant")
    data = {
        "token": token_of(client.get(url)),
        "amount": "15",
        "reason": "Trial extension",
        "expires_at": "2027-01-31 00:00",
    }

    response = client.post(url, data)

    assert response.status_code == 302
    [entry] = entries(prepaid, EntryKind.PROMOTIONAL)
    assert entry.amount_micros == 15 * USD
    assert entry.grant.expires_at.isoformat() == "2027-01-31T00:00:00+00:00"


def test_an_adjustment_below_zero_from_its_page_shows_the_error_and_writes_nothing(
    finance, prepaid, as_staff
):
    client = as_staff(finance)
    url = action_url(prepaid, "adjust")
    data = {"token": token_of(client.get(url)), "amount": "-500", "reason": "Correction"}
    before = everything_written()

    response = client.post(url, data)

    assert response.status_code == 200
    assert "The prepaid balance cannot go below zero." in response.content.decode()
    assert everything_written() == before


def test_a_plan_change_from_its_page(finance, prepaid, plans, as_staff):
    client = as_staff(finance)
    url = action_url(prepaid, "change-plan")
    data = {
        "token": token_of(client.get(url)),
        "plan": plans["llm-api"].pk,
        "when": "next_period",
        "reason": "Moving to the API product",
    }

    assert client.post(url, data).status_code == 302

    prepaid.subscription.refresh_from_db()
    assert prepaid.subscription.pending_plan == plans["llm-api"]


def test_a_large_credit_back_from_its_page_waits_for_another_finance_member(
    finance, second_finance, support, prepaid, as_staff, settings
):
    settings.REFUND_APPROVAL_THRESHOLD_MICROS = 10 * USD
    client = as_staff(finance)
    url = action_url(prepaid, "credit-back")
    data = {"token": token_of(client.get(url)), "amount": "25", "reason": "Outage"}
    before = balance(prepaid)

    requested = client.post(url, data, follow=True)
    approval = RefundApproval.objects.get()
    decide = reverse("admin:billing_approval_decide", args=[approval.pk])
    own = client.post(decide, {"decision": "approve", "reason": "Mine"})

    assert any("waiting for a second staff member" in m for m in messages_of(requested))
    assert balance(prepaid) == before
    assert own.status_code == 200
    assert "another staff member" in own.content.decode()
    assert as_staff(support).get(decide).status_code == 403

    approver = as_staff(second_finance)
    assert approver.get(decide).status_code == 200
    assert approver.post(decide, {"decision": "approve", "reason": "Checked"}).status_code == 302
    assert approver.post(decide, {"decision": "approve", "reason": "Again"}).status_code == 302

    approval.refresh_from_db()
    assert (approval.status, approval.decided_by) == (ApprovalStatus.APPROVED, second_finance)
    [entry] = entries(prepaid, EntryKind.REFUND)
    assert entry.amount_micros == 25 * USD
    assert balance(prepaid) == before + 25 * USD


# Plans and rates (S1) ----------------------------------------------------------------------------


def test_a_rate_added_on_the_plan_page_leaves_past_charges_alone_and_prices_later_calls(
    finance, prepaid, plans, as_staff
):
    client = as_staff(finance)
    plan = plans["voice-prepaid"]
    past_call = Call.objects.get(account=prepaid)
    # The staff member adds it on NOW's day: the rate takes effect the next day, in the future.
    clock = time_machine.travel(NOW)
    clock.start()
    ledger_before = list(
        LedgerEntry.objects.filter(account=prepaid).values_list("pk", "amount_micros")
    )
    page = client.get(change_url(plan))
    data = form_fields(page, "plan_form")
    row = data["rates-INITIAL_FORMS"]  # the blank row after the existing rates
    data.update(
        {
            f"rates-{row}-component": RateComponent.CALL,
            f"rates-{row}-key": "",
            f"rates-{row}-price": "0.10",
            f"rates-{row}-effective_from_0": "2026-03-16",
            f"rates-{row}-effective_from_1": "00:00:00",
        }
    )

    response = client.post(change_url(plan), data)
    clock.stop()

    assert response.status_code == 302, response.context and [
        response.context["adminform"].form.errors,
        [formset.formset.errors for formset in response.context["inline_admin_formsets"]],
    ]
    assert Rate.objects.filter(plan=plan, component="call", price=Decimal("0.10")).exists()
    assert not AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST).exists()
    later_call, _ = report_call(
        report=call(prepaid, 60, connected_at=NOW + timedelta(days=2)),
        now=NOW + timedelta(days=2, hours=1),
    )
    assert later_call.cost_micros == 100_000
    assert Call.objects.get(pk=past_call.pk).cost_micros == 80_000
    assert (
        list(LedgerEntry.objects.filter(account=prepaid).values_list("pk", "amount_micros"))[
            : len(ledger_before)
        ]
        == ledger_before
    )


def test_a_rate_that_has_taken_effect_cannot_be_changed_or_deleted(finance, plans, as_staff):
    client = as_staff(finance)
    rate = Rate.objects.filter(plan=plans["voice-prepaid"], component="call").get()
    assert rate.effective_from < timezone.now()

    page = client.get(change_url(rate))
    changed = client.post(change_url(rate), {"price": "0.01"})
    deleted = client.post(reverse("admin:billing_rate_delete", args=[rate.pk]), {"post": "yes"})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert changed.status_code == deleted.status_code == 403
    rate.refresh_from_db()
    assert rate.price == Decimal("0.08")


def test_a_rate_not_yet_in_effect_can_be_corrected_by_finance_only(
    finance, support, plans, as_staff
):
    rate = Rate.objects.create(
        plan=plans["voice-prepaid"],
        component=RateComponent.CALL,
        price=Decimal("0.09"),
        effective_from=timezone.now() + timedelta(days=30),
    )

    support_page = as_staff(support).get(change_url(rate))
    support_post = as_staff(support).post(change_url(rate), {"price": "0.01"})
    finance_client = as_staff(finance)
    data = form_fields(finance_client.get(change_url(rate)), "rate_form")
    data["price"] = "0.085"
    finance_post = finance_client.post(change_url(rate), data)

    assert support_page.status_code == 200
    assert 'name="_save"' not in support_page.content.decode()
    assert support_post.status_code == 403
    assert finance_post.status_code == 302
    rate.refresh_from_db()
    assert rate.price == Decimal("0.085")
    assert (
        finance_client.post(
            reverse("admin:billing_rate_delete", args=[rate.pk]), {"post": "yes"}
        ).status_code
        == 302
    )
    assert not Rate.objects.filter(pk=rate.pk).exists()


# Prices dated in the past (issue 14, item 17) -------------------------------------------------

YESTERDAY = timezone.now() - timedelta(days=1)


def new_rate_row(page, *, confirm: bool) -> tuple[dict, str]:
    data = form_fields(page, "plan_form")
    row = data["rates-INITIAL_FORMS"]
    data.update(
        {
            f"rates-{row}-component": RateComponent.CALL,
            f"rates-{row}-key": "",
            f"rates-{row}-price": "0.10",
            f"rates-{row}-effective_from_0": f"{YESTERDAY:%Y-%m-%d}",
            f"rates-{row}-effective_from_1": "00:00:00",
        }
    )
    if confirm:
        data[f"rates-{row}-confirm_past_effective"] = "on"
    return data, row


def test_a_rate_dated_in_the_past_is_refused_on_the_plan_page(finance, plans, as_staff):
    client = as_staff(finance)
    plan = plans["voice-prepaid"]
    rates_before = Rate.objects.count()
    data, _ = new_rate_row(client.get(change_url(plan)), confirm=False)

    response = client.post(change_url(plan), data)

    assert response.status_code == 200
    [formset] = response.context["inline_admin_formsets"]
    errors = [
        e for form_errors in formset.formset.errors for e in form_errors.get("effective_from", [])
    ]
    assert any("is in the past" in e and "confirm re-pricing usage from" in e for e in errors)
    assert Rate.objects.count() == rates_before
    assert not AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST).exists()


def test_a_rate_dated_in_the_past_is_added_once_confirmed_and_the_confirmation_is_audited(
    finance, plans, as_staff
):
    client = as_staff(finance)
    plan = plans["voice-prepaid"]
    data, _ = new_rate_row(client.get(change_url(plan)), confirm=True)

    response = client.post(change_url(plan), data)

    assert response.status_code == 302
    rate = Rate.objects.get(plan=plan, component="call", price=Decimal("0.10"))
    [record] = AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST)
    assert record.actor == finance
    assert record.target_id == str(rate.pk)
    assert record.after["owner"] == "voice-prepaid"
    assert Decimal(record.after["price"]) == Decimal("0.10")
    assert record.after["reprices"]["from"] == rate.effective_from.isoformat()
    assert f"{rate.effective_from:%Y-%m-%d}" in record.reason


def model_price_form(*, confirm: bool) -> dict:
    data = {
        "provider": "openai",
        "model": "gpt-4o",
        "kind": "text",
        "input_per_million": "5.00",
        "output_per_million": "20.00",
        "effective_from_0": f"{YESTERDAY:%Y-%m-%d}",
        "effective_from_1": "00:00:00",
    }
    if confirm:
        data["confirm_past_effective"] = "on"
    return data


def test_a_model_price_dated_in_the_past_is_refused_unless_confirmed_and_audited(
    finance, plans, as_staff
):
    client = as_staff(finance)
    url = reverse("admin:billing_modelprice_add")
    prices_before = ModelPrice.objects.count()

    refused = client.post(url, model_price_form(confirm=False))

    assert refused.status_code == 200
    assert "is in the past" in str(refused.context["adminform"].form.errors["effective_from"])
    assert ModelPrice.objects.count() == prices_before
    assert not AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST).exists()

    confirmed = client.post(url, model_price_form(confirm=True))

    assert confirmed.status_code == 302
    price = ModelPrice.objects.get(model="gpt-4o", input_per_million=Decimal("5.00"))
    [record] = AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST)
    assert (record.target_id, record.after["model"]) == (str(price.pk), "gpt-4o")
    assert record.after["reprices"]["from"] == price.effective_from.isoformat()


def test_a_model_price_from_tomorrow_needs_no_confirmation(finance, plans, as_staff):
    client = as_staff(finance)
    data = model_price_form(confirm=False)
    data["effective_from_0"] = f"{timezone.now() + timedelta(days=2):%Y-%m-%d}"

    response = client.post(reverse("admin:billing_modelprice_add"), data)

    assert response.status_code == 302
    assert not AuditRecord.objects.filter(action=StaffAction.REPRICE_PAST).exists()


@pytest.mark.parametrize(("key", "saved"), [("44", False), ("0044 20", False), ("+4420", True)])
def test_a_destination_rate_s_prefix_must_be_e164_to_be_added(finance, plans, as_staff, key, saved):
    # Issue 14 item 18: numbers are matched in E.164, so a prefix in another form never matches.
    client = as_staff(finance)
    tomorrow = timezone.now() + timedelta(days=2)
    data = {
        "plan": plans["voice-payg"].pk,
        "component": RateComponent.DESTINATION,
        "key": key,
        "price": "0.07",
        "effective_from_0": f"{tomorrow:%Y-%m-%d}",
        "effective_from_1": "00:00:00",
    }

    response = client.post(reverse("admin:billing_rate_add"), data)

    assert Rate.objects.filter(key=key, price=Decimal("0.07")).exists() == saved
    if saved:
        assert response.status_code == 302
    else:
        assert "E.164" in str(response.context["adminform"].form.errors["key"])
