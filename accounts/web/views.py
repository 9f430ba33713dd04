"""Account pages of the dashboard: overview, API keys, subaccounts (SPEC D1, D4).

Thin views: `account_page(Action.X)` checks the account and the role (404 for another
customer's account, 403 for a role without the action), then one call into a service or
selector. Every object is looked up by the account and its id, never by id alone.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import keys as key_service
from accounts.models import ApiKey, KeyKind
from accounts.permissions import Action, account_for_user, accounts_for_user
from accounts.tier_requests import TierRequestError, request_higher_tier
from accounts.web.forms import NewKeyForm, SubaccountForm, TierRequestForm
from accounts.web.selectors import keys_overview, subaccount_rows
from accounts.web.shell import account_page
from billing.plans.subaccounts import (
    SubaccountError,
    create_subaccount,
    default_plan_code,
    offered_plans,
)
from billing.plans.subscriptions import issue_customer_key
from usage.pages.overview import overview


def admin_login_redirect(request):
    """Send /admin/login/ to allauth's login, which throttles failed attempts.

    A signed-in user who is not active staff gets 403, as allauth's own `secure_admin_login`
    answers: sending them to the login page would loop, since allauth sends a signed-in user
    on to `next` (the admin), which sends them back here.
    """
    if request.user.is_authenticated and not (request.user.is_active and request.user.is_staff):
        raise PermissionDenied("The admin is for staff.")
    next_url = request.GET.get("next") or reverse("admin:index")
    return redirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")


@login_required
def home(request):
    accounts = accounts_for_user(request.user)
    if accounts:
        # The first account of the user's own (a parent before its children).
        return redirect("dashboard:account", public_id=accounts[0].public_id)
    return render(request, "accounts/home.html", {"accounts": accounts})


@login_required
def switch_account(request):
    """The sidebar's account switcher (a GET form, so it works without JavaScript)."""
    public_id = request.GET.get("account", "")
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    return redirect("dashboard:account", public_id=account.public_id)


@account_page(Action.VIEW)
def account_detail(request, account):
    return render(request, "accounts/overview.html", {"o": overview(account, timezone.now())})


# API keys -----------------------------------------------------------------------------------


# The new key's secret waits in the session between the POST and the page it redirects to, which
# takes it out: a reload shows the list without it and issues nothing (post/redirect/get).
NEW_KEY_SESSION = "new_api_key:{}"


def _keys_page(request, account, *, form=None, status: int = 200):
    new_token = request.session.pop(NEW_KEY_SESSION.format(account.public_id), "")
    response = render(
        request,
        "accounts/keys.html",
        {
            "rows": keys_overview(account=account, now=timezone.now()),
            "form": form or NewKeyForm(),
            "new_token": new_token,
        },
        status=status,
    )
    if new_token:
        # The secret is on this page only: no cache may keep it.
        response["Cache-Control"] = "private, no-store"
    return response


@account_page(Action.VIEW)
def api_keys(request, account):
    return _keys_page(request, account)


@account_page(Action.MANAGE_KEYS)
@require_POST
def create_key(request, account):
    form = NewKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, account, form=form, status=400)
    issued = issue_customer_key(
        account=account, name=form.cleaned_data["name"], now=timezone.now(), created_by=request.user
    )
    request.session[NEW_KEY_SESSION.format(account.public_id)] = issued.token
    return redirect("dashboard:keys", public_id=account.public_id)


@account_page(Action.MANAGE_KEYS)
@require_POST
def revoke_key(request, account, key_id):
    api_key = ApiKey.objects.filter(account=account, kind=KeyKind.CUSTOMER, key_id=key_id).first()
    if api_key is None:
        raise Http404("No such key.")
    key_service.revoke_api_key(api_key=api_key, now=timezone.now())
    messages.success(request, f"Key {api_key.name} ({api_key.key_id}) revoked.")
    return redirect("dashboard:keys", public_id=account.public_id)


@account_page(Action.MANAGE_KEYS)
@require_POST
def request_tier(request, account):
    form = TierRequestForm(request.POST)
    if form.is_valid():
        try:
            request_higher_tier(
                account=account,
                key_id=form.cleaned_data["key_id"],
                tier=form.cleaned_data["tier"],
                reason=form.cleaned_data["reason"],
                requested_by=request.user,
                now=timezone.now(),
            )
        except TierRequestError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Request sent. Staff will answer it here shortly.")
    else:
        messages.error(request, "Choose a tier for the request.")
    return redirect("dashboard:keys", public_id=account.public_id)


# Subaccounts --------------------------------------------------------------------------------


def _subaccounts_page(request, account, form=None, status=200):
    plans = offered_plans()
    return render(
        request,
        "accounts/subaccounts.html",
        {
            "rows": subaccount_rows(parent=account),
            "form": form
            or SubaccountForm(
                plans=plans, initial={"plan": default_plan_code(parent=account, plans=plans)}
            ),
        },
        status=status,
    )


@account_page(Action.VIEW)
def subaccounts(request, account):
    return _subaccounts_page(request, account)


@account_page(Action.MANAGE_ACCOUNT)
@require_POST
def create_subaccount_view(request, account):
    form = SubaccountForm(request.POST, plans=offered_plans())
    if form.is_valid():
        try:
            child = create_subaccount(
                parent=account,
                name=form.cleaned_data["name"],
                plan_code=form.cleaned_data["plan"],
                email=form.cleaned_data["email"],
                actor=request.user,
                now=timezone.now(),
            )
        except SubaccountError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Subaccount {child.name} created.")
            return redirect("dashboard:account", public_id=child.public_id)
    return _subaccounts_page(request, account, form=form, status=400)
