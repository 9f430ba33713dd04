"""No customer action creates spendable value except the one signup credit of a new customer's
own plan and what is paid for (issue 14, item 1; docs/billing-rules.md, "No value from nothing").

Through the real pages and API: sign-up, the subaccount form, authorize, call reports, the
admin's approval page.
"""

import json
from datetime import timedelta

import pytest
import time_machine
from django.test import Client

from accounts.models import Account, Membership, User
from billing import staff
from billing.invoicing.period_close import close_periods
from billing.ledger.drift import ledger_drift
from billing.models import (
    AuditRecord,
    CreditGrant,
    EntryKind,
    LedgerEntry,
    PaymentMethod,
    SignupCreditClaim,
    StaffAction,
)
from billing.payments import cards
from billing.payments.collection import collect_due_invoices
from billing.plans.example_plans import load_example_plans
from billing.plans.onboarding import create_account
from billing.plans.signup_credit import signup_email_key
from billing.staff import StaffActionError
from tests.billing.processes import run_in_processes
from tests.conftest import NOW

API_NOW = NOW + timedelta(hours=1)
PASSWORD = "correct horse battery staple"
USD = 1_000_000


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(API_NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def no_ledger_drift(request):
    request.getfixturevalue("db")
    yield
    assert ledger_drift() == []


@pytest.fixture
def platform(make_key):
    return make_key()


@pytest.fixture
def staff_client(make_user):
    client = Client()
    client.force_login(make_user("finance@meterline.test", is_staff=True, is_superuser=True))
    return client


def sign_up(client, email):
    response = client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content
    user = User.objects.get(email=email.lower())
    client.force_login(user)
    return Membership.objects.get(user=user).account


def open_subaccount(client, parent, plan, name="Shop"):
    return client.post(f"/app/a/{parent.public_id}/subaccounts/new/", {"name": name, "plan": plan})


def send(client, method, path, key, body=None):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key.token}"}
    if method == "get":
        return client.get(path, **auth)
    return getattr(client, method)(path, json.dumps(body or {}), "application/json", **auth)


def report_call(client, platform, account, call_id, seconds=60):
    connected = API_NOW - timedelta(minutes=30)
    body = {
        "account": account.public_id,
        "status": "completed",
        "connected_at": connected.isoformat(),
        "ended_at": (connected + timedelta(seconds=seconds)).isoformat(),
        "llm": "gpt-4o",
    }
    response = send(client, "put", f"/api/v1/calls/{call_id}", platform, body)
    assert response.status_code == 200, response.content
    return response.json()


def approve_in_admin(staff_client, account, reason="Contract signed"):
    page = staff_client.get(f"/admin/accounts/account/{account.pk}/staff/approve-allowance/")
    assert page.status_code == 200
    token = page.context["form"].initial["token"]
    return staff_client.post(
        f"/admin/accounts/account/{account.pk}/staff/approve-allowance/",
        {"token": token, "reason": reason},
    )


# Included credit and minutes of a customer's subaccount wait for approval ---------------------


def test_a_self_signed_up_users_credits_monthly_subaccount_has_no_credit_until_staff_approve(
    client, plans, make_key, staff_client
):
    parent = sign_up(client, "founder@example.test")
    response = open_subaccount(client, parent, "credits-monthly")
    child = Account.objects.get(parent=parent)
    assert response.status_code == 302
    key = make_key(child)

    refused = send(client, "post", "/api/v1/authorize", key, {"feature": "call"})

    assert child.balance_micros == 0
    assert not CreditGrant.objects.filter(account=child).exists()
    overview = client.get(response.url)
    assert overview.status_code == 200
    assert overview.context["o"]["allowance"]["total"] == "$0.00"
    assert refused.status_code == 402
    assert refused.json()["error"]["type"] == "insufficient_quota"
    assert send(client, "get", "/api/v1/balance", key).json()["balance"] == "0.000000"

    approved = approve_in_admin(staff_client, child)

    assert approved.status_code == 302
    child.refresh_from_db()
    included = plans["credits-monthly"].included_credit_micros
    assert child.balance_micros == included
    allowed = send(client, "post", "/api/v1/authorize", key, {"feature": "call"})
    assert allowed.status_code == 200
    assert allowed.json()["max_seconds"] > 0
    record = AuditRecord.objects.get(action=StaffAction.APPROVE_ALLOWANCE)
    assert record.account_id == child.pk and record.reason == "Contract signed"


