"""Members, roles and invitations (SPEC A2, D4)."""

from datetime import timedelta

import pytest
from django.core import mail

from accounts.models import Invitation, Membership, Role
from accounts.team import TeamError, accept_invitation, change_role, invite_member, remove_member
from tests.conftest import NOW


@pytest.fixture
def owner(make_user):
    return make_user("owner@example.test")


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-prepaid", owner=owner, name="Acme")


def team_url(account, path=""):
    return f"/app/a/{account.public_id}/team/{path}"


def test_an_invitation_is_emailed_with_a_link_that_makes_a_member(
    client, owner, account, make_user, django_capture_on_commit_callbacks
):
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            team_url(account, "invite/"), {"email": "New@Example.test", "role": "developer"}
        )

    assert response.status_code == 302
    page = client.get(response["Location"])
    link = page.context["invite_link"]
    assert link in page.content.decode() and page["Cache-Control"] == "private, no-store"
    assert link in mail.outbox[0].body
    # Reloading the page neither shows the link again nor sends a second invitation.
    assert link not in client.get(team_url(account)).content.decode()
    assert Invitation.objects.count() == 1 and len(mail.outbox) == 1
    assert mail.outbox[0].to == ["new@example.test"]
    newcomer = make_user("new@example.test")
    client.force_login(newcomer)
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert "Join Acme" in client.get(f"/app/invitations/{token}/").content.decode()

    response = client.post(f"/app/invitations/{token}/")

    assert response.status_code == 302
    assert Membership.objects.get(user=newcomer, account=account).role == Role.DEVELOPER
    assert Invitation.objects.get().accepted_by == newcomer


def test_an_invitation_is_for_its_address_only(account, owner, make_user):
    issued = invite_member(
        account=account,
        email="a@example.test",
        role=Role.VIEWER,
        invited_by=owner,
        actor_role=Role.OWNER,
        now=NOW,
    )

    with pytest.raises(TeamError, match="sign in with that address"):
        accept_invitation(token=issued.token, user=make_user("b@example.test"), now=NOW)


def test_an_expired_or_withdrawn_invitation_is_refused(client, account, owner, make_user):
    issued = invite_member(
        account=account,
        email="late@example.test",
        role=Role.VIEWER,
        invited_by=owner,
        actor_role=Role.OWNER,
        now=NOW,
    )
    late = make_user("late@example.test")

    with pytest.raises(TeamError, match="expired"):
        accept_invitation(token=issued.token, user=late, now=NOW + timedelta(days=15))
    client.force_login(owner)
    client.post(team_url(account, f"invitations/{issued.invitation.pk}/withdraw/"))
    with pytest.raises(TeamError, match="withdrawn"):
        accept_invitation(token=issued.token, user=late, now=NOW)


def test_one_open_invitation_per_address(account, owner):
    invite_member(
        account=account,
        email="x@example.test",
        role=Role.VIEWER,
        invited_by=owner,
        actor_role=Role.OWNER,
        now=NOW,
    )

    with pytest.raises(TeamError, match="already has an open invitation"):
        invite_member(
            account=account,
            email="X@example.test",
            role=Role.ADMIN,
            invited_by=owner,
            actor_role=Role.OWNER,
            now=NOW,
        )


def test_an_admin_cannot_make_an_owner(account, owner):
    with pytest.raises(TeamError, match="Only an owner"):
        invite_member(
            account=account,
            email="y@example.test",
            role=Role.OWNER,
            invited_by=owner,
            actor_role=Role.ADMIN,
            now=NOW,
        )


def test_the_last_owner_can_be_neither_removed_nor_demoted(account, owner):
    membership = Membership.objects.get(user=owner, account=account)

    with pytest.raises(TeamError, match="last owner"):
        remove_member(account=account, membership_id=membership.pk, actor_role=Role.OWNER)
    with pytest.raises(TeamError, match="needs an owner"):
        change_role(
            account=account, membership_id=membership.pk, role=Role.ADMIN, actor_role=Role.OWNER
        )
    assert Membership.objects.get(pk=membership.pk).role == Role.OWNER


def test_with_a_second_owner_one_can_step_down(account, owner, make_user, add_member):
    second = add_member(make_user(), account, Role.OWNER)
    membership = Membership.objects.get(user=owner, account=account)

    change_role(
        account=account, membership_id=membership.pk, role=Role.VIEWER, actor_role=Role.OWNER
    )
    remove_member(account=account, membership_id=membership.pk, actor_role=Role.OWNER)

    assert list(Membership.objects.filter(account=account)) == [second]


def test_owners_and_admins_manage_members_on_the_page(client, account, make_user, add_member):
    admin = make_user()
    add_member(admin, account, Role.ADMIN)
    developer = add_member(make_user(), account, Role.DEVELOPER)
    client.force_login(admin)

    client.post(team_url(account, f"{developer.pk}/role/"), {"role": "billing"})
    assert Membership.objects.get(pk=developer.pk).role == Role.BILLING
    client.post(team_url(account, f"{developer.pk}/remove/"))
    assert not Membership.objects.filter(pk=developer.pk).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.BILLING, Role.DEVELOPER])
def test_other_roles_cannot_invite_or_change_members(
    client, account, owner, make_user, add_member, role
):
    member = make_user()
    add_member(member, account, role)
    owner_membership = Membership.objects.get(user=owner)
    client.force_login(member)

    assert (
        client.post(
            team_url(account, "invite/"), {"email": "z@example.test", "role": "viewer"}
        ).status_code
        == 403
    )
    assert client.post(team_url(account, f"{owner_membership.pk}/remove/")).status_code == 403
    assert client.get(team_url(account)).status_code == 200


def test_a_member_of_another_account_is_a_404(client, account, owner, make_account):
    other = make_account("voice-prepaid")
    theirs = other.memberships.get()
    client.force_login(owner)

    client.post(team_url(account, f"{theirs.pk}/remove/"))

    assert Membership.objects.filter(pk=theirs.pk).exists()


def test_an_account_name_with_a_line_break_still_gets_its_invitation_sent(
    owner, make_account, django_capture_on_commit_callbacks
):
    account = make_account("voice-prepaid", owner=owner, name="Acme\r\nBcc: victim@example.test")

    with django_capture_on_commit_callbacks(execute=True):
        invite_member(
            account=account,
            email="new@example.test",
            role=Role.VIEWER,
            invited_by=owner,
            actor_role=Role.OWNER,
            now=NOW,
        )

    [message] = mail.outbox
    assert message.subject == "You are invited to Acme Bcc: victim@example.test on Meterline"
    assert Invitation.objects.get().sent_at == NOW
