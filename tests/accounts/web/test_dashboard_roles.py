"""Every dashboard page and form checks the account and the role (SPEC A2, D5).

A stranger gets 404 on every URL of an account that is not theirs; a viewer reads every page
and gets 403 on every form that changes something. Each page has the navigation, and no inline
script or style (the Content-Security-Policy allows none).
"""

import re

import pytest

from accounts.models import Role

PAGES = [
    "",
    "usage/",
    "usage/log/",
    "usage/log/?kind=events",
    "usage/export.csv",
    "usage/log/export.csv",
    "billing/",
    "billing/statement/",
    "billing/statement/export.csv",
    "invoices/",
    "billing/payments/",
    "keys/",
    "team/",
    "subaccounts/",
]
FORMS = [
    "billing/auto-topup/",
    "billing/recurring-credit/",
    "billing/alerts/",
    "billing/budgets/",
    "billing/topup/",
    "billing/plan/preview/",
    "billing/plan/confirm/",
    "keys/new/",
    "keys/tier/",
    "team/invite/",
    "subaccounts/new/",
]
NAV = ["Overview", "Usage", "Billing", "Invoices", "API keys", "Team", "Subaccounts"]


@pytest.fixture
def account(make_account):
    return make_account("voice-prepaid", name="Acme")


@pytest.fixture
def viewer(account, make_user, add_member):
    user = make_user()
    add_member(user, account, Role.VIEWER)
    return user


@pytest.mark.parametrize("path", PAGES + FORMS)
def test_a_stranger_gets_404_on_every_url_of_the_account(client, account, make_account, path):
    stranger = make_account("voice-prepaid").memberships.get().user
    client.force_login(stranger)
    url = f"/app/a/{account.public_id}/{path}"

    # A page answers 404; a POST-only form may refuse the method first, which says nothing.
    assert client.get(url).status_code in ((404,) if path in PAGES else (404, 405))
    assert client.post(url, {}).status_code == 404


@pytest.mark.parametrize("path", PAGES)
def test_a_viewer_reads_every_page(client, account, viewer, path):
    client.force_login(viewer)

    assert client.get(f"/app/a/{account.public_id}/{path}").status_code == 200


@pytest.mark.parametrize("path", FORMS)
def test_a_viewer_cannot_post_any_form(client, account, viewer, path):
    client.force_login(viewer)

    assert client.post(f"/app/a/{account.public_id}/{path}", {}).status_code == 403


@pytest.mark.parametrize("path", [p for p in PAGES if not p.endswith(".csv")])
def test_every_page_has_the_navigation_and_nothing_inline(client, account, viewer, path):
    client.force_login(viewer)

    response = client.get(f"/app/a/{account.public_id}/{path}")

    page = response.content.decode()
    nav = page[page.index('<ul class="nav">') : page.index("</ul>", page.index('<ul class="nav">'))]
    assert [label for label in NAV if f">{label}</a>" in nav] == NAV
    assert 'aria-current="page"' in nav
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert " style=" not in page and "<style" not in page
    for script in re.findall(r"<script[^>]*>", page):
        assert 'src="/static/' in script or 'type="application/json"' in script


def test_a_phone_width_layout_and_labelled_forms(client, account):
    client.force_login(account.memberships.get().user)

    page = client.get(f"/app/a/{account.public_id}/billing/").content.decode()

    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    for field_id in re.findall(r'<input[^>]* id="([^"]+)"', page):
        assert f'for="{field_id}"' in page, field_id