def test_approving_twice_releases_the_included_credit_once(client, plans, staff_client):
    parent = sign_up(client, "twice@example.test")
    open_subaccount(client, parent, "credits-monthly")
    child = Account.objects.get(parent=parent)
    approve_in_admin(staff_client, child)

    second = approve_in_admin(staff_client, child)

    assert second.status_code == 200  # the form again, with the refusal
    assert "not waiting for approval" in second.content.decode()
    child.refresh_from_db()
    assert child.balance_micros == plans["credits-monthly"].included_credit_micros
    assert LedgerEntry.objects.filter(account=child, kind=EntryKind.ALLOWANCE).count() == 1


def test_period_close_grants_a_locked_subaccount_no_included_credit_until_approved(
    client, plans, make_user
):
    parent = sign_up(client, "monthly@example.test")
    open_subaccount(client, parent, "credits-monthly")
    child = Account.objects.get(parent=parent)
    first_end = child.subscription.current_period_end

    close_periods(now=first_end)

    assert not LedgerEntry.objects.filter(account=child, kind=EntryKind.ALLOWANCE).exists()
    approver = make_user("approver@meterline.test", is_staff=True, is_superuser=True)
    staff.approve_allowance(
        account=child, reason="Paid by contract", actor=approver, key="k1", now=first_end
    )
    child.subscription.refresh_from_db()
    # credits-monthly has a plan fee: the next period's credit comes when its fee is paid.
    PaymentMethod.objects.create(
        account=child, gateway_id="test_pm_child", is_default=True, test_behaviour="succeed"
    )
    second_end = child.subscription.current_period_end
    close_periods(now=second_end)
    assert LedgerEntry.objects.filter(account=child, kind=EntryKind.ALLOWANCE).count() == 1
    collect_due_invoices(now=second_end)

    grants = LedgerEntry.objects.filter(account=child, kind=EntryKind.ALLOWANCE)
    # The period it was approved in, then the next one when its fee was paid.
    assert grants.count() == 2
    assert {g.amount_micros for g in grants} == {plans["credits-monthly"].included_credit_micros}


def test_included_minutes_of_a_locked_subaccount_are_charged_as_paid_usage(
    client, plans, make_key, platform, staff_client
):
    # Suppose staff offered voice-enterprise for subaccounts: its minutes would still wait.
    plans["voice-enterprise"].selectable_for_subaccount = True
    plans["voice-enterprise"].save()
    parent = sign_up(client, "minutes@example.test")
    cards.add_test_card(account=parent, behaviour="succeed", now=API_NOW)
    open_subaccount(client, parent, "voice-enterprise")
    child = Account.objects.get(parent=parent)

    locked = report_call(client, platform, child, "call-locked", seconds=60)

    assert locked["cost"] != "0.000000"
    child.refresh_from_db()
    assert child.unbilled_micros > 0
    approve_in_admin(staff_client, child)
    unlocked = report_call(client, platform, child, "call-unlocked", seconds=60)
    assert unlocked["cost"] == "0.000000"


# Plans a customer may choose ----------------------------------------------------------------


def test_voice_enterprise_is_neither_offered_nor_accepted_for_a_subaccount(client, plans):
    parent = sign_up(client, "enterprise@example.test")

    page = client.get(f"/app/a/{parent.public_id}/subaccounts/")
    response = open_subaccount(client, parent, "voice-enterprise")

    offered = [code for code, _ in page.context["form"].fields["plan"].choices]
    assert "voice-enterprise" not in offered
    assert "credits-monthly" in offered
    assert response.status_code == 400
    assert response.context["form"].errors["plan"]
    assert not Account.objects.filter(parent=parent).exists()


def test_sign_up_offers_and_accepts_only_plans_selectable_at_sign_up(client, plans):
    page = client.get("/accounts/signup/")
    refused = client.post(
        "/accounts/signup/",
        {
            "email": "big@example.test",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "plan": "voice-enterprise",
        },
    )

    offered = [code for code, _ in page.context["form"].fields["plan"].choices]
    assert sorted(offered) == ["llm-api", "voice-prepaid"]
    assert refused.status_code == 200
    assert refused.context["form"].errors["plan"]
    assert not User.objects.exists() and not Account.objects.exists()

    chosen = client.post(
        "/accounts/signup/",
        {
            "email": "voice@example.test",
            "password1": PASSWORD,
            "password2": PASSWORD,
            "plan": "voice-prepaid",
        },
    )

    assert chosen.status_code == 302
    account = Membership.objects.get(user__email="voice@example.test").account
    assert account.subscription.plan.code == "voice-prepaid"


