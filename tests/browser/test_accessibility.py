"""axe-core on every dashboard page, at 1,440 and 390 px, and nothing wider than the screen
(issue 17).

axe-core is vendored for the tests only (tests/browser/vendor/README.md). It is injected with
`page.evaluate`, which the page's Content-Security-Policy does not govern, so the pages are
checked under their real, strict policy. A serious or critical violation fails the test; the
message names the page, the rule and the first elements it found. The account has the long
names that used to push pages sideways: a 100-character key name, a long budget name and a
refunded call.
"""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.keys import issue_api_key
from accounts.models import KeyKind
from billing.models import TestCardBehaviour, TopUpKind
from billing.payments.cards import add_test_card
from billing.payments.simulated import complete_test_topup
from billing.payments.topups import new_topup
from tests.usage.dashboard_data import report_call_at
from usage.ingest.calls import refund_call
from usage.spending.budgets import create_budget

pytestmark = pytest.mark.usefixtures("transactional_db")
USD = 1_000_000
PASSWORD = "correct horse battery staple"
AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
FAILING_IMPACTS = ("serious", "critical")
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}

PAGES = [
    "",
    "usage/",
    "usage/log/",
    "usage/log/?kind=events",
    "billing/",
    "billing/payments/",
    "billing/statement/",
    "invoices/",
    "keys/",
    "team/",
    "subaccounts/",
]

RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    targets: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
  }));
}"""


# What sticks out of the screen: the elements past its right edge when the page scrolls sideways,
# and navigation links cut off inside their own row (which never widens the page).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = e => e.getBoundingClientRect().right > width + 0.5;
  const name = e => e.tagName.toLowerCase() + "." + [...e.classList].join(".") + " "
    + (e.textContent || "").trim().slice(0, 40);
  const wide = document.documentElement.scrollWidth > width
    ? [...document.querySelectorAll("body *")].filter(out).slice(-3)
    : [];
  return [...wide, ...[...document.querySelectorAll(".nav a")].filter(out)].map(name);
}"""


def violations_of(page) -> list[dict]:
    page.evaluate(AXE)
    return [v for v in page.evaluate(RUN_AXE) if v["impact"] in FAILING_IMPACTS]


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.test", password=PASSWORD)


@pytest.fixture
def account(make_account, owner):
    """A voice account with calls (one refunded), a subaccount, a card, a paid and a pending
    top-up, and long names."""
    now = timezone.now()
    account = make_account(
        "voice-prepaid",
        owner=owner,
        name="Acme Voice",
        credit_micros=40 * USD,
        at=now - timedelta(days=10),
    )
    make_account("llm-api", owner=owner, parent=account, name="Acme EU")
    calls = [
        report_call_at(account, seconds=70 + 9 * day, at=now - timedelta(days=day, hours=2))
        for day in range(8)
    ]
    refund_call(call_id=calls[0].call_id, now=now, reason="Dropped")
    key = issue_api_key(
        kind=KeyKind.CUSTOMER, name="Production key " + "x" * 85, now=now, account=account
    ).api_key
    create_budget(
        account=account,
        name="Monthly ceiling for the customer-support voice agents in every region " * 2,
        amount_micros=50 * USD,
        hard=False,
        api_key=key,
        now=now,
    )
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=now)
    paid = new_topup(account=account, kind=TopUpKind.MANUAL, amount_micros=25 * USD, now=now)
    complete_test_topup(account=account, topup_public_id=paid.public_id, pay=True, now=now)
    new_topup(account=account, kind=TopUpKind.MANUAL, amount_micros=30 * USD, now=now)
    return account


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_no_dashboard_page_has_a_serious_accessibility_violation(
    page, live_server, log_in, owner, account, width
):
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
    log_in(owner)
    found = []

    for path in [
        *PAGES,
        f"invoices/receipts/{account.topups.get(status='succeeded').receipt.number}/",
    ]:
        page.goto(f"{live_server.url}/app/a/{account.public_id}/{path}")
        page.wait_for_load_state("networkidle")
        found += [
            f"/{path} {v['impact']} {v['id']}: {v['help']} at {v['targets']}"
            for v in violations_of(page)
        ]
        wider = page.evaluate(OVERFLOW)
        if wider:
            found.append(f"/{path} is wider than the screen: {wider}")

    page.goto(f"{live_server.url}/accounts/logout/")
    for path in ["/accounts/login/", "/accounts/signup/"]:
        page.goto(f"{live_server.url}{path}")
        found += [
            f"{path} {v['impact']} {v['id']}: {v['help']} at {v['targets']}"
            for v in violations_of(page)
        ]

    assert found == []
