"""Staff roles as groups with permissions (issue 16, item 9): support, finance, operator admin.

- Support looks accounts up and refunds usage or credits back, up to the Support limit.
- Finance also refunds to the card, adjusts balances, changes plans, voids invoices, approves
  large refunds and sees the reconciliation.
- Operator admin also edits plans, rates and model prices, and staff users and their groups.

Migration billing 0010 made the Support and Finance groups at install; this module is what they
are from then on: `ensure_role` sets a role's group to exactly these permissions, so running
`manage.py create_staff` after an upgrade brings the groups up to date too.
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

from accounts.models import User

# What every role sees (the admin's view permission of each model).
VIEW = [
    "accounts.view_account",
    "accounts.view_apikey",
    "accounts.view_user",
    "billing.view_ledgerentry",
    "billing.view_creditgrant",
    "billing.view_invoice",
    "billing.view_plan",
    "billing.view_rate",
    "billing.view_modelprice",
    "billing.view_topup",
    "billing.view_refund",
    "billing.view_auditrecord",
    "billing.view_refundapproval",
    "usage.view_call",
    "usage.view_usageevent",
]
SUPPORT = [*VIEW, "billing.credit_back", "billing.grant_credit"]
FINANCE = [
    *SUPPORT,
    "billing.refund_topup",
    "billing.adjust_balance",
    "billing.move_account_plan",
    "billing.approve_refund",
    "billing.void_invoice",
    "billing.view_reconciliation",
    "billing.change_plan",
    "billing.add_rate",
    "billing.change_rate",
    "billing.delete_rate",
    "billing.add_modelprice",
    "billing.change_modelprice",
    "billing.delete_modelprice",
    "accounts.change_account",
]
OPERATOR_ADMIN = [
    *FINANCE,
    "billing.add_plan",
    "accounts.add_user",
    "accounts.change_user",
    "auth.view_group",
    "auth.add_group",
    "auth.change_group",
]

# role (as `create_staff --role` names it) -> (group name, permissions)
ROLES = {
    "support": ("Support", SUPPORT),
    "finance": ("Finance", FINANCE),
    "admin": ("Operator admin", OPERATOR_ADMIN),
}


class RoleError(ValueError):
    pass


def ensure_role(role: str) -> Group:
    """Return the role's group, made or updated to hold exactly the role's permissions."""
    if role not in ROLES:
        raise RoleError(f"No role '{role}'. Roles: {', '.join(ROLES)}.")
    name, permissions = ROLES[role]
    wanted = Q()
    for permission in permissions:
        app_label, codename = permission.split(".")
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    found = list(Permission.objects.filter(wanted))
    if len(found) != len(set(permissions)):
        missing = set(permissions) - {f"{p.content_type.app_label}.{p.codename}" for p in found}
        raise RoleError(f"Permissions not installed (run migrate): {', '.join(sorted(missing))}.")
    group, _ = Group.objects.get_or_create(name=name)
    group.permissions.set(found)
    return group


def create_staff(*, email: str, role: str, password: str | None = None) -> tuple[User, bool]:
    """Make `email` a staff member in exactly the role's group (a new user, or an existing one
    moved to the role); return the user and whether it is new. Without a password the user
    sets one through "Forgot password"."""
    with transaction.atomic():
        group = ensure_role(role)
        user = User.objects.filter(email=email.strip().lower()).first()
        created = user is None
        if created:
            user = User.objects.create_user(email=email, password=password, is_staff=True)
        else:
            user.is_staff = True
            if password:
                user.set_password(password)
            user.save()
        user.groups.remove(*Group.objects.filter(name__in=[n for n, _ in ROLES.values()]))
        user.groups.add(group)
    return user, created