def test_a_sign_up_plan_not_selectable_at_sign_up_opens_no_account(client, plans, settings):
    settings.SIGNUP_PLAN_CODE = "voice-enterprise"

    response = client.post(
        "/accounts/signup/",
        {"email": "sales@example.test", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    assert User.objects.filter(email="sales@example.test").exists()
    assert not Account.objects.exists()


# Postpaid children need a card ---------------------------------------------------------------


def test_a_postpaid_subaccount_without_a_card_is_refused_billable_usage_with_a_402(
    client, plans, make_key
):
    parent = sign_up(client, "payg@example.test")
    open_subaccount(client, parent, "voice-payg")
    child = Account.objects.get(parent=parent)
    key = make_key(child)

    refused = send(client, "post", "/api/v1/authorize", key, {"feature": "call"})
    free_sms = send(client, "post", "/api/v1/authorize", key, {"feature": "sms"})

    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["type"] == "insufficient_quota" and error["code"] == "402"
    assert "no saved card" in error["message"]
    # SMS costs nothing on voice-payg: free usage stays allowed (SPEC G1).
    assert free_sms.status_code == 200 and free_sms.json()["allowed"] is True


def test_a_postpaid_subaccount_may_use_its_parents_card_but_not_an_expired_one(
    client, plans, make_key
):
    parent = sign_up(client, "parentcard@example.test")
    open_subaccount(client, parent, "voice-payg")
    child = Account.objects.get(parent=parent)
    key = make_key(child)
    card = cards.add_test_card(account=parent, behaviour="succeed", now=API_NOW)

    allowed = send(client, "post", "/api/v1/authorize", key, {"feature": "call"})
    PaymentMethod.objects.filter(pk=card.pk).update(exp_year=API_NOW.year - 1)
    expired = send(client, "post", "/api/v1/authorize", key, {"feature": "call"})

    assert allowed.status_code == 200
    assert expired.status_code == 402


# Signup credit once per person ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "key"),
    [
        ("Jane.Doe@Example.test", "jane.doe@example.test"),
        ("jane.doe+trial@example.test", "jane.doe@example.test"),
        ("Jane.Doe+x@GoogleMail.com", "janedoe@gmail.com"),
        ("j.a.n.e.doe@gmail.com", "janedoe@gmail.com"),
        ("  janedoe@gmail.com ", "janedoe@gmail.com"),
    ],
)
def test_an_address_is_compared_as_its_mail_provider_reads_it(email, key):
    assert signup_email_key(email) == key


def test_signing_up_again_with_a_plus_or_dotted_spelling_gets_no_second_signup_credit(
    client, plans
):
    first = sign_up(Client(), "Jane.Doe@gmail.com")
    second = sign_up(Client(), "janedoe+again@googlemail.com")
    third = sign_up(Client(), "someone.else@gmail.com")

    assert first.balance_micros == plans["llm-api"].signup_credit_micros
    assert second.balance_micros == 0
    assert not LedgerEntry.objects.filter(account=second).exists()
    assert third.balance_micros == plans["llm-api"].signup_credit_micros


def _open_llm_api_account(email):
    from billing.models import Plan

    account = create_account(
        name=email, email=email, plan=Plan.objects.get(code="llm-api"), now=API_NOW
    )
    return account.balance_micros


SPELLINGS = [
    "sam.lee@gmail.com",
    "samlee@gmail.com",
    "Sam.Lee+1@gmail.com",
    "s.a.m.lee+2@googlemail.com",
    "SAMLEE@GMAIL.COM",
    "samlee+3@googlemail.com",
]


@pytest.mark.slow
def test_concurrent_sign_ups_of_one_person_get_the_signup_credit_once(transactional_db):
    load_example_plans()

    balances = run_in_processes(_open_llm_api_account, [(email,) for email in SPELLINGS])

    credit = 10 * USD  # llm-api's signup credit
    assert sorted(balances) == [0] * (len(SPELLINGS) - 1) + [credit]
    assert Account.objects.count() == len(SPELLINGS)
    assert SignupCreditClaim.objects.get().email_key == "samlee@gmail.com"
    assert LedgerEntry.objects.filter(kind=EntryKind.SIGNUP_CREDIT).count() == 1
    assert ledger_drift() == []


def test_staff_cannot_approve_an_account_that_is_not_waiting(
    make_account, make_user, plans_without_fees
):
    # Without the plan fee nothing waits (with it, its first period's fee locks the allowance).
    account = make_account("credits-monthly")
    approver = make_user("boss@meterline.test", is_staff=True, is_superuser=True)

    with pytest.raises(StaffActionError):
        staff.approve_allowance(account=account, reason="why", actor=approver, key="k", now=NOW)
