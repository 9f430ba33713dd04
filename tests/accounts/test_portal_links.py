"""One-time dashboard links made by the platform for its users (portal sessions, SPEC X4)."""

import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.utils import timezone

from accounts.models import Account, Membership, PortalSession, PortalSessionUse, Role, User
from billing.models import LedgerEntry


@pytest.fixture
def platform(make_key):
    return make_key()


@pytest.fixture
def customer(make_account):
    account = make_account("llm-api")
    Account.objects.filter(pk=account.pk).update(external_id="ws_1")
    return account


def link(client, platform, external_id="ws_1", **fields):
    body = {"email": "ana@acme.example", "return_url": "https://app.voice.example/home", **fields}
    return client.post(
        f"/api/v1/customers/{external_id}/portal_sessions",
        json.dumps(body),
        "application/json",
        HTTP_AUTHORIZATION=f"Bearer {platform.token}",
    )


def path_of(response) -> str:
    return urlsplit(response.json()["url"]).path


def test_a_link_signs_a_new_person_in_verified_as_a_billing_member_of_that_account_only(
    client, platform, customer
):
    accounts, entries = Account.objects.count(), LedgerEntry.objects.count()
    response = link(client, platform)

    assert response.status_code == 201, response.content
    expires_at = response.json()["expires_at"]
    page = client.get(path_of(response))

    assert page.status_code == 302
    assert page["Location"] == f"/app/a/{customer.public_id}/"
    user = User.objects.get(email="ana@acme.example")
    assert Membership.objects.get(user=user).account == customer
    assert Membership.objects.get(user=user).role == Role.BILLING
    assert EmailAddress.objects.get(user=user).verified
    # No personal account, so no signup credit, though the plan has one.
    assert (Account.objects.count(), LedgerEntry.objects.count()) == (accounts, entries)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert timezone.datetime.fromisoformat(expires_at.replace("Z", "+00:00")) > timezone.now()


def test_the_dashboard_shows_a_back_link_to_the_return_url(client, platform, customer):
    client.get(path_of(link(client, platform)))

    page = client.get(f"/app/a/{customer.public_id}/")

    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="https://app.voice.example/home"' in html
    assert "Back to app.voice.example" in html


def test_an_existing_member_keeps_their_role(client, platform, customer, make_user, add_member):
    user = make_user("ana@acme.example")
    add_member(user, customer, Role.OWNER)

    client.get(path_of(link(client, platform, role="viewer")))

    assert Membership.objects.get(user=user, account=customer).role == Role.OWNER
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_link_used_twice_shows_a_plain_page_the_second_time(client, platform, customer):
    path = path_of(link(client, platform))
    client.get(path)
    client.logout()

    again = client.get(path)

    assert again.status_code == 410
    assert "used already" in again.content.decode()
    assert "_auth_user_id" not in client.session
    assert PortalSessionUse.objects.count() == 1


def test_an_expired_link_shows_a_plain_page(client, platform, customer):
    path = path_of(link(client, platform))

    with time_machine.travel(timezone.now() + timedelta(minutes=5, seconds=1)):
        page = client.get(path)

    assert page.status_code == 410
    assert "expired" in page.content.decode()
    assert not User.objects.filter(email="ana@acme.example").exists()


def test_an_unknown_link_shows_a_plain_page(client, db):
    page = client.get("/portal/not-a-token/")

    assert page.status_code == 410
    assert "not valid" in page.content.decode()


def test_a_link_for_another_account_opens_only_that_one(client, platform, customer, make_account):
    other = make_account()
    Account.objects.filter(pk=other.pk).update(external_id="ws_2")

    client.get(path_of(link(client, platform, external_id="ws_2")))

    assert client.get(f"/app/a/{other.public_id}/").status_code == 200
    assert client.get(f"/app/a/{customer.public_id}/").status_code == 404


def test_only_a_hash_of_the_token_is_kept(client, platform, customer):
    path = path_of(link(client, platform))
    token = path.rstrip("/").rsplit("/", 1)[-1]

    session = PortalSession.objects.get()

    assert token not in session.token_hash and len(session.token_hash) == 64


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"return_url": "javascript:alert(1)"}, "http or https"),
        ({"return_url": "ftp://files.example/"}, "http or https"),
        ({"email": "nobody"}, "not an email"),
        ({"role": "emperor"}, "role"),
    ],
)
def test_a_bad_link_request_is_a_400_and_writes_nothing(client, platform, customer, fields, words):
    response = link(client, platform, **fields)

    assert response.status_code == 400
    assert words in response.json()["error"]["message"]
    assert not PortalSession.objects.exists()


def test_a_customer_key_cannot_make_a_link(client, customer, make_key):
    own = make_key(customer)

    response = link(client, own)

    assert response.status_code == 403
    assert not PortalSession.objects.exists()
