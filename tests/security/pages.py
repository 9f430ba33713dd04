"""The pages of one account's dashboard, as the security tests visit them.

`ACCOUNT_PAGES` lists every URL route under app/a/<public_id>/ with the action it needs and a
valid form a member would post to it; the tenancy sweep fails when a route is missing here.
"""

import re
from dataclasses import dataclass, field

from django.test import Client

from accounts.permissions import Action

A = Action


@dataclass(frozen=True)
class Page:
    """An URL of one account's dashboard: the action it needs and what a member would post."""

    action: Action = A.VIEW
    post: dict = field(default_factory=dict)
    # The request names another object of the account in its body (not in the URL).
    body_names_objects: bool = False
    # The POST only sends the payer on to the payment page; that page's answer writes.
    redirects_only: bool = False
    # A page whose valid form cannot be written down here (it carries a preview's fingerprint):
    # the test file named proves that its post writes for a member who may.
    write_proven_in: str = ""


PREFIX = "app/a/<public_id:public_id>/"
AUTO_TOPUP = {"enabled": "on", "threshold": "5", "amount": "20", "target": "", "monthly_cap": ""}

# Every page of an account. The posts are valid forms, so a missing check would write
# (test_the_sweeps_forms_would_write_for_the_accounts_owner proves it).
ACCOUNT_PAGES: dict[str, Page] = {
    PREFIX: Page(),
    PREFIX + "keys/": Page(),
    PREFIX + "keys/new/": Page(A.MANAGE_KEYS, {"name": "intruder"}),
    PREFIX + "keys/tier/": Page(
        A.MANAGE_KEYS,
        {"key_id": "{key_id}", "tier": "paid", "reason": "more"},
        body_names_objects=True,
    ),
    PREFIX + "keys/<public_id:key_id>/revoke/": Page(A.MANAGE_KEYS),
    PREFIX + "team/": Page(),
    PREFIX + "team/invite/": Page(
        A.MANAGE_MEMBERS, {"email": "intruder@example.test", "role": "owner"}
    ),
    PREFIX + "team/invitations/<int:invitation_id>/withdraw/": Page(A.MANAGE_MEMBERS),
    PREFIX + "team/<int:membership_id>/role/": Page(A.MANAGE_MEMBERS, {"role": "owner"}),
    PREFIX + "team/<int:membership_id>/remove/": Page(A.MANAGE_MEMBERS),
    PREFIX + "subaccounts/": Page(),
    PREFIX + "subaccounts/new/": Page(
        A.MANAGE_ACCOUNT, {"name": "Intruder child", "plan": "voice-prepaid", "email": ""}
    ),
    PREFIX + "invoices/": Page(),
    PREFIX + "invoices/<public_id:number>/": Page(),
    PREFIX + "invoices/<public_id:number>/pdf/": Page(),
    PREFIX + "invoices/receipts/<public_id:receipt_number>/": Page(),
    PREFIX + "invoices/receipts/<public_id:receipt_number>/pdf/": Page(),
    PREFIX + "billing/": Page(),
    PREFIX + "billing/topup/": Page(A.MANAGE_BILLING, {"amount": "20"}),
    PREFIX + "billing/payments/": Page(),
    # Every member may compare plans; previewing and confirming a change need billing rights.
    PREFIX + "billing/plan/": Page(),
    PREFIX + "billing/plan/preview/": Page(
        A.MANAGE_BILLING, {"plan": "llm-api"}, redirects_only=True
    ),
    PREFIX + "billing/plan/confirm/": Page(
        A.MANAGE_BILLING,
        {"plan": "llm-api"},
        write_proven_in="tests/billing/plans/test_plan_changes.py",
    ),
    PREFIX + "billing/auto-topup/": Page(A.MANAGE_BILLING, AUTO_TOPUP),
    # Off: a valid form that writes even for an account without a card.
    PREFIX + "billing/recurring-credit/": Page(A.MANAGE_BILLING, {"amount": "20"}),
    PREFIX + "billing/alerts/": Page(A.MANAGE_BILLING, {"threshold": "1"}),
    PREFIX + "billing/budgets/": Page(
        A.MANAGE_BILLING,
        {"name": "intruder", "amount": "1", "hard": "on", "key": "{key_id}"},
        body_names_objects=True,
    ),
    PREFIX + "billing/budgets/<int:budget_id>/delete/": Page(A.MANAGE_BILLING),
    PREFIX + "billing/details/": Page(A.MANAGE_BILLING, {"legal_name": "Intruder Ltd"}),
    PREFIX + "billing/statement/": Page(),
    PREFIX + "billing/statement/export.csv": Page(),
    PREFIX + "payments/": Page(),
    PREFIX + "payments/topup/<public_id:topup_id>/done/": Page(),
    PREFIX + "payments/topup/<public_id:topup_id>/canceled/": Page(),
    PREFIX + "payments/topup/<public_id:topup_id>/test-pay/": Page(
        A.MANAGE_BILLING, {"outcome": "pay"}
    ),
    PREFIX + "payments/topup/<public_id:topup_id>/complete/": Page(
        A.MANAGE_BILLING, redirects_only=True
    ),
    PREFIX + "payments/topup/<public_id:topup_id>/cancel/": Page(A.MANAGE_BILLING),
    PREFIX + "payments/cards/add/": Page(A.MANAGE_BILLING, redirects_only=True),
    PREFIX + "payments/cards/added/": Page(),
    PREFIX + "payments/cards/test/": Page(A.MANAGE_BILLING, {"behaviour": "succeed"}),
    PREFIX + "payments/cards/<int:card_id>/default/": Page(A.MANAGE_BILLING),
    PREFIX + "payments/cards/<int:card_id>/remove/": Page(A.MANAGE_BILLING),
    PREFIX + "usage/": Page(),
    PREFIX + "usage/export.csv": Page(),
    PREFIX + "usage/log/": Page(),
    PREFIX + "usage/log/export.csv": Page(),
}


def fill(template: str, values: dict) -> str:
    """Put the values into a route's `<conv:name>` parts (or a form's "{name}" placeholders)."""
    text = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), template)
    text = re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]), text)
    return "/" + text if template in ACCOUNT_PAGES else text


def url_values(world, account) -> dict:
    """The victim's objects, named as the URLs name them, under the given account's id."""
    return {
        "public_id": account.public_id,
        "key_id": world.victim_key.api_key.key_id,
        "invitation_id": world.invitation.invitation.pk,
        "membership_id": world.member.pk,
        "budget_id": world.budget.pk,
        "card_id": world.card.pk,
        "topup_id": world.topup.public_id,
        "number": world.invoice.number,
        "receipt_number": world.receipt.number,
    }


def form_data(page: Page, values: dict) -> dict:
    return {name: fill(value, values) for name, value in page.post.items()}


def signed_in(user) -> Client:
    """A browser session of the user whose POSTs carry a valid CSRF token, as a form's would."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    # The dashboard puts the token on <body> for htmx, which sets the csrftoken cookie.
    client.get("/app/", follow=True)
    assert "csrftoken" in client.cookies
    return client


def post(client: Client, url: str, data: dict):
    token = client.cookies["csrftoken"].value
    return client.post(url, {**data, "csrfmiddlewaretoken": token})


def visit(client: Client, url: str, data: dict) -> list[tuple[str, object]]:
    """GET and POST the URL; return (method, response) pairs."""
    return [("GET", client.get(url)), ("POST", post(client, url, data))]
