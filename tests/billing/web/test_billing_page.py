"""The dashboard's billing page (SPEC D3): htmx forms that validate inline, roles, statement."""

import pytest
import time_machine
from django.http import StreamingHttpResponse

from accounts.models import Role
from billing.models import (
    AlertSettings,
    AutoTopUpSettings,
    BillingDetails,
    Budget,
    RecurringCreditSettings,
    TestCardBehaviour,
    TopUp,
)
from billing.payments.cards import add_test_card
from tests.conftest import NOW

USD = 1_000_000
HTMX = {"HX-Request": "true"}


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-prepaid", owner=owner, credit_micros=30 * USD, name="Acme Voice")


def url(account, path=""):
    return f"/app/a/{account.public_id}/billing/{path}"


def post(client, user, path, data, **headers):
    client.force_login(user)
    with time_machine.travel(NOW, tick=False):
        return client.post(path, data, headers=headers)


def test_the_page_shows_top_up_with_the_plans_minimum_cards_and_the_forms(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    client.force_login(owner)

    page = client.get(url(account)).content.decode()

    assert 'id="top-up"' in page and "At least $20.00 on the Voice Prepaid plan" in page
    assert f'action="/app/a/{account.public_id}/billing/topup/"' in page
    assert "Visa •••• 4242" in page
    assert f'hx-post="/app/a/{account.public_id}/billing/auto-topup/"' in page
    assert 'id="alerts"' in page and 'id="budgets"' in page
    assert "Statement of entries" in page


def test_a_bad_auto_top_up_value_comes_back_as_the_form_with_its_error(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(
        client,
        owner,
        url(account, "auto-topup/"),
        {"enabled": "on", "threshold": "ten dollars", "amount": "50"},
        **HTMX,
    )

    fragment = response.content.decode()
    assert response.status_code == 200
    assert fragment.lstrip().startswith('<section class="card" id="auto-topup"')
    assert "<html" not in fragment
    assert "Enter an amount in USD" in fragment
    assert 'value="ten dollars"' in fragment
    assert not AutoTopUpSettings.objects.filter(account=account).exists()


def test_a_rule_of_the_service_shows_inline_too(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(
        client,
        owner,
        url(account, "auto-topup/"),
        {"enabled": "on", "threshold": "20", "amount": "5"},
        **HTMX,
    )

    assert "The amount must be at least the minimum top-up, $20.00." in response.content.decode()
    assert not AutoTopUpSettings.objects.filter(account=account).exists()


def test_a_good_auto_top_up_is_saved_and_the_fragment_says_so(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(
        client,
        owner,
        url(account, "auto-topup/"),
        {"enabled": "on", "threshold": "15", "amount": "50", "monthly_cap": "200"},
        **HTMX,
    )

    assert "Auto-top-up saved." in response.content.decode()
    settings = AutoTopUpSettings.objects.get(account=account)
    assert settings.enabled and settings.threshold_micros == 15 * USD
    assert settings.amount_micros == 50 * USD and settings.monthly_cap_micros == 200 * USD


def test_without_javascript_the_form_posts_and_redirects_back(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(client, owner, url(account, "auto-topup/"), {"threshold": "15", "target": "60"})

    assert response.status_code == 302
    assert response.url == url(account) + "#auto-topup"
    assert AutoTopUpSettings.objects.get(account=account).target_micros == 60 * USD


def test_without_javascript_an_error_shows_the_whole_page_with_it(client, owner, account):
    response = post(client, owner, url(account, "auto-topup/"), {"threshold": "", "amount": "50"})

    page = response.content.decode()
    assert response.status_code == 400
    assert "<html" in page and "This field is required." in page


def test_alert_settings_save_a_threshold_and_the_email_choices(client, owner, account):
    response = post(
        client,
        owner,
        url(account, "alerts/"),
        {"threshold": "12.50", "email_low_balance": "on", "email_invoices": "on"},
        **HTMX,
    )

    assert "Alert settings saved." in response.content.decode()
    settings = AlertSettings.objects.get(account=account)
    assert settings.low_balance_threshold_micros == 12_500_000
    assert settings.email_low_balance and settings.email_invoices
    assert not settings.email_receipts


def test_an_empty_threshold_goes_back_to_the_plans_default(client, owner, account):
    post(client, owner, url(account, "alerts/"), {"threshold": "3"}, **HTMX)

    post(client, owner, url(account, "alerts/"), {"threshold": ""}, **HTMX)

    assert AlertSettings.objects.get(account=account).low_balance_threshold_micros is None


def test_a_negative_threshold_is_refused_inline(client, owner, account):
    response = post(client, owner, url(account, "alerts/"), {"threshold": "-1"}, **HTMX)

    assert "The threshold cannot be negative." in response.content.decode()


def test_budgets_are_added_and_removed_with_htmx(client, owner, account, make_key):
    key = make_key(account).api_key

    response = post(
        client,
        owner,
        url(account, "budgets/"),
        {"name": "Staging", "amount": "10", "hard": "on", "key": key.key_id},
        **HTMX,
    )

    assert "Budget added." in response.content.decode()
    budget = Budget.objects.get(account=account)
    assert budget.hard and budget.api_key == key and budget.amount_micros == 10 * USD
    response = post(client, owner, url(account, f"budgets/{budget.pk}/delete/"), {}, **HTMX)
    assert "Budget removed." in response.content.decode()
    assert not Budget.objects.exists()


def test_a_budget_of_zero_is_refused_inline(client, owner, account):
    response = post(client, owner, url(account, "budgets/"), {"name": "x", "amount": "0"}, **HTMX)

    assert "A budget is an amount above zero." in response.content.decode()
    assert not Budget.objects.exists()


def test_another_accounts_budget_is_a_404(client, owner, account, make_account):
    other = make_account("voice-prepaid")
    budget = Budget.objects.create(account=other, name="theirs", amount_micros=USD)

    response = post(client, owner, url(account, f"budgets/{budget.pk}/delete/"), {})

    assert response.status_code == 404
    assert Budget.objects.filter(pk=budget.pk).exists()


@pytest.mark.parametrize(
    "path, data",
    [
        ("billing/auto-topup/", {"threshold": "10", "amount": "20"}),
        ("billing/recurring-credit/", {"enabled": "on", "amount": "20"}),
        ("billing/alerts/", {"threshold": "10"}),
        ("billing/budgets/", {"name": "x", "amount": "10"}),
        ("billing/details/", {"legal_name": "Someone Else Ltd"}),
        ("billing/topup/", {"amount": "20"}),
        ("payments/cards/add/", {}),
    ],
)
def test_a_viewer_cannot_change_billing(client, account, make_user, add_member, path, data):
    viewer = make_user()
    add_member(viewer, account, Role.VIEWER)

    response = post(client, viewer, f"/app/a/{account.public_id}/{path}", data)

    assert response.status_code == 403


def test_a_viewer_reads_the_page_without_forms(client, account, make_user, add_member):
    viewer = make_user()
    add_member(viewer, account, Role.VIEWER)
    client.force_login(viewer)

    page = client.get(url(account)).content.decode()

    assert "cannot add credit" in page
    assert "Save auto-top-up" not in page and "Add a budget" not in page
    assert "Save recurring credit" not in page


def test_recurring_credit_has_labelled_fields_of_its_own(client, owner, account):
    client.force_login(owner)

    page = client.get(url(account)).content.decode()

    assert f'hx-post="/app/a/{account.public_id}/billing/recurring-credit/"' in page
    assert '<label for="id_recurring_enabled">Buy credit every billing period</label>' in page
    assert '<label for="id_recurring_amount">Amount to buy each period (USD)</label>' in page


def test_recurring_credit_below_the_minimum_is_refused_inline(client, owner, account):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(
        client, owner, url(account, "recurring-credit/"), {"enabled": "on", "amount": "15"}, **HTMX
    )

    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="recurring-credit"')
    assert "The amount must be at least the minimum top-up, $20.00." in fragment
    assert not RecurringCreditSettings.objects.exists() and not TopUp.objects.exists()


def test_recurring_credit_on_a_plan_that_disallows_it_is_refused(client, owner, make_account):
    account = make_account("llm-api", owner=owner)
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    response = post(
        client, owner, url(account, "recurring-credit/"), {"enabled": "on", "amount": "20"}
    )

    assert response.status_code == 400
    assert "Recurring credit is not available on the LLM API plan." in response.content.decode()
    assert not RecurringCreditSettings.objects.exists()


def test_recurring_credit_saved_without_javascript_buys_this_period(
    client, owner, account, django_capture_on_commit_callbacks
):
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            client, owner, url(account, "recurring-credit/"), {"enabled": "on", "amount": "25.50"}
        )

    assert response.status_code == 302
    assert response.url == url(account) + "#recurring-credit"
    assert RecurringCreditSettings.objects.get(account=account).amount_micros == 25_500_000
    account.refresh_from_db()
    assert account.balance_micros == 55_500_000


def test_the_statement_lists_entries_newest_first_and_pages(client, owner, account):
    from tests.billing.postings import post_entry

    for n in range(55):
        post_entry(
            account=account,
            amount_micros=USD,
            kind="promotional",
            now=NOW,
            description=f"Grant {n}",
        )
    client.force_login(owner)

    first = client.get(url(account, "statement/"))
    page = first.context["page"]
    assert [e.description for e in page["entries"][:2]] == ["Grant 54", "Grant 53"]
    second = client.get(url(account, "statement/"), {"after": page["next_cursor"]})
    assert len(second.context["page"]["entries"]) == 6  # 56 entries: 55 grants, initial credit
    assert "Statement of entries" in first.content.decode()


def test_the_statement_csv_streams_every_entry(client, owner, account):
    client.force_login(owner)

    response = client.get(url(account, "statement/export.csv"))

    assert isinstance(response, StreamingHttpResponse)
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "created_at,kind,description,amount_usd,balance_after_usd,reason"
    assert ",promotional,Initial credit,30.000000,30.000000," in lines[1]


DETAILS = {
    "legal_name": "Acme Voice GmbH",
    "address": "Hauptstraße 1\n10115 Berlin",
    "country": "Germany",
    "tax_id": "DE123456789",
}


@pytest.mark.parametrize("role", [Role.OWNER, Role.BILLING])
def test_owner_and_billing_members_save_the_billing_details(
    client, account, make_user, add_member, role
):
    member = make_user()
    add_member(member, account, role)

    response = post(client, member, url(account, "details/"), DETAILS, **HTMX)

    assert response.status_code == 200
    assert "Billing details saved." in response.content.decode()
    saved = BillingDetails.objects.get(account=account)
    assert (saved.legal_name, saved.address, saved.country, saved.tax_id) == (
        "Acme Voice GmbH",
        "Hauptstraße 1\n10115 Berlin",
        "Germany",
        "DE123456789",
    )
    client.force_login(member)
    page = client.get(url(account)).content.decode()
    assert 'value="DE123456789"' in page


def test_a_developer_cannot_change_the_billing_details(client, account, make_user, add_member):
    developer = make_user()
    add_member(developer, account, Role.DEVELOPER)

    response = post(client, developer, url(account, "details/"), DETAILS)

    assert response.status_code == 403
    assert not BillingDetails.objects.filter(account=account).exists()


def test_an_address_of_too_many_lines_is_refused_inline(client, owner, account):
    data = {**DETAILS, "address": "\n".join(f"line {n}" for n in range(7))}

    response = post(client, owner, url(account, "details/"), data, **HTMX)

    assert response.status_code == 200
    assert "at most 6 lines" in response.content.decode()
    assert not BillingDetails.objects.filter(account=account).exists()
