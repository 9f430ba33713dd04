"""Plan changes with plan fees (SPEC S2, F1, F2; issue 19 parts 1 and 2): the fee prorated by the
second with figures worked by hand, the customer's own change from the Billing page (compare,
preview, confirm), and who may make it.

Accounts open on 2026-03-15 (tests.conftest.NOW) with the anchor day 15: the first period is
[2026-03-15 00:00, 2026-04-15 00:00), 31 days = 2,678,400 s.
"""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from accounts.models import Role
from billing import staff
from billing.invoicing.period_close import close_periods
from billing.models import (
    AuditRecord,
    CreditGrant,
    EntryKind,
    FeePaidBy,
    InvoiceReason,
    InvoiceStatus,
    Plan,
    PlanFee,
    PlanFeeCharge,
    StaffAction,
    Subscription,
)
from billing.notifications.sending import build_message
from billing.payments.collection import collect_due_invoices
from billing.plans.fees import prorated_fee_micros
from tests.billing.usage_reports import (
    USD,
    add_card,
    fresh_test_gateway,  # noqa: F401 - autouse
    no_ledger_drift,  # noqa: F401 - autouse
    reload,
)

FIRST_START = datetime(2026, 3, 15, tzinfo=UTC)
FIRST_END = datetime(2026, 4, 15, tzinfo=UTC)
SECOND_END = datetime(2026, 5, 15, tzinfo=UTC)
CHANGE_AT = datetime(2026, 3, 25, 12, 0, tzinfo=UTC)


def test_proration_rounds_once_half_up_to_the_micro_dollar():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # 1,000,001 micros for 2 s, 1 s left: 500,000.5 micros, half-up 500,001.
    assert (
        prorated_fee_micros(
            fee_micros=1_000_001,
            start=start,
            end=start + timedelta(seconds=2),
            at=start + timedelta(seconds=1),
        )
        == 500_001
    )
    # A part-second left over is not counted: 1.9 s into the 2 s leaves no whole second.
    assert (
        prorated_fee_micros(
            fee_micros=1_000_000,
            start=start,
            end=start + timedelta(seconds=2),
            at=start + timedelta(seconds=1, microseconds=900_000),
        )
        == 0
    )


@pytest.fixture
def finance(make_user):
    return make_user("finance@meterline.test", is_staff=True, is_superuser=True)


def test_an_upgrade_now_charges_the_rest_of_the_new_fee_by_card_and_its_share_of_credit(
    make_account, plans, finance
):
    account = make_account("voice-prepaid", credit_micros=20 * USD)
    add_card(account)

    staff.change_plan(
        account=account,
        plan=plans["credits-monthly"],
        when="now",
        reason="Customer asked",
        actor=finance,
        key="k1",
        now=CHANGE_AT,
    )

    # Left of the period: 2026-04-15 00:00 - 2026-03-25 12:00 = 20.5 days = 1,771,200 s of
    # 2,678,400 s. New fee 45 USD x 1,771,200 / 2,678,400 = 29.758064516... USD -> 29,758,065
    # micros (half-up); the old plan had no fee, nothing to credit. The card is charged the
    # invoice's amount in cents, 29.76 USD.
    charge = PlanFeeCharge.objects.get(account=account, kind="change")
    assert charge.amount_micros == 29_758_065
    assert charge.paid_by == FeePaidBy.CARD
    invoice = charge.invoice
    assert invoice.reason == InvoiceReason.PLAN_FEE
    assert [(line.amount_micros, line.description) for line in invoice.lines.all()] == [
        (29_758_065, "Remaining time on Monthly Credits (1,771,200 of 2,678,400 seconds)")
    ]
    assert invoice.amount_due_micros == 29_760_000
    assert reload(account).subscription.plan.code == "credits-monthly"
    # Paid at once by the card: the included credit for the rest of the period, prorated
    # the same way: 50 USD x 1,771,200 / 2,678,400 = 33.064516129... -> 33,064,516 micros.
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    grant = CreditGrant.objects.get(account=account, kind=EntryKind.ALLOWANCE, expires_at=FIRST_END)
    assert grant.amount_micros == 33_064_516
    assert reload(account).balance_micros == 20 * USD + 33_064_516


