"""API keys: issue, verify, revoke (SPEC A4).

The secret is 32 random bytes, so a single SHA-256 is as strong as a slow password hash would
be and costs microseconds on every request; PBKDF2 per request would make the API slow.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts.models import Account, ApiKey, KeyKind, RateTier, User, new_public_id


class InvalidApiKey(Exception):
    """The presented credential is malformed, unknown or revoked."""


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    token: str  # KEY_ID:KEY_SECRET, shown to the user once and never stored


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_api_key(
    *,
    kind: str,
    name: str,
    now: datetime,
    account: Account | None = None,
    tier: str = RateTier.FREE,
    created_by: User | None = None,
) -> IssuedKey:
    """Create a key and return it with its one-time token."""
    if kind == KeyKind.CUSTOMER and account is None:
        raise ValueError("A customer key needs an account.")
    if kind == KeyKind.PLATFORM and account is not None:
        raise ValueError("A platform key belongs to the operator, not to an account.")
    key_id = new_public_id("mlk" if kind == KeyKind.CUSTOMER else "mlp")
    secret = secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        key_id=key_id,
        secret_hash=hash_secret(secret),
        kind=kind,
        account=account,
        name=name.strip()[:100] or "API key",
        tier=tier,
        created_by=created_by,
        created_at=now,
    )
    return IssuedKey(api_key=api_key, token=f"{key_id}:{secret}")


def split_token(token: str) -> tuple[str, str]:
    """Return the key id and secret of a `KEY_ID:KEY_SECRET` token or raise InvalidApiKey."""
    key_id, sep, secret = (token or "").strip().partition(":")
    if not sep or not key_id or not secret or len(token) > 200:
        raise InvalidApiKey("Malformed API key; expected KEY_ID:KEY_SECRET.")
    return key_id, secret


def check_secret(api_key: ApiKey | None, secret: str) -> ApiKey:
    """Return the key if the secret is its own and it is active, else raise InvalidApiKey.

    `api_key` is the key looked up by id, None when there is none.
    """
    # Compare even when the key is unknown so that timing says nothing about which ids exist.
    expected = api_key.secret_hash if api_key else "0" * 64
    if not hmac.compare_digest(expected, hash_secret(secret)) or api_key is None:
        raise InvalidApiKey("Invalid API key.")
    if api_key.revoked_at is not None:
        raise InvalidApiKey("This API key has been revoked.")
    return api_key


def revoke_api_key(*, api_key: ApiKey, now: datetime) -> ApiKey:
    with transaction.atomic():
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key
