"""The support home: one search box on the admin index that finds an account by whatever the
customer wrote with (issue 16, item 6), and an account page that shows the state and links
the lists."""

import pytest
from django.urls import reverse

from accounts.models import Account
from tests.billing.staff.scenery import charged_sms
from tests.conftest import NOW
from tests.usage.metering import call
from usage.ingest.calls import report_call


@pytest.fixture
def customer(prepaid, make_key, open_invoice):
    """The prepaid account with an external id, a key, a call and an event; `open_invoice`
    is another account's."""
    Account.objects.filter(pk=prepaid.pk).update(
        name="Zebra Telecom GmbH", email="ops@zebra-telecom.example", external_id="crm-77812"
    )
    return {
        "account": Account.objects.get(pk=prepaid.pk),
        "key": make_key(prepaid),
        "call": report_call(report=call(prepaid, 60), now=NOW)[0],
        "event": charged_sms(prepaid),
    }


def find(client, words: str):
    return client.get(reverse("support_search"), {"q": words})


def test_the_admin_index_has_the_search_box(support, client):
    client.force_login(support)

    page = client.get(reverse("admin:index")).content.decode()

    assert f'action="{reverse("support_search")}"' in page and 'name="q"' in page


@pytest.mark.parametrize(
    "words",
    [
        "email",
        "email in other case",
        "part of the name",
        "account id",
        "external id",
        "key prefix",
        "call id",
        "event id",
    ],
)
def test_support_finds_the_account_by_what_the_customer_wrote(words, support, customer, client):
    account = customer["account"]
    query = {
        "email": account.email,
        "email in other case": account.email.upper(),
        "part of the name": "zebra tele",
        "account id": account.public_id,
        "external id": "crm-77812",
        "key prefix": customer["key"].api_key.key_id[:12],
        "call id": customer["call"].call_id,
        "event id": customer["event"].event_id,
    }[words]
    client.force_login(support)

    response = find(client, query)

    assert response.status_code == 302
    assert response.url == reverse("admin:accounts_account_change", args=[account.pk])


def test_an_invoice_number_finds_its_account(support, customer, open_invoice, client):
    client.force_login(support)

    response = find(client, open_invoice.number.lower())

    assert response.url == reverse("admin:accounts_account_change", args=[open_invoice.account_id])


def test_several_accounts_are_listed_with_what_matched(support, customer, make_account, client):
    make_account(name="Zebra Telecom Ltd")
    client.force_login(support)

    response = find(client, "Zebra Telecom")

    assert response.status_code == 200
    page = response.content.decode()
    assert "Zebra Telecom GmbH" in page and "Zebra Telecom Ltd" in page
    assert [row["matched"] for row in response.context["rows"]] == ["name", "name"]


def test_nothing_found_says_so(support, customer, client):
    client.force_login(support)

    page = find(client, "nobody@nowhere.example").content.decode()

    assert "No account matches" in page


def test_staff_who_may_not_see_accounts_may_not_search(no_group, customer, client):
    client.force_login(no_group)

    assert find(client, customer["account"].email).status_code == 403
