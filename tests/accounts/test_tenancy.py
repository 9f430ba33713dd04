"""Tenancy and roles: a user sees only their accounts and the children below them (SPEC A2, A3)."""

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import Role
from accounts.permissions import Action, account_for_user, accounts_for_user, role_allows


@pytest.fixture
def family(make_account, make_user):
    """A parent account with one child, and a stranger account owned by someone else."""
    owner = make_user()
    parent = make_account("voice-prepaid", owner=owner, name="Parent")
    child = make_account("voice-prepaid", owner=make_user(), parent=parent, name="Child")
    stranger = make_account("voice-prepaid", name="Stranger")
    return owner, parent, child, stranger


@pytest.mark.parametrize("path", ["/app/a/{}/", "/app/a/{}/keys/"])
def test_a_user_gets_404_on_another_accounts_pages(client, family, path):
    owner, _, _, stranger = family
    client.force_login(owner)

    response = client.get(path.format(stranger.public_id))

    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/app/a/{}/", "/app/a/{}/keys/"])
def test_a_member_sees_their_own_accounts_pages(client, family, path):
    owner, parent, _, _ = family
    client.force_login(owner)

    response = client.get(path.format(parent.public_id))

    assert response.status_code == 200
    assert parent.name in response.content.decode()


def test_an_unknown_account_id_is_a_404_like_a_foreign_one(client, family):
    owner, *_ = family
    client.force_login(owner)

    assert client.get("/app/a/acc_doesnotexist/").status_code == 404


def test_an_anonymous_visitor_is_sent_to_the_login_page(client, family):
    _, parent, _, _ = family

    response = client.get(f"/app/a/{parent.public_id}/")

    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_a_parent_accounts_member_sees_the_child_account(client, family):
    owner, parent, child, stranger = family

    assert account_for_user(user=owner, public_id=child.public_id) == child
    assert set(accounts_for_user(owner)) == {parent, child}
    assert stranger not in accounts_for_user(owner)
    client.force_login(owner)
    assert client.get(f"/app/a/{child.public_id}/").status_code == 200
    assert client.get(f"/app/a/{child.public_id}/keys/").status_code == 200


def test_a_child_accounts_member_does_not_see_the_parent(family):
    _, parent, child, _ = family
    child_owner = child.memberships.get().user

    with pytest.raises(Http404):
        account_for_user(user=child_owner, public_id=parent.public_id)
    assert accounts_for_user(child_owner) == [child]


def test_a_grandchild_is_visible_to_the_grandparents_members(make_account, make_user, family):
    owner, _, child, _ = family
    grandchild = make_account("voice-prepaid", owner=make_user(), parent=child)

    assert account_for_user(user=owner, public_id=grandchild.public_id) == grandchild
    assert grandchild in accounts_for_user(owner)


def test_a_role_on_the_parent_applies_to_its_children(make_user, add_member, family):
    _, parent, child, _ = family
    viewer = make_user()
    add_member(viewer, parent, Role.VIEWER)

    assert account_for_user(user=viewer, public_id=child.public_id) == child
    with pytest.raises(PermissionDenied):
        account_for_user(user=viewer, public_id=child.public_id, action=Action.MANAGE_KEYS)


ALLOWED = {
    Role.OWNER: set(Action),
    Role.ADMIN: set(Action),
    Role.BILLING: {Action.VIEW, Action.MANAGE_BILLING},
    Role.DEVELOPER: {Action.VIEW, Action.MANAGE_KEYS},
    Role.VIEWER: {Action.VIEW},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_each_role_may_do_exactly_its_actions(role, action):
    assert role_allows(role, action) == (action in ALLOWED[role])


def test_no_role_allows_nothing():
    assert not role_allows(None, Action.VIEW)
    assert not role_allows("stranger", Action.VIEW)


def test_a_viewer_cannot_manage_billing_or_keys(make_user, add_member, family):
    _, parent, _, _ = family
    viewer = make_user()
    add_member(viewer, parent, Role.VIEWER)

    assert account_for_user(user=viewer, public_id=parent.public_id) == parent
    for action in (Action.MANAGE_BILLING, Action.MANAGE_KEYS):
        with pytest.raises(PermissionDenied):
            account_for_user(user=viewer, public_id=parent.public_id, action=action)


def test_a_billing_member_can_manage_billing_but_not_keys(make_user, add_member, family):
    _, parent, _, _ = family
    billing = make_user()
    add_member(billing, parent, Role.BILLING)

    assert (
        account_for_user(user=billing, public_id=parent.public_id, action=Action.MANAGE_BILLING)
        == parent
    )
    with pytest.raises(PermissionDenied):
        account_for_user(user=billing, public_id=parent.public_id, action=Action.MANAGE_KEYS)


def test_a_developer_can_manage_keys_but_not_billing(make_user, add_member, family):
    _, parent, _, _ = family
    developer = make_user()
    add_member(developer, parent, Role.DEVELOPER)

    assert (
        account_for_user(user=developer, public_id=parent.public_id, action=Action.MANAGE_KEYS)
        == parent
    )
    with pytest.raises(PermissionDenied):
        account_for_user(user=developer, public_id=parent.public_id, action=Action.MANAGE_BILLING)


def test_a_stranger_gets_404_not_permission_denied_whatever_the_action(make_user, family):
    _, parent, _, _ = family
    stranger = make_user()

    for action in Action:
        with pytest.raises(Http404):
            account_for_user(user=stranger, public_id=parent.public_id, action=action)
