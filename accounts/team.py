"""Members, roles and invitations of an account (SPEC A2, D4).

Owners and admins manage members (`Action.MANAGE_MEMBERS`); only an owner grants or takes away
the owner role, and an account always keeps at least one owner. Changes to an account's
memberships lock the account row, so two owners removing each other at once leave one.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string

from accounts.brand import brand, email_sender
from accounts.mail import one_line_subject
from accounts.models import Account, Invitation, Membership, Role, User

logger = logging.getLogger(__name__)

INVITATION_DAYS = 14


class TeamError(ValueError):
    """A refused change to members or invitations; nothing was written."""


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # in the link only; the database keeps its hash


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lock(account: Account) -> Account:
    return Account.objects.select_for_update().get(pk=account.pk)


def _check_role(role: str, *, actor_role: str | None) -> None:
    if role not in Role.values:
        raise TeamError("Choose one of the roles.")
    if role == Role.OWNER and actor_role != Role.OWNER:
        raise TeamError("Only an owner can make someone an owner.")


def invitation_url(token: str) -> str:
    return f"{settings.SITE_URL}/app/invitations/{token}/"


def invite_member(
    *,
    account: Account,
    email: str,
    role: str,
    invited_by: User | None,
    actor_role: str | None,
    now: datetime,
) -> IssuedInvitation:
    """Invite an address to the account; the email with the link is sent after commit."""
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except Exception:
        raise TeamError("Enter a valid email address.") from None
    _check_role(role, actor_role=actor_role)
    if Membership.objects.filter(account=account, user__email__iexact=email).exists():
        raise TeamError(f"{email} is already a member of this account.")
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                account=account,
                email=email,
                role=role,
                token_hash=_hash(token),
                invited_by=invited_by,
                created_at=now,
                expires_at=now + timedelta(days=INVITATION_DAYS),
            )
            transaction.on_commit(lambda: _send_invitation(invitation.pk, token, now))
    except IntegrityError:
        raise TeamError(f"{email} already has an open invitation.") from None
    return IssuedInvitation(invitation=invitation, token=token)


def _send_invitation(invitation_id: int, token: str, now: datetime) -> None:
    # The token is not stored, so the email can only be sent here, once; a failure leaves
    # sent_at empty and the page offers to invite again.
    invitation = Invitation.objects.select_related("account", "invited_by").get(pk=invitation_id)
    context = {"invitation": invitation, "url": invitation_url(token), "brand": brand()}
    try:
        send_mail(
            subject=one_line_subject(
                f"You are invited to {invitation.account.name} on {settings.BRAND_NAME}"
            ),
            message=render_to_string("accounts/email/invitation.txt", context),
            from_email=email_sender(),
            recipient_list=[invitation.email],
        )
    except Exception:
        logger.exception("Invitation %s could not be sent", invitation_id)
        return
    Invitation.objects.filter(pk=invitation_id).update(sent_at=now)


def invitation_for_token(token: str) -> Invitation | None:
    """Return the invitation a link points to, whatever its state, or None."""
    if not token or len(token) > 100:
        return None
    return Invitation.objects.select_related("account").filter(token_hash=_hash(token)).first()


def is_invited(*, email: str, now: datetime) -> bool:
    """Return whether someone with this email has an invitation they can still accept."""
    return Invitation.objects.filter(
        email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).exists()


def open_invitation(token: str, *, now: datetime) -> Invitation | None:
    """Return the invitation a link points to if it can still be accepted, else None."""
    invitation = invitation_for_token(token)
    if invitation is None or invitation.accepted_at or invitation.revoked_at:
        return None
    return invitation if invitation.expires_at > now else None


def accept_invitation(*, token: str, user: User, now: datetime) -> Membership:
    """Make the signed-in user a member with the invited role."""
    invitation = invitation_for_token(token)
    if invitation is None:
        raise TeamError("This invitation link is not valid.")
    with transaction.atomic():
        _lock(invitation.account)
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.revoked_at is not None:
            raise TeamError("This invitation was withdrawn.")
        if invitation.accepted_at is not None:
            raise TeamError("This invitation was already used.")
        if invitation.expires_at <= now:
            raise TeamError("This invitation has expired; ask for a new one.")
        if user.email.lower() != invitation.email.lower():
            raise TeamError(
                f"This invitation is for {invitation.email}; sign in with that address."
            )
        membership, _ = Membership.objects.get_or_create(
            user=user,
            account=invitation.account,
            defaults={"role": invitation.role, "created_at": now},
        )
        invitation.accepted_at = now
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


def revoke_invitation(*, account: Account, invitation_id: int, now: datetime) -> None:
    updated = Invitation.objects.filter(
        account=account, pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    if not updated:
        raise TeamError("No such open invitation.")


def _membership(account: Account, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(account=account, pk=membership_id)
        .first()
    )
    if membership is None:
        raise TeamError("No such member.")
    return membership


def _other_owners(account: Account, membership: Membership) -> int:
    return (
        Membership.objects.filter(account=account, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .count()
    )


def change_role(
    *, account: Account, membership_id: int, role: str, actor_role: str | None
) -> Membership:
    """Give a member another role; the last owner keeps theirs."""
    _check_role(role, actor_role=actor_role)
    with transaction.atomic():
        _lock(account)
        membership = _membership(account, membership_id)
        if membership.role == Role.OWNER and role != Role.OWNER:
            if actor_role != Role.OWNER:
                raise TeamError("Only an owner can change an owner's role.")
            if not _other_owners(account, membership):
                raise TeamError("An account needs an owner: make someone else owner first.")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def remove_member(*, account: Account, membership_id: int, actor_role: str | None) -> None:
    """Take a member off the account; never its last owner."""
    with transaction.atomic():
        _lock(account)
        membership = _membership(account, membership_id)
        if membership.role == Role.OWNER:
            if actor_role != Role.OWNER:
                raise TeamError("Only an owner can remove an owner.")
            if not _other_owners(account, membership):
                raise TeamError("The last owner cannot be removed.")
        membership.delete()


def team_for(*, account: Account, now: datetime) -> dict:
    """Return the members and open invitations of an account for its Team page."""
    members = list(
        Membership.objects.filter(account=account).select_related("user").order_by("created_at")
    )
    invitations = list(
        Invitation.objects.filter(
            account=account, accepted_at__isnull=True, revoked_at__isnull=True
        ).order_by("-created_at")
    )
    inherited_from = account.parent if account.parent_id else None
    return {
        "members": members,
        "owners": sum(1 for m in members if m.role == Role.OWNER),
        "invitations": [{"invitation": i, "expired": i.expires_at <= now} for i in invitations],
        "inherited_from": inherited_from,
        "roles": Role.choices,
    }
