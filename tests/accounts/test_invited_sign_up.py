"""An invited teammate (issue 17): the sign-in and sign-up pages say who invited them, and
signing up to accept makes a membership only: no account of their own, no signup credit."""

import pytest
from django.utils import timezone

from accounts.models import Account, Membership, Role, User
from accounts.team import invite_member, revoke_invitation

PASSWORD = "correct horse battery staple"
USD = 1_000_000


@pytest.fixture
def inviter(make_user):
    return make_user("boss@example.test")


@pytest.fixture
def account(make_account, inviter):
    return make_account("voice-prepaid", owner=inviter, name="Acme Voice")


@pytest.fixture
def issued(account, inviter):
    return invite_member(
        account=account,
        email="teammate@example.test",
        role=Role.BILLING,
        invited_by=inviter,
        actor_role=Role.OWNER,
        now=timezone.now(),
    )


def invitation_path(issued):
    return f"/app/invitations/{issued.token}/"


def test_the_invitation_link_leads_to_a_sign_in_page_that_names_the_inviting_account(
    client, issued
):
    response = client.get(invitation_path(issued), follow=True)

    page = response.content.decode()
    assert response.redirect_chain[-1][0].startswith("/accounts/login/?next=")
    assert "boss@example.test invited you to join Acme Voice" in page
    assert "sign up with <strong>teammate@example.test</strong>" in page


def test_the_sign_up_page_names_it_too(client, issued):
    page = client.get(f"/accounts/signup/?next={invitation_path(issued)}").content.decode()

    assert "invited you to join Acme Voice" in page


def test_a_withdrawn_invitation_is_not_announced(client, account, issued):
    revoke_invitation(account=account, invitation_id=issued.invitation.pk, now=timezone.now())

    page = client.get(f"/accounts/login/?next={invitation_path(issued)}").content.decode()

    assert "invited you" not in page


def test_signing_up_to_accept_an_invitation_makes_a_membership_only(client, account, issued):
    client.post(
        f"/accounts/signup/?next={invitation_path(issued)}",
        {"email": "teammate@example.test", "password1": PASSWORD, "password2": PASSWORD},
    )
    user = User.objects.get(email="teammate@example.test")
    accounts_before = Account.objects.count()
    assert not Membership.objects.filter(user=user).exists()

    client.force_login(user)
    client.post(invitation_path(issued))

    [membership] = Membership.objects.filter(user=user)
    assert (membership.account, membership.role) == (account, Role.BILLING)
    assert Account.objects.count() == accounts_before
    assert not Account.objects.filter(email="teammate@example.test").exists()
