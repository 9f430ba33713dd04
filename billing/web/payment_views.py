"""The payment flow behind the Billing page: the return from checkout, resuming or canceling a
top-up, saved cards, and the test-mode payment pages (P1, P2, P6).

Thin views: each asks `account_for_user` for the account (MANAGE_BILLING for anything that
changes something), makes one call into a service and turns its error into a message. Every
one of them ends on the Billing page (`/billing/`), which holds the forms; the old payments
page (`/payments/`) redirects to the payments history there, so bookmarks and emails still land.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.permissions import Action, account_for_user
from billing.models import TestCardBehaviour, TopUp, TopUpStatus
from billing.money import format_usd
from billing.payments import cards, simulated, topups
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


def topup_return_urls(request, public_id) -> dict[str, str]:
    """Where checkout sends the customer back, for `topups.start_topup` and `resume_topup`."""
    return {
        "success_url": _url(request, "checkout_success", public_id, "{TOPUP}"),
        "cancel_url": _url(request, "checkout_cancel", public_id, "{TOPUP}"),
    }


def _render(request, template, context):
    context.setdefault("payments_test_mode", get_gateway().simulated)
    return render(request, f"billing/payments/{template}", context)


def _billing(public_id, anchor: str):
    return redirect(f"{reverse('billing_dashboard:home', args=[public_id])}#{anchor}")


@login_required
def payments_home(request, public_id):
    """The old payments page: its history is a page of Billing now."""
    account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    return redirect("billing_dashboard:payments", public_id=public_id, permanent=True)


def _topup(account, topup_id) -> TopUp:
    topup = TopUp.objects.filter(account=account, public_id=topup_id).first()
    if topup is None:
        raise Http404("No such top-up.")
    return topup


def _tell_topup_state(request, account, topup: TopUp) -> None:
    """Say on the Billing page where the top-up stands: only the webhook (or the test page)
    adds credit, so coming back from checkout may be before the payment is confirmed."""
    amount = format_usd(topup.amount_micros)
    if topup.is_paid:
        messages.success(
            request,
            f"Paid. {amount} was added to your balance, now {format_usd(account.balance_micros)}.",
        )
    elif topup.status == TopUpStatus.FAILED:
        # The provider's message is a sentence of its own, with its own full stop.
        messages.error(request, f"The payment of {amount} failed and no money was taken.")
        if topup.error:
            messages.error(request, topup.error)
    elif topup.status == TopUpStatus.CANCELED:
        messages.info(request, f"The top-up of {amount} was canceled. No money was taken.")
    elif topup.status == TopUpStatus.REQUIRES_ACTION:
        messages.warning(
            request, f"Your card needs you to confirm the payment of {amount}: choose Resume."
        )
    else:
        messages.info(
            request,
            f"We are waiting for the payment of {amount} to be confirmed. Your balance is "
            "updated as soon as it is.",
        )


@login_required
def checkout_success(request, public_id, topup_id):
    """Back from paying: say the top-up's state on the Billing page."""
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    _tell_topup_state(request, account, _topup(account, topup_id))
    return _billing(public_id, "payments")


@login_required
def checkout_cancel(request, public_id, topup_id):
    """Back from checkout without paying: a GET changes nothing, so the top-up stays pending
    with Resume and Cancel beside it (abandoned ones are canceled after a day)."""
    account = account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    topup = _topup(account, topup_id)
    if topups.can_resume(topup):
        messages.info(
            request,
            f"You left the payment page: the top-up of {format_usd(topup.amount_micros)} is "
            "not paid. Resume it or cancel it below.",
        )
    else:
        _tell_topup_state(request, account, topup)
    return _billing(public_id, "payments")


@login_required
@require_POST
def cancel_topup(request, public_id, topup_id):
    account = _manage(request, public_id)
    try:
        topup = topups.cancel_topup(account=account, topup_public_id=topup_id, now=timezone.now())
    except topups.TopUpError as error:
        messages.error(request, str(error))
    else:
        _tell_topup_state(request, account, topup)
    return _billing(public_id, "payments")


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
    """Pay a top-up on its checkout page: the link in the "authentication needed" email, and
    Resume beside a pending top-up on Billing."""
    account = _manage(request, public_id)
    topup = _topup(account, topup_id)
    if request.method == "POST":
        try:
            url = topups.resume_topup(
                account=account,
                topup_public_id=topup.public_id,
                **topup_return_urls(request, public_id),
            )
        except topups.TopUpError as error:
            messages.error(request, str(error))
            return _billing(public_id, "payments")
        return redirect(url)
    return _render(
        request,
        "resume_topup.html",
        {"account": account, "topup": topup, "can_resume": topups.can_resume(topup)},
    )


@login_required
@require_POST
def add_card(request, public_id):
    account = _manage(request, public_id)
    try:
        url = cards.start_add_card(
            account=account,
            success_url=_url(request, "card_added", public_id),
            cancel_url=request.build_absolute_uri(
                reverse("billing_dashboard:home", args=[public_id])
            ),
        )
    except cards.CardError as error:
        messages.error(request, str(error))
        return _billing(public_id, "cards")
    return redirect(url)


@login_required
def card_added(request, public_id):
    """Back from Checkout (setup mode): the card arrives by webhook."""
    account_for_user(user=request.user, public_id=public_id, action=Action.VIEW)
    messages.info(request, "Your card is being saved; it shows up here in a moment.")
    return _billing(public_id, "cards")


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
        return _billing(public_id, "cards")
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
    else:
        messages.success(request, "Default card changed.")
    return _billing(public_id, "cards")


@login_required
@require_POST
def remove_card(request, public_id, card_id):
    account = _manage(request, public_id)
    new_default = request.POST.get("new_default", "")
    try:
        turned_off = cards.remove_card(
            account=account,
            card_id=card_id,
            now=timezone.now(),
            new_default_id=int(new_default) if new_default.isdigit() else None,
        )
    except cards.CardError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Card removed.")
        if turned_off:
            messages.warning(
                request,
                "Auto-top-up is off: it had no default card left to charge. Choose a default "
                "card and turn it on again under Auto-top-up.",
            )
    return _billing(public_id, "cards")
