"""API keys: shown once as KEY_ID:KEY_SECRET, stored as a SHA-256 hash, revocable (SPEC A4)."""

import hashlib
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from accounts.keys import InvalidApiKey, issue_api_key, revoke_api_key
from accounts.models import ApiKey, KeyKind
from usage.api.auth import key_for_token


def test_a_customer_key_is_shown_once_as_key_id_and_secret(make_account, make_key):
    account = make_account()

    issued = make_key(account)

    key_id, secret = issued.token.split(":")
    assert key_id == issued.api_key.key_id
    assert key_id.startswith("mlk_")
    assert len(secret) >= 40
    assert issued.api_key.kind == KeyKind.CUSTOMER
    assert issued.api_key.account == account


def test_only_the_sha256_hash_of_the_secret_is_stored(make_account, make_key):
    issued = make_key(make_account())
    secret = issued.token.split(":")[1]

    row = ApiKey.objects.filter(pk=issued.api_key.pk).values().get()

    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert all(secret not in str(value) for value in row.values())
    assert issued.token not in str(row)


def test_a_valid_token_verifies_to_its_key(make_account, make_key):
    issued = make_key(make_account())

    assert key_for_token(issued.token).api_key == issued.api_key
    assert key_for_token(f"  {issued.token}\n").api_key == issued.api_key


@pytest.mark.parametrize(
    "token",
    ["", None, "no-separator", ":only-a-secret", "mlk_only-an-id:", "x" * 150 + ":" + "y" * 60],
)
def test_a_malformed_token_is_refused(db, token):
    with pytest.raises(InvalidApiKey):
        key_for_token(token)


def test_a_token_with_an_unknown_key_id_is_refused(make_account, make_key):
    issued = make_key(make_account())
    secret = issued.token.split(":")[1]

    with pytest.raises(InvalidApiKey):
        key_for_token(f"mlk_0000000000000000:{secret}")


def test_a_token_with_the_wrong_secret_is_refused(make_account, make_key):
    issued = make_key(make_account())
    other = make_key(make_account())

    with pytest.raises(InvalidApiKey):
        key_for_token(f"{issued.api_key.key_id}:{other.token.split(':')[1]}")


def test_a_revoked_key_is_refused(make_account, make_key, now):
    issued = make_key(make_account())

    revoke_api_key(api_key=issued.api_key, now=now)

    with pytest.raises(InvalidApiKey, match="revoked"):
        key_for_token(issued.token)
    assert not ApiKey.objects.get(pk=issued.api_key.pk).is_active


def test_revoking_twice_keeps_the_first_revocation_time(make_account, make_key, now):
    issued = make_key(make_account())
    revoke_api_key(api_key=issued.api_key, now=now)

    key = revoke_api_key(api_key=issued.api_key, now=now + timedelta(days=1))

    assert key.revoked_at == now


def test_a_platform_key_belongs_to_no_account(make_key):
    issued = make_key()

    assert issued.api_key.kind == KeyKind.PLATFORM
    assert issued.api_key.account is None
    assert issued.api_key.key_id.startswith("mlp_")
    assert key_for_token(issued.token).api_key == issued.api_key


def test_issuing_refuses_a_customer_key_without_account_and_a_platform_key_with_one(
    make_account, now
):
    with pytest.raises(ValueError, match="needs an account"):
        issue_api_key(kind=KeyKind.CUSTOMER, name="k", now=now)
    with pytest.raises(ValueError, match="operator"):
        issue_api_key(kind=KeyKind.PLATFORM, name="k", now=now, account=make_account())

    assert ApiKey.objects.count() == 0


def test_the_database_refuses_a_customer_key_without_an_account(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.create(key_id="mlk_a", secret_hash="0" * 64, kind="customer", name="k")


def test_the_database_refuses_a_platform_key_with_an_account(make_account):
    account = make_account()

    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.create(
            key_id="mlp_a", secret_hash="0" * 64, kind="platform", name="k", account=account
        )
