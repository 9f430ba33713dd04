"""Payment pages: top-up, saved cards, auto-top-up, and the test-mode payment pages (P1, P2, P6).

Thin views: each asks `account_for_user` for the account (MANAGE_BILLING for anything that
changes something), makes one call into a service and turns its error into a message. The
dashboard's billing pages build on these.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.permissions import Action, account_for_user
from billing.models import AutoTopUpSettings, TestCardBehaviour, TopUp
from billing.money import MoneyError, usd_input, usd_to_micros
from billing.payments import auto_topup, cards, simulated, topups
from billing.payments.gateway import get_gateway


def _manage(request, public_id):
    return account_for_user(user=request.user, public_id=public_id, action=Action.MANAGE_BILLING)


# Stands for the services' "{TOPUP}" placeholder while reversing: the route takes only a public id.
_TOPUP_STAND_IN = "TOPUP-PLACEHOLDER"


def _path(name, public_id, *args) -> str:
    args = [_TOPUP_STAND_IN if arg == "{TOPUP}" else arg for arg in args]
    path = reverse(f"payments:{name}", args=[public_id, *args])
    return path.replace(f"/{_TOPUP_STAND_IN}/", "/{TOPUP}/")


def _url(request, name, public_id, *args) -> str:
    return request.build_absolute_uri(_path(name, public_id, *args))


def _render(request, template, context):
    context.setdefault("payments_test_mode", get_gateway().simulated)
    return render(request, f"billing/payments/{template}", context)


def _home(public_id):
    return redirect("payments:home", public_id=public_id)


@login_required
def payments_home(request, public_id):
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    settings_row = AutoTopUpSettings.objects.filter(account=account).first()
    return _render(
        request,
        "home.html",
        {
            "account": account,
            "plan": account.subscription.plan,
            "minimum_micros": topups.minimum_topup_micros(account),
            "cards": cards.active_cards(account),
            "topups": TopUp.objects.filter(account=account)[:20],
            "auto": settings_row,
            "auto_amounts": {
                name: usd_input(
                    getattr(settings_row, f"{name}_micros", None) if settings_row else None
                )
                for name in ("threshold", "amount", "target", "monthly_cap")
            },
            "test_behaviours": TestCardBehaviour.choices,
        },
    )


@login_required
@require_POST
def start_topup(request, public_id):
    account = _manage(request, public_id)
    try:
        amount = usd_to_micros(request.POST.get("amount", ""))
        started = topups.start_topup(
            account=account,
            amount_micros=amount,
            now=timezone.now(),
            actor=request.user,
            success_url=_url(request, "checkout_success", public_id, "{TOPUP}"),
            cancel_url=_url(request, "checkout_cancel", public_id, "{TOPUP}"),
        )
    except (MoneyError, topups.TopUpError) as error:
        messages.error(request, str(error))
        return _home(public_id)
    return redirect(started.redirect_url)


def _topup(account, topup_id) -> TopUp:
    topup = TopUp.objects.filter(account=account, public_id=topup_id).first()
    if topup is None:
        raise Http404("No such top-up.")
    return topup


@login_required
def checkout_success(request, public_id, topup_id):
    """Back from paying: show the state; only the webhook (or test page) adds credit."""
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    return _render(
        request, "topup_status.html", {"account": account, "topup": _topup(account, topup_id)}
    )


@login_required
def checkout_cancel(request, public_id, topup_id):
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    topup = _topup(account, topup_id)
    return _render(
        request, "topup_status.html", {"account": account, "topup": topup, "canceled": True}
    )


@login_required
def test_checkout(request, public_id, topup_id):
    """The test-mode payment page standing in for Stripe Checkout (P6)."""
    if not get_gateway().simulated:
        raise Http404("Payments are real on this site.")
    account = _manage(request, public_id)
    topup = _topup(account, topup_id)
    if request.method == "POST":
        try:
            topup = simulated.complete_test_topup(
                account=account,
                topup_public_id=topup.public_id,
                pay=request.POST.get("outcome") == "pay",
                now=timezone.now(),
            )
        except topups.TopUpError as error:
            messages.error(request, str(error))
        return redirect("payments:checkout_success", public_id=public_id, topup_id=topup_id)
    return _render(request, "test_checkout.html", {"account": account, "topup": topup})


@login_required
def resume_topup(request, public_id, topup_id):
    """The link in the "authentication needed" email: pay the auto-top-up on-session."""
    account = _manage(request, public_id)
    topup = _topup(account, topup_id)
    if request.method == "POST":
        try:
            url = topups.resume_topup(
                account=account,
                topup_public_id=topup.public_id,
                success_url=_url(request, "checkout_success", public_id, "{TOPUP}"),
                cancel_url=_url(request, "checkout_cancel", public_id, "{TOPUP}"),
            )
        except topups.TopUpError as error:
            messages.error(request, str(error))
            return _home(public_id)
        return redirect(url)
    return _render(request, "resume_topup.html", {"account": account, "topup": topup})


@login_required
@require_POST
def add_card(request, public_id):
    account = _manage(request, public_id)
    try:
        url = cards.start_add_card(
            account=account,
            success_url=_url(request, "card_added", public_id),
            cancel_url=_url(request, "home", public_id),
        )
    except cards.CardError as error:
        messages.error(request, str(error))
        return _home(public_id)
    return redirect(url)


@login_required
def card_added(request, public_id):
    """Back from Checkout (setup mode): the card arrives by webhook."""
    account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    messages.info(request, "Your card is being saved; it shows up here in a moment.")
    return _home(public_id)


@login_required
def test_card(request, public_id):
    """The test-mode page that saves a test card (P6)."""
    if not get_gateway().simulated:
        raise Http404("Payments are real on this site.")
    account = _manage(request, public_id)
    if request.method == "POST":
        try:
            cards.add_test_card(
                account=account, behaviour=request.POST.get("behaviour", ""), now=timezone.now()
            )
        except cards.CardError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, "Test card saved.")
        return _home(public_id)
    return _render(
        request, "test_card.html", {"account": account, "behaviours": TestCardBehaviour.choices}
    )


@login_required
@require_POST
def set_default_card(request, public_id, card_id):
    account = _manage(request, public_id)
    try:
        cards.set_default_card(account=account, card_id=card_id, now=timezone.now())
    except cards.CardError as error:
        messages.error(request, str(error))
    return _home(public_id)


@login_required
@require_POST
def remove_card(request, public_id, card_id):
    account = _manage(request, public_id)
    try:
        cards.remove_card(account=account, card_id=card_id, now=timezone.now())
    except cards.CardError as error:
        messages.error(request, str(error))
    return _home(public_id)


def _optional_usd(value: str) -> int | None:
    value = (value or "").strip()
    return usd_to_micros(value) if value else None


@login_required
@require_POST
def save_auto_topup(request, public_id):
    account = _manage(request, public_id)
    post = request.POST
    try:
        auto_topup.save_auto_topup_settings(
            account=account,
            enabled=post.get("enabled") == "on",
            threshold_micros=usd_to_micros(post.get("threshold", "")),
            amount_micros=_optional_usd(post.get("amount", "")),
            target_micros=_optional_usd(post.get("target", "")),
            monthly_cap_micros=_optional_usd(post.get("monthly_cap", "")),
            now=timezone.now(),
        )
    except (MoneyError, auto_topup.AutoTopUpError) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Auto-top-up saved.")
    return _home(public_id)
