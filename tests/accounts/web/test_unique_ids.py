"""Every dashboard page has unique element ids (issue 17): a label's `for`, `aria-describedby`
and an anchor each find one element, so a label never focuses another form's field."""

from collections import Counter
from html.parser import HTMLParser

import pytest

from billing.models import TestCardBehaviour
from billing.payments.cards import add_test_card
from tests.conftest import NOW
from tests.usage.dashboard_data import report_call_at, report_llm_at

USD = 1_000_000

PAGES = [
    "",
    "keys/",
    "team/",
    "subaccounts/",
    "billing/",
    "billing/statement/",
    "billing/payments/",
    "invoices/",
    "usage/",
    "usage/log/",
    "usage/log/?kind=events",
]


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.ids.extend(value for name, value in attrs if name == "id" and value)


def ids_of(html: str) -> list[str]:
    parser = _Ids()
    parser.feed(html)
    return parser.ids


@pytest.mark.parametrize("plan", ["voice-prepaid", "llm-api"])
def test_every_dashboard_page_has_unique_ids(client, make_account, make_user, make_key, plan):
    owner = make_user()
    account = make_account(plan, owner=owner, credit_micros=30 * USD)
    make_account("voice-prepaid", parent=account, name="Child")
    make_key(account)
    add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    if plan.startswith("voice"):
        report_call_at(account, seconds=90, at=NOW)
    else:
        report_llm_at(account, at=NOW)
    client.force_login(owner)

    for path in PAGES:
        response = client.get(f"/app/a/{account.public_id}/{path}")
        assert response.status_code == 200, path
        ids = ids_of(response.content.decode())
        assert ids, path  # the parser saw the page
        duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
        assert duplicates == [], f"{path}: {duplicates}"