def test_a_change_between_two_fee_plans_credits_the_old_fee_and_charges_the_new(
    make_account, plans, finance
):
    bigger = Plan.objects.create(
        code="credits-plus",
        name="Credits Plus",
        billing_mode="prepaid",
        included_credit_micros=100 * USD,
        selectable_for_change=True,
    )
    PlanFee.objects.create(plan=bigger, amount_micros=90 * USD, effective_from=FIRST_START)
    account = make_account("credits-monthly")
    add_card(account)
    close_periods(now=FIRST_END + timedelta(hours=1))  # the second period's fee, 45 USD
    collect_due_invoices(now=FIRST_END + timedelta(hours=1))

    at = datetime(2026, 4, 25, 6, 0, tzinfo=UTC)
    staff.change_plan(
        account=account, plan=bigger, when="now", reason="Upgrade", actor=finance, key="k2", now=at
    )

    # Period [2026-04-15, 2026-05-15) = 30 days = 2,592,000 s; left from 2026-04-25 06:00:
    # 19 days 18 h = 1,706,400 s, 0.658333... of the period.
    # Credit: 45 USD x 0.658333... = 29.625 USD; charge: 90 USD x 0.658333... = 59.25 USD;
    # net 29.625 USD charged to the card (29.63 USD in cents).
    invoice = PlanFeeCharge.objects.get(account=account, kind="change").invoice
    assert [line.amount_micros for line in invoice.lines.order_by("position")] == [
        -29_625_000,
        59_250_000,
    ]
    assert invoice.total_micros == 29_625_000
    assert invoice.amount_due_micros == 29_630_000


def test_a_downgrade_now_credits_the_unused_fee_to_the_balance(make_account, plans, finance):
    plan = plans["credits-monthly"]
    plan.fee_payment = "credit"
    plan.save()
    account = make_account("credits-monthly", credit_micros=100 * USD)
    close_periods(now=FIRST_END + timedelta(hours=1))  # 45 USD from credit
    balance = reload(account).balance_micros

    at = datetime(2026, 4, 25, 6, 0, tzinfo=UTC)
    staff.change_plan(
        account=account,
        plan=plans["voice-prepaid"],
        when="now",
        reason="Downgrade",
        actor=finance,
        key="k3",
        now=at,
    )

    # 45 USD x 1,706,400 / 2,592,000 = 29.625 USD back to the balance; nothing to charge.
    charge = PlanFeeCharge.objects.get(account=account, kind="change")
    assert charge.amount_micros == -29_625_000
    assert reload(account).balance_micros == balance + 29_625_000


# The Billing page ------------------------------------------------------------------------------


@pytest.fixture
def clock():
    with time_machine.travel(CHANGE_AT, tick=False):
        yield


def member_client(make_user, add_member, account, role):
    user = make_user()
    add_member(user, account, role)
    client = Client()
    client.force_login(user)
    return client


def preview_form(client, account, plan_code):
    """Open the preview page and return the confirmation form's fields."""
    response = client.get(f"/app/a/{account.public_id}/billing/plan/preview/", {"plan": plan_code})
    assert response.status_code == 200
    form = response.context["form"]
    return response, {
        "plan": plan_code,
        "fingerprint": form.initial["fingerprint"],
        "previewed_at": form.initial["previewed_at"].isoformat(),
        "key": form["key"].value(),
    }


def test_a_billing_member_upgrades_from_the_billing_page(
    clock, make_account, make_user, add_member
):
    account = make_account("voice-prepaid")
    add_card(account)
    client = member_client(make_user, add_member, account, Role.BILLING)

    page = client.get(f"/app/a/{account.public_id}/billing/")
    assert b"Your plan and rates" in page.content
    assert b"Compare and change plan" in page.content
    compare = client.get(f"/app/a/{account.public_id}/billing/plan/")
    assert b"Monthly Credits" in compare.content and b"$45.00" in compare.content
    preview, fields = preview_form(client, account, "credits-monthly")
    assert b"$29.76" in preview.content  # 29,758,065 micros, worked above
    response = client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    assert response.status_code == 302
    assert response["Location"].endswith("/billing/#plan")
    assert Subscription.objects.get(account=account).plan.code == "credits-monthly"
    record = AuditRecord.objects.get(account=account, action=StaffAction.SELF_SERVE_PLAN)
    assert record.after["plan"] == "credits-monthly"
    [notification] = account.notifications.filter(kind="plan_changed")
    message = build_message(notification)
    assert message.subject == "Your plan is now Monthly Credits"
    assert "Charged now for the rest of this period: $29.76." in message.body
    [(html, _)] = message.alternatives
    assert "<strong>$29.76</strong>" in html
    # A second post of the same form (a reload, a double click) changes nothing more.
    client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)
    assert PlanFeeCharge.objects.filter(account=account).count() == 1


