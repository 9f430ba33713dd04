"""What every dashboard page shares: the account it is about, the role, the sidebar.

Views decorated with `account_page` get `request.account` (checked with `account_for_user`:
404 for other customers' accounts, 403 when the role lacks the action) and `request.role`.
The `sidebar` context processor then adds the account switcher, the navigation and the
figures at a glance.
"""

import csv
import functools
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.urls import Resolver404, resolve
from django.utils import timezone

from accounts import team
from accounts.brand import brand
from accounts.permissions import (
    ROLE_ACTIONS,
    Action,
    account_for_user,
    accounts_for_user,
    role_for,
)
from accounts.web.portal import RETURN_URL_SESSION_KEY
from billing.models import Subscription
from billing.payments.gateway import get_gateway
from billing.periods import current_period
from usage.reads.rollups import Spend, period_spend

# The sidebar's sections, by the URL namespace of the page (and, in "dashboard", the first
# word of the URL's name: keys, keys_create... are the API keys section).
SECTIONS = {
    "usage": "usage",
    "billing_dashboard": "billing",
    "payments": "billing",
    "billing": "invoices",
    "dashboard:account": "overview",
    "dashboard:keys": "keys",
    "dashboard:team": "team",
    "dashboard:subaccounts": "subaccounts",
}


def account_page(action: Action = Action.VIEW):
    """Decorate a view whose URL carries `public_id`; the view receives the account."""

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, public_id, *args, **kwargs):
            account = account_for_user(user=request.user, public_id=public_id, action=action)
            request.account = account
            request.role = role_for(user=request.user, account=account)
            return view(request, account, *args, **kwargs)

        return wrapper

    return decorator


def _section(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    if match.namespace == "dashboard":
        return SECTIONS.get(f"dashboard:{match.url_name.split('_')[0]}", "")
    return SECTIONS.get(match.namespace, "")


def _page_account(request):
    """Return the account of the page: set by `account_page`, or found from the URL.

    Pages built before `account_page` (invoices, payments) check access themselves; their
    URL's `public_id` gives the sidebar the same account, checked again here.
    """
    account = getattr(request, "account", None)
    if account is not None:
        return account
    match = getattr(request, "resolver_match", None)
    public_id = match.kwargs.get("public_id") if match else None
    if not public_id:
        return None
    try:
        account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    except Http404:
        return None
    request.account = account
    request.role = role_for(user=request.user, account=account)
    return account


def sidebar(request) -> dict:
    """Context for the base layout: the account switcher and the current period at a glance."""
    shared = {"payments_test_mode": get_gateway().simulated, "brand": brand()}
    if not request.user.is_authenticated:
        return shared
    # Signed in by a portal link: the operator's app is one click away (SPEC X4).
    if return_url := request.session.get(RETURN_URL_SESSION_KEY):
        shared["portal_return"] = {"url": return_url, "host": urlsplit(return_url).hostname}
    account = _page_account(request)
    if account is None:
        return shared
    now = timezone.now()
    subscription = Subscription.objects.select_related("plan").filter(account=account).first()
    spend = Spend()
    days_to_reset = None
    if subscription is not None:
        start, end = current_period(subscription=subscription, now=now)
        spend = period_spend(account=account, start=start, end=end)
        days_to_reset = (end.date() - now.date()).days
    seconds = spend.minute_seconds
    # Voice plans read minutes at a glance (SPEC D1); token and commission plans read money.
    shows_minutes = bool(seconds) or bool(subscription and subscription.plan.included_minutes)
    role = getattr(request, "role", None)
    return {
        **shared,
        "account": account,
        "role": role,
        "can": {action.value: action in ROLE_ACTIONS.get(role, ()) for action in Action},
        "switch_accounts": accounts_for_user(request.user),
        "subscription": subscription,
        "period_minutes": f"{seconds / 60:,.1f}",
        "shows_minutes": shows_minutes,
        "period_spend_micros": spend.net_micros,
        "days_to_reset": days_to_reset,
        "section": _section(request),
    }


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a stream."""

    def write(self, value: str) -> str:
        return value


# Spreadsheets run a cell that starts with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _safe_cell(value):
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        try:
            float(value)  # a negative amount stays a number
        except ValueError:
            return "'" + value
    return value


def csv_response(rows: Iterable[list], *, filename: str) -> StreamingHttpResponse:
    """Stream rows as a CSV download, one row at a time (SPEC D2, D3)."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow([_safe_cell(v) for v in row]) for row in rows),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


def entrance_invitation(request) -> dict:
    """Context for the sign-in and sign-up pages: the invitation their `next` link leads to,
    so that someone invited sees who invited them before they have a login."""
    if request.user.is_authenticated:
        return {}
    target = request.GET.get("next") or request.POST.get("next") or ""
    try:
        match = resolve(target.split("?", 1)[0]) if target.startswith("/") else None
    except Resolver404:
        match = None
    if match is None or match.view_name != "dashboard:invitation":
        return {}
    return {"entrance_invitation": team.open_invitation(match.kwargs["token"], now=timezone.now())}
