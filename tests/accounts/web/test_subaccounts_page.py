"""Subaccounts on the dashboard (SPEC A3, D4): create, switch, see each one's usage and plan."""

from datetime import UTC, datetime

import time_machine

from accounts.models import Account, Role
from tests.conftest import NOW
from tests.usage.dashboard_data import report_call_at

USD = 1_000_000


def test_an_owner_creates_a_subaccount_on_a_plan_and_lands_on_it(client, make_account, make_user):
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner, name="Parent")
    client.force_login(owner)

    response = client.post(
        f"/app/a/{parent.public_id}/subaccounts/new/", {"name": "EU team", "plan": "llm-api"}
    )

    child = Account.objects.get(parent=parent)
    assert response.status_code == 302
    assert response.url == f"/app/a/{child.public_id}/"
    assert child.name == "EU team" and child.subscription.plan.code == "llm-api"
    # No signup credit: a customer could otherwise open children for free credit (100 of them
    # on llm-api would be 1,000 USD).
    assert child.balance_micros == 0
    assert not child.ledger_entries.exists()
    assert child.email == parent.email
    page = client.get(response.url).content.decode()
    assert "Subaccount of Parent" in page


def test_the_list_shows_each_subaccounts_plan_balance_and_usage(client, make_account, make_user):
    owner = make_user()
    parent = make_account(
        "voice-prepaid",
        owner=owner,
        name="Parent",
        at=datetime(2026, 3, 1, tzinfo=UTC),
        anchor_day=1,
    )
    child = make_account(
        "voice-prepaid",
        owner=make_user(),
        parent=parent,
        name="Child",
        credit_micros=5 * USD,
        at=datetime(2026, 3, 1, tzinfo=UTC),
        anchor_day=1,
    )
    report_call_at(child, seconds=180, at=datetime(2026, 3, 4, tzinfo=UTC))
    client.force_login(owner)

    with time_machine.travel(NOW, tick=False):
        response = client.get(f"/app/a/{parent.public_id}/subaccounts/")

    row = response.context["rows"][0]
    assert row["account"] == child and row["plan"].code == "voice-prepaid"
    assert row["minutes"] == 3 and row["cost_micros"] == 240_000
    assert "$0.24" in response.content.decode()
    # The period [1 Mar, 1 Apr) reads with its last day, as on the overview and invoices.
    assert '<td data-label="Period">1 Mar to 31 Mar</td>' in response.content.decode()


def test_the_switcher_lists_the_children_and_switches_to_one(client, make_account, make_user):
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner, name="Parent")
    child = make_account("llm-api", owner=make_user(), parent=parent, name="Child")
    client.force_login(owner)

    page = client.get(f"/app/a/{parent.public_id}/").content.decode()
    assert f'<option value="{child.public_id}">↳ Child</option>' in page
    response = client.get("/app/switch/", {"account": child.public_id})

    assert response.url == f"/app/a/{child.public_id}/"


def test_a_viewer_cannot_create_a_subaccount(client, make_account, make_user, add_member):
    parent = make_account("voice-prepaid")
    viewer = make_user()
    add_member(viewer, parent, Role.VIEWER)
    client.force_login(viewer)

    response = client.post(
        f"/app/a/{parent.public_id}/subaccounts/new/", {"name": "x", "plan": "llm-api"}
    )

    assert response.status_code == 403
    assert not Account.objects.filter(parent=parent).exists()


def test_a_plan_not_selectable_for_subaccounts_cannot_be_chosen(
    client, make_account, make_user, plans
):
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner)
    assert not plans["voice-enterprise"].selectable_for_subaccount  # sales-led
    client.force_login(owner)

    response = client.post(
        f"/app/a/{parent.public_id}/subaccounts/new/", {"name": "x", "plan": "voice-enterprise"}
    )

    assert response.status_code == 400
    assert not Account.objects.filter(parent=parent).exists()