def test_a_downgrade_waits_for_the_next_period(clock, make_account, make_user, add_member):
    account = make_account("credits-monthly")
    client = member_client(make_user, add_member, account, Role.OWNER)

    preview, fields = preview_form(client, account, "voice-prepaid")
    assert b"At the start of the next period" in preview.content
    client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    subscription = Subscription.objects.get(account=account)
    assert (subscription.plan.code, subscription.pending_plan.code) == (
        "credits-monthly",
        "voice-prepaid",
    )
    # No change charge (the first period's own fee was charged when the account opened).
    assert not PlanFeeCharge.objects.filter(account=account, kind="change").exists()


def test_an_upgrade_whose_fee_goes_to_the_card_needs_a_card(
    clock, make_account, make_user, add_member
):
    account = make_account("voice-prepaid")
    client = member_client(make_user, add_member, account, Role.OWNER)
    _, fields = preview_form(client, account, "credits-monthly")

    response = client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    assert response.status_code == 400
    assert b"Add a card on the Billing page first" in response.content
    assert Subscription.objects.get(account=account).plan.code == "voice-prepaid"
    assert reload(account).past_due_since is None


def test_a_stale_preview_is_refused_and_shown_again(clock, make_account, make_user, add_member):
    account = make_account("voice-prepaid")
    add_card(account)
    client = member_client(make_user, add_member, account, Role.OWNER)
    _, fields = preview_form(client, account, "credits-monthly")
    # The fee changes between the preview and the confirmation.
    PlanFee.objects.create(
        plan=Plan.objects.get(code="credits-monthly"),
        amount_micros=60 * USD,
        effective_from=CHANGE_AT - timedelta(minutes=1),
    )

    response = client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    assert response.status_code == 400
    assert b"changed since this preview" in response.content
    assert Subscription.objects.get(account=account).plan.code == "voice-prepaid"


def test_a_preview_confirmed_too_late_is_refused(clock, make_account, make_user, add_member):
    account = make_account("voice-prepaid")
    client = member_client(make_user, add_member, account, Role.OWNER)
    _, fields = preview_form(client, account, "llm-api")
    fields["previewed_at"] = (CHANGE_AT - timedelta(hours=1)).isoformat()

    response = client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    assert response.status_code == 400
    assert b"out of date" in response.content
    assert Subscription.objects.get(account=account).plan.code == "voice-prepaid"


@pytest.mark.parametrize(
    "query",
    [{"plan": "voice-enterprise"}, {"plan": "voice-prepaid"}, {"plan": ""}, {"plan": "x" * 500}],
)
def test_a_plan_not_open_to_the_account_is_a_form_error_beside_the_field(
    clock, make_account, make_user, add_member, query
):
    account = make_account("voice-prepaid")
    client = member_client(make_user, add_member, account, Role.OWNER)

    response = client.get(f"/app/a/{account.public_id}/billing/plan/preview/", query)

    assert response.status_code == 400
    assert b'id="id_plan_error"' in response.content


def test_bad_confirmation_input_is_a_form_error_never_a_500(
    clock, make_account, make_user, add_member
):
    account = make_account("voice-prepaid")
    client = member_client(make_user, add_member, account, Role.OWNER)
    url = f"/app/a/{account.public_id}/billing/plan/confirm/"

    assert client.post(url, {}).status_code == 400
    assert client.post(url, {"plan": "llm-api", "previewed_at": "yesterday"}).status_code == 400
    assert Subscription.objects.get(account=account).plan.code == "voice-prepaid"


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DEVELOPER])
def test_viewers_and_developers_cannot_change_the_plan(
    clock, make_account, make_user, add_member, role
):
    account = make_account("voice-prepaid")
    owner = Client()
    owner.force_login(account.memberships.get(role=Role.OWNER).user)
    _, fields = preview_form(owner, account, "credits-monthly")
    client = member_client(make_user, add_member, account, role)

    compare = client.get(f"/app/a/{account.public_id}/billing/plan/")
    preview = client.get(f"/app/a/{account.public_id}/billing/plan/preview/", {"plan": "llm-api"})
    confirm = client.post(f"/app/a/{account.public_id}/billing/plan/confirm/", fields)

    assert compare.status_code == 200 and b"Preview the change" not in compare.content
    assert (preview.status_code, confirm.status_code) == (403, 403)
    assert Subscription.objects.get(account=account).plan.code == "voice-prepaid"
