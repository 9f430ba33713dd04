"""Who may do what on an account (SPEC A2, A3).

Every view and form asks `account_for_user` for the account it works on; a user who is not a
member of the account (nor of one of its ancestors) gets a 404, so the existence of other
customers' accounts is never revealed.
"""

from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.http import Http404

from accounts.models import Account, Membership, Role, User
from accounts.public_ids import is_public_id


class Action(StrEnum):
    VIEW = "view"
    MANAGE_BILLING = "manage_billing"  # top up, cards, auto-top-up, alerts, budgets
    MANAGE_KEYS = "manage_keys"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_ACCOUNT = "manage_account"  # rename, subaccounts


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.ADMIN: frozenset(Action),
    Role.BILLING: frozenset({Action.VIEW, Action.MANAGE_BILLING}),
    Role.DEVELOPER: frozenset({Action.VIEW, Action.MANAGE_KEYS}),
    Role.VIEWER: frozenset({Action.VIEW}),
}

# A parent account has at most a few levels of children; the walk is bounded to stay cheap.
MAX_ACCOUNT_DEPTH = 5


def role_allows(role: str | None, action: Action) -> bool:
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def role_for(*, user: User, account: Account) -> str | None:
    """Return the user's role on the account, inherited from the nearest ancestor if needed."""
    if not user.is_authenticated:
        return None
    chain = []
    current = account
    while current is not None and len(chain) < MAX_ACCOUNT_DEPTH:
        chain.append(current.pk)
        current = current.parent
    roles = dict(
        Membership.objects.filter(user=user, account_id__in=chain).values_list("account_id", "role")
    )
    for account_id in chain:
        if account_id in roles:
            return roles[account_id]
    return None


def account_for_user(*, user: User, public_id: str, action: Action = Action.VIEW) -> Account:
    """Return the account if the user may do `action` on it.

    Raise Http404 when the user has no access at all (tenancy), PermissionDenied when the user
    can see the account but their role does not allow the action.
    """
    if not is_public_id(public_id):
        raise Http404("No such account.")
    try:
        account = Account.objects.select_related("parent").get(public_id=public_id)
    except Account.DoesNotExist:
        raise Http404("No such account.") from None
    role = role_for(user=user, account=account)
    if role is None:
        raise Http404("No such account.")
    if not role_allows(role, action):
        raise PermissionDenied(f"Your role ({role}) does not allow this.")
    return account


def accounts_for_user(user: User) -> list[Account]:
    """Return every account the user can see: their memberships and the children below them."""
    if not user.is_authenticated:
        return []
    seen: dict[int, Account] = {}
    frontier = list(Account.objects.filter(memberships__user=user).order_by("name"))
    depth = 0
    while frontier and depth < MAX_ACCOUNT_DEPTH:
        for account in frontier:
            seen.setdefault(account.pk, account)
        frontier = list(
            Account.objects.filter(parent_id__in=[a.pk for a in frontier])
            .exclude(pk__in=seen.keys())
            .order_by("name")
        )
        depth += 1
    return sorted(seen.values(), key=lambda a: (a.parent_id is not None, a.name))
