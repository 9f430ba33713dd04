"""The checks a staff action makes before it writes anything: permission, Support limit, reason.

Permissions are custom permissions on AuditRecord and Refund; the Support and Finance groups
are created by a migration.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied

from accounts.models import User
from billing.money import format_usd


class StaffActionError(ValueError):
    """The action was refused; nothing was written. The message is for staff."""


def support_limit_micros() -> int:
    return getattr(settings, "SUPPORT_GRANT_LIMIT_MICROS", 100_000_000)


def require_permission(actor: User, permission: str) -> None:
    if not actor.has_perm(permission):
        raise PermissionDenied(f"You lack the permission {permission}.")


def require_within_support_limit(actor: User, amount_micros: int) -> None:
    """Finance (or a superuser) has no limit; anyone else is held to the Support limit."""
    if actor.is_superuser or actor.groups.filter(name="Finance").exists():
        return
    if amount_micros > support_limit_micros():
        raise PermissionDenied(
            f"Amounts over {format_usd(support_limit_micros())} need a Finance staff member."
        )


def clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise StaffActionError("Give a reason; it is kept in the audit trail.")
    return reason


def positive(amount_micros: int) -> int:
    if amount_micros <= 0:
        raise StaffActionError("The amount must be positive.")
    return amount_micros
