"""Signing secrets and signatures exactly as the Standard Webhooks specification defines them.

A secret is `whsec_` followed by the base64 of 24 to 64 random bytes; the HMAC key is those
bytes (the base64 decoded), not the text. A signature is `v1,` and the base64 of
HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"); several are sent space-separated
in one `webhook-signature` header, and a receiver accepts the request if any one verifies.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

SECRET_PREFIX = "whsec_"  # noqa: S105  # nosec B105 - the format's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    """Return a fresh signing secret, `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `v1,<base64>` signature of one message under one secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    *, secrets: Sequence[str], msg_id: str, sent_at: datetime, body: bytes
) -> dict[str, str]:
    """Return the three Standard Webhooks headers of a message signed with every secret given."""
    timestamp = int(sent_at.timestamp())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret=s, msg_id=msg_id, timestamp=timestamp, body=body) for s in secrets
        ),
    }
