"""Subaccounts on the dashboard (SPEC A3, D4): create, switch, see each one's usage and plan."""

import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection

from accounts.models import Account, Role
from billing.plans.subaccounts import SubaccountError, create_subaccount
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


def test_the_form_defaults_to_the_parents_plan_and_offers_only_plans_open_to_subaccounts(
    client, make_account, make_user, plans
):
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner)
    client.force_login(owner)

    form = client.get(f"/app/a/{parent.public_id}/subaccounts/").context["form"]

    offered = {code for code, _ in form.fields["plan"].choices}
    assert offered == {p.code for p in plans.values() if p.selectable_for_subaccount}
    assert "voice-enterprise" not in offered  # sales-led
    assert form["plan"].value() == "voice-prepaid"
    assert 'value="voice-prepaid" selected' in str(form["plan"])


def test_a_parent_on_a_plan_closed_to_subaccounts_gets_no_preselected_plan(
    client, make_account, make_user, plans
):
    owner = make_user()
    parent = make_account("voice-enterprise", owner=owner)
    client.force_login(owner)

    form = client.get(f"/app/a/{parent.public_id}/subaccounts/").context["form"]

    assert not form["plan"].value()


def test_a_second_subaccount_of_the_same_name_is_a_form_error(client, make_account, make_user):
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner, name="Parent")
    other_parent = make_account("voice-prepaid", owner=owner, name="Other")
    client.force_login(owner)
    url = f"/app/a/{parent.public_id}/subaccounts/new/"
    assert client.post(url, {"name": "EU team", "plan": "llm-api"}).status_code == 302

    response = client.post(url, {"name": " eu TEAM ", "plan": "llm-api"})

    assert response.status_code == 400
    assert "already has a subaccount named eu TEAM" in response.content.decode()
    assert Account.objects.filter(parent=parent).count() == 1
    # The same name under another parent is another team's business.
    other = client.post(
        f"/app/a/{other_parent.public_id}/subaccounts/new/", {"name": "EU team", "plan": "llm-api"}
    )
    assert other.status_code == 302


@pytest.mark.slow
def test_two_requests_for_the_same_name_at_once_open_one_subaccount(transactional_db, make_account):
    if connection.vendor != "postgresql":
        pytest.skip("Row locks: PostgreSQL only (SQLite locks the whole database).")
    parent = make_account("voice-prepaid", name="Parent")
    start = threading.Barrier(2)
    outcomes = []

    def open_one():
        try:
            start.wait(10)
            create_subaccount(
                parent=parent, name="EU team", plan_code="llm-api", email="", actor=None, now=NOW
            )
            outcomes.append("created")
        except SubaccountError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=open_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert sorted(outcomes) == ["created", "refused"]
    assert Account.objects.filter(parent=parent).count() == 1
