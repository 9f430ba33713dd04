"""The API keys page (SPEC A4, D4, G2): create once-shown keys, revoke, tiers and requests."""

import pytest
import time_machine
from django.contrib.admin.sites import site
from django.test import RequestFactory

from accounts.models import ApiKey, Role, TierRequest, TierRequestStatus
from accounts.tier_requests import (
    TierRequestError,
    grant_tier_request,
    refuse_tier_request,
    request_higher_tier,
)
from tests.conftest import NOW
from usage.api.auth import key_for_token
from usage.api.ratelimit import hit, limit_for


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def account(make_account, owner):
    return make_account("llm-api", owner=owner)


def keys_url(account, path=""):
    return f"/app/a/{account.public_id}/keys/{path}"


def test_a_new_key_is_shown_once_and_works(client, owner, account):
    client.force_login(owner)

    response = client.post(keys_url(account, "new/"), {"name": "Production"})

    # Post/redirect/get: the secret comes from the session on the page the POST redirects to.
    assert response.status_code == 302 and response["Location"] == keys_url(account)
    page = client.get(response["Location"])
    assert page["Cache-Control"] == "private, no-store"
    token = page.context["new_token"]
    assert token in page.content.decode() and 'data-copy="new-key-token"' in page.content.decode()
    key = key_for_token(token).api_key
    assert key.account == account and key.name == "Production" and key.tier == "free"
    # A reload shows the list without the secret and issues no second key.
    again = client.get(keys_url(account))
    assert token not in again.content.decode() and again.context["new_token"] == ""
    assert ApiKey.objects.filter(account=account).count() == 1


def test_the_page_shows_each_keys_tier_limit_and_recent_429s(client, owner, account, make_key):
    key = make_key(account).api_key
    for _ in range(13):  # free tier: 10 a minute, then 3 refused
        hit(api_key=key, now=NOW)
    client.force_login(owner)

    with time_machine.travel(NOW, tick=False):
        response = client.get(keys_url(account))

    row = response.context["rows"][0]
    assert (row["limit"], row["refused_7d"]) == (10, 3)
    page = response.content.decode()
    assert key.key_id in page and "10/min" in page


def test_revoking_a_key_stops_it(client, owner, account, make_key):
    issued = make_key(account)
    client.force_login(owner)

    response = client.post(keys_url(account, f"{issued.api_key.key_id}/revoke/"))

    assert response.status_code == 302
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None


def test_another_accounts_key_cannot_be_revoked(client, owner, account, make_account, make_key):
    theirs = make_key(make_account("llm-api")).api_key
    client.force_login(owner)

    response = client.post(keys_url(account, f"{theirs.key_id}/revoke/"))

    assert response.status_code == 404
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is None


@pytest.mark.parametrize(
    "role, status", [(Role.VIEWER, 403), (Role.BILLING, 403), (Role.DEVELOPER, 302)]
)
def test_only_roles_that_manage_keys_create_them(
    client, account, make_user, add_member, role, status
):
    member = make_user()
    add_member(member, account, role)
    client.force_login(member)

    response = client.post(keys_url(account, "new/"), {"name": "x"})

    assert response.status_code == status


def test_a_viewer_sees_the_keys_but_no_buttons(client, account, make_user, add_member, make_key):
    make_key(account)
    viewer = make_user()
    add_member(viewer, account, Role.VIEWER)
    client.force_login(viewer)

    page = client.get(keys_url(account)).content.decode()

    assert "Revoke" not in page and "Create key" not in page
    assert "not create or revoke them" in page


def test_asking_for_a_higher_tier_records_one_pending_request(client, owner, account, make_key):
    key = make_key(account).api_key
    client.force_login(owner)

    client.post(
        keys_url(account, "tier/"), {"key_id": key.key_id, "tier": "elevated", "reason": "launch"}
    )
    client.post(keys_url(account, "tier/"), {"key_id": key.key_id, "tier": "paid"})

    request = TierRequest.objects.get()
    assert (request.from_tier, request.tier, request.status) == ("free", "elevated", "pending")
    assert request.requested_by == owner and request.reason == "launch"
    page = client.get(keys_url(account)).content.decode()
    assert "Elevated requested" in page


def test_a_tier_below_or_equal_to_the_current_one_is_refused(account, make_key):
    key = make_key(account, tier="paid").api_key

    with pytest.raises(TierRequestError):
        request_higher_tier(
            account=account,
            key_id=key.key_id,
            tier="elevated",
            reason="",
            requested_by=None,
            now=NOW,
        )


def test_granting_in_admin_changes_the_keys_limit_at_once(account, make_key, make_user):
    key = make_key(account).api_key
    request = request_higher_tier(
        account=account, key_id=key.key_id, tier="elevated", reason="", requested_by=None, now=NOW
    )
    staff = make_user(is_staff=True, is_superuser=True)
    admin = site._registry[TierRequest]
    http_request = RequestFactory().post("/admin/")
    http_request.user = staff
    admin.message_user = lambda *args, **kwargs: None

    admin.grant_requests(http_request, TierRequest.objects.filter(pk=request.pk))

    key.refresh_from_db()
    assert key.tier == "elevated"
    assert limit_for(key) == 60
    request.refresh_from_db()
    assert request.status == TierRequestStatus.GRANTED and request.decided_by == staff


def test_a_refused_request_leaves_the_tier_and_a_decision_is_final(account, make_key, make_user):
    key = make_key(account).api_key
    request = request_higher_tier(
        account=account, key_id=key.key_id, tier="paid", reason="", requested_by=None, now=NOW
    )
    staff = make_user(is_staff=True)

    refuse_tier_request(request_id=request.pk, staff_user=staff, now=NOW, note="Not yet")

    key.refresh_from_db()
    assert key.tier == "free"
    with pytest.raises(TierRequestError):
        grant_tier_request(request_id=request.pk, staff_user=staff, now=NOW)


def test_the_refused_requests_column_reads_well_upper_cased(client, owner, account, make_key):
    make_key(account)
    client.force_login(owner)

    page = client.get(keys_url(account)).content.decode()

    # Table headers are upper-cased by the style sheet: "429s" read "429S (7 DAYS)" (issue 17).
    assert '<th scope="col" class="num">Refused (7 days)</th>' in page
    assert "429s" not in page
