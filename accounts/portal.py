"""One-time dashboard links for the operator's users (portal sessions, SPEC X4).

The platform asks for a link for a person of one account; the person follows it and is signed
into that account's dashboard without a password: as an existing user, or as a new one whose
email the platform vouches for (verified). They become a member of the account if they were not,
and of no other: no personal account is opened, so no signup credit is granted (that happens only
on sign-up, accounts.signals). A link works for five minutes and once.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction

from accounts.models import Account, Membership, PortalSession, PortalSessionUse, Role, User

PORTAL_LINK_LIFETIME = timedelta(minutes=5)
_validate_return_url = URLValidator(schemes=["http", "https"])


class PortalLinkError(ValueError):
    """A refused link request; nothing was written."""


class PortalLinkUnusable(ValueError):
    """A link that is unknown, expired or used; the message is for the person who followed it."""


@dataclass(frozen=True)
class PortalLink:
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class PortalEntry:
    """Who a used link signs in, where, and where they go back to."""

    user: User
    account: Account
    return_url: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_portal_link(
    *, account: Account, email: str, role: str, return_url: str, now: datetime
) -> PortalLink:
    """Make a one-time link that signs `email` into the account's dashboard."""
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise PortalLinkError(f"'{email}' is not an email address.") from None
    if role not in Role.values:
        raise PortalLinkError(f"role is one of {', '.join(Role.values)}.")
    if return_url:
        try:
            _validate_return_url(return_url)
        except ValidationError:
            raise PortalLinkError("return_url must be an http or https URL.") from None
    token = secrets.token_urlsafe(32)
    session = PortalSession.objects.create(
        token_hash=_hash(token),
        account=account,
        email=email,
        role=role,
        return_url=return_url,
        created_at=now,
        expires_at=now + PORTAL_LINK_LIFETIME,
    )
    return PortalLink(url=f"{settings.SITE_URL}/portal/{token}/", expires_at=session.expires_at)


def use_portal_link(*, token: str, now: datetime) -> PortalEntry:
    """Spend the link: return the user to sign in (made if need be) and the account.

    Raise PortalLinkUnusable for an unknown, expired or already used link; nothing is written.
    The use's unique row is the claim: of two clicks at once, one signs in.
    """
    session = (
        PortalSession.objects.select_related("account").filter(token_hash=_hash(token)).first()
    )
    if session is None:
        raise PortalLinkUnusable("This sign-in link is not valid.")
    if session.expires_at <= now:
        raise PortalLinkUnusable("This sign-in link has expired. Ask for a new one.")
    try:
        with transaction.atomic():
            user = User.objects.filter(email=session.email).first()
            if user is None:
                user = User.objects.create_user(email=session.email)
            PortalSessionUse.objects.create(session=session, user=user, used_at=now)
            # The platform vouches for the address: the user it signs in is verified.
            EmailAddress.objects.update_or_create(
                user=user,
                email=session.email,
                defaults={"verified": True, "primary": True},
            )
            # An existing member keeps their role: a link neither raises nor lowers it.
            Membership.objects.get_or_create(
                user=user,
                account=session.account,
                defaults={"role": session.role, "created_at": now},
            )
    except IntegrityError:
        raise PortalLinkUnusable("This sign-in link was used already. Ask for a new one.") from None
    return PortalEntry(user=user, account=session.account, return_url=session.return_url)
