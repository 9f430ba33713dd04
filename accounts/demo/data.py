"""The demo's logins and accounts for `manage.py demo`: who signs in, on which plans, how busy.

accounts.demo.build makes them, and accounts.demo.history their 90 days of usage.
"""

import secrets
from dataclasses import dataclass, field

from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group

from accounts.keys import hash_secret, issue_api_key
from accounts.models import Account, ApiKey, KeyKind, User

DEMO_PASSWORD = "meterline-demo"  # noqa: S105 - a published demo login, local only  # nosec B105
CUSTOMER_EMAIL = "demo@meterline.test"
VIEWER_EMAIL = "viewer@meterline.test"
OTHER_EMAIL = "globex@meterline.test"
STAFF_EMAIL = "admin@meterline.test"
# Staff in the two roles of the two-person rule (SPEC S4): support asks for a refund above its
# limit, finance approves it, so a newcomer can try both sides without making users by hand.
SUPPORT_EMAIL = "support@meterline.test"
FINANCE_EMAIL = "finance@meterline.test"
STAFF_ROLES = {
    SUPPORT_EMAIL: ("Support", "Demo Support"),
    FINANCE_EMAIL: ("Finance", "Demo Finance"),
}
USD = 1_000_000


@dataclass
class DemoAccount:
    """One demo account and how busy it is: calls a day, their length, events a day."""

    name: str
    plan: str
    owner_email: str
    credit_micros: int = 0
    calls_per_day: float = 0
    call_seconds: tuple[int, int] = (30, 300)
    chat_per_day: int = 0
    llm_per_day: int = 0
    flex_per_day: int = 0
    topup_micros: int = 0  # the customer adds this much when the balance runs low
    card: bool = False
    parent: str = ""
    anchor_day: int | None = None
    account: Account | None = field(default=None, repr=False)


DEMO_ACCOUNTS = [
    DemoAccount(
        "Acme Voice",
        "voice-prepaid",
        CUSTOMER_EMAIL,
        credit_micros=50 * USD,
        calls_per_day=6,
        call_seconds=(20, 420),
        topup_micros=50 * USD,
        card=True,
    ),
    DemoAccount(
        "Acme Voice PAYG",
        "voice-payg",
        CUSTOMER_EMAIL,
        calls_per_day=7,
        call_seconds=(60, 900),
        chat_per_day=30,
        card=True,
    ),
    DemoAccount(
        "Acme Enterprise",
        "voice-enterprise",
        CUSTOMER_EMAIL,
        calls_per_day=6,
        call_seconds=(600, 2700),
        chat_per_day=25,
        card=True,
    ),
    DemoAccount(
        "Acme Receptionist",
        "credits-monthly",
        CUSTOMER_EMAIL,
        calls_per_day=5,
        call_seconds=(30, 360),
        topup_micros=10 * USD,
        # The plan's fee (45 USD a period) is paid by card when each period starts, the
        # first (prorated) when the account opens, once the card is saved; its included
        # credit comes once it is paid (SPEC F1, issue 19).
        card=True,
    ),
    DemoAccount(
        "Acme LLM", "llm-api", CUSTOMER_EMAIL, llm_per_day=18, topup_micros=20 * USD, card=True
    ),
    DemoAccount("Acme Router", "flex-router", CUSTOMER_EMAIL, flex_per_day=22, card=True),
    DemoAccount(
        "Acme Voice EU (subaccount)",
        "voice-prepaid",
        CUSTOMER_EMAIL,
        credit_micros=20 * USD,
        calls_per_day=3,
        topup_micros=20 * USD,
        parent="Acme Voice",
    ),
    DemoAccount(
        "Globex Calls",
        "voice-prepaid",
        OTHER_EMAIL,
        credit_micros=40 * USD,
        calls_per_day=2,
        topup_micros=40 * USD,
        anchor_day=1,
    ),
    DemoAccount("Globex PAYG", "voice-payg", OTHER_EMAIL, calls_per_day=2, card=True, anchor_day=1),
    DemoAccount(
        "Globex AI", "llm-api", OTHER_EMAIL, llm_per_day=6, topup_micros=10 * USD, anchor_day=1
    ),
]


def demo_user(email: str, **extra) -> User:
    """Return the demo user of `email`, made with a verified address on first use."""
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=DEMO_PASSWORD, **extra)
    EmailAddress.objects.get_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


def demo_role_user(email: str) -> User:
    """Return the demo staff user of `email` in its group (Support or Finance, made by a
    migration), made on first use."""
    group_name, name = STAFF_ROLES[email]
    user = demo_user(email, is_staff=True, name=name)
    user.groups.add(Group.objects.get(name=group_name))
    return user


DEMO_PLATFORM_KEY_NAME = "Demo platform key"


def demo_platform_key(*, now) -> str:
    """Return a token of the demo's platform key. A secret is shown once and only its hash is
    kept, so each run gives the one key a new secret: the token an earlier run printed stops
    working, and no key piles up."""
    api_key = ApiKey.objects.filter(kind=KeyKind.PLATFORM, name=DEMO_PLATFORM_KEY_NAME).first()
    if api_key is None:
        return issue_api_key(kind=KeyKind.PLATFORM, name=DEMO_PLATFORM_KEY_NAME, now=now).token
    secret = secrets.token_urlsafe(32)
    ApiKey.objects.filter(pk=api_key.pk).update(secret_hash=hash_secret(secret), revoked_at=None)
    return f"{api_key.key_id}:{secret}"


def create_customer_curl(*, base_url: str, token: str) -> str:
    """A curl line that creates a customer by the operator's id (docs/integration.md)."""
    body = (
        '{"external_id": "demo-ws-1", "name": "Demo Workspace", '
        '"email": "billing@workspace.example", "plan": "voice-prepaid", "credit": "20.00"}'
    )
    return (
        f'curl -X POST "{base_url}/api/v1/customers" -H "Authorization: Bearer {token}" '
        f"-H \"Content-Type: application/json\" -d '{body}'"
    )
