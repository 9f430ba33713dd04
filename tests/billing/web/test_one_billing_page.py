"""One billing page (issue 17): the old payments page folded into Billing, top-ups that end,
removing the default card, and form help and errors that screen readers find."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django_q.models import Schedule

from billing import jobs
from billing.models import AutoTopUpSettings, TestCardBehaviour, TopUp, TopUpKind, TopUpStatus
from billing.payments.cards import add_test_card
from billing.payments.topups import (
    ABANDONED_AFTER,
    cancel_topup,
    expire_abandoned_topups,
    fulfil_topup,
    new_topup,
)
from tests.conftest import NOW

USD = 1_000_000


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-prepaid", owner=owner, credit_micros=30 * USD, name="Acme Voice")


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


def billing_url(account, path=""):
    return reverse("billing_dashboard:home", args=[account.public_id]) + path


def pending(account, *, at=NOW, amount=25 * USD, kind=TopUpKind.MANUAL):
    return new_topup(account=account, kind=kind, amount_micros=amount, now=at)


# Top-up errors beside the field ----------------------------------------------------------------


def test_a_refused_top_up_shows_its_error_beside_the_field_with_the_amount_kept(signed_in, account):
    response = signed_in.post(billing_url(account, "topup/"), {"amount": "10"})

    page = response.content.decode()
    assert response.status_code == 400
    field = re.search(r'<input[^>]*name="amount"[^>]*id="id_topup_amount"[^>]*>', page).group()
    assert 'value="10"' in field
    assert 'aria-describedby="id_topup_amount_helptext id_topup_amount_error"' in field
    assert re.search(
        r'<ul class="errorlist" id="id_topup_amount_error"><li>The minimum top-up is \$20.00.</li>',
        page,
    )
    assert not TopUp.objects.exists()


def test_every_field_help_and_error_id_named_by_aria_describedby_exists(signed_in, account):
    page = signed_in.post(
        billing_url(account, "auto-topup/"), {"enabled": "on", "threshold": "x"}
    ).content.decode()

    named = {i for ids in re.findall(r'aria-describedby="([^"]+)"', page) for i in ids.split()}
    present = set(re.findall(r'\sid="([^"]+)"', page))
    assert "id_threshold_error" in named
    assert "id_recurring_amount_helptext" in named
    assert named <= present


# Back to Billing after paying or changing cards ------------------------------------------------


def test_after_paying_in_test_mode_the_customer_is_back_on_billing(signed_in, account):
    started = signed_in.post(billing_url(account, "topup/"), {"amount": "25"})

    paid = signed_in.post(started.url, {"outcome": "pay"}, follow=True)

    assert paid.redirect_chain[-1][0] == billing_url(account, "#payments")
    assert "Paid. $25.00 was added to your balance, now $55.00." in paid.content.decode()


def test_changing_or_removing_a_card_returns_to_billing(signed_in, account):
    first = add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    second = add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    args = [account.public_id, second.pk]

    made_default = signed_in.post(reverse("payments:set_default_card", args=args))
    removed = signed_in.post(reverse("payments:remove_card", args=[account.public_id, first.pk]))

    assert made_default.url == removed.url == billing_url(account, "#cards")


def test_the_old_payments_page_redirects_to_the_payments_history_of_billing(signed_in, account):
    response = signed_in.get(f"/app/a/{account.public_id}/payments/")

    assert response.status_code == 301
    assert response.url == billing_url(account, "payments/")


def test_the_payments_history_shows_cents_and_times_with_their_zone(signed_in, account):
    for day in range(3):
        pending(account, at=NOW - timedelta(days=day), amount=20 * USD + day * 10_000)

    page = signed_in.get(billing_url(account, "payments/")).content.decode()

    assert page.count("data-topup=") == 3
    assert "$20.02" in page and "20.000000" not in page
    assert "15 Mar 2026, 12:00 UTC" in page
    assert "2026-03-15T12:00" not in page.replace('datetime="2026-03-15T12:00', "")


# Top-ups that end ------------------------------------------------------------------------------


def test_a_canceled_top_up_shows_canceled(signed_in, account):
    topup = pending(account)

    response = signed_in.post(
        reverse("payments:cancel_topup", args=[account.public_id, topup.public_id]), follow=True
    )

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.CANCELED
    row = re.search(
        rf'<tr data-topup="{topup.public_id}">.*?</tr>', response.content.decode(), re.S
    )
    assert "Canceled" in row.group() and "Pending" not in row.group()


def test_a_pending_top_up_offers_resume_and_cancel_and_resume_reopens_its_checkout(
    signed_in, account
):
    topup = pending(account)
    resume = reverse("payments:resume_topup", args=[account.public_id, topup.public_id])
    cancel = reverse("payments:cancel_topup", args=[account.public_id, topup.public_id])

    page = signed_in.get(billing_url(account)).content.decode()
    response = signed_in.post(resume)

    assert f'action="{resume}"' in page and f'action="{cancel}"' in page
    assert response.url == reverse(
        "payments:test_checkout", args=[account.public_id, topup.public_id]
    )


def test_leaving_checkout_keeps_the_top_up_pending_and_says_so_on_billing(signed_in, account):
    topup = pending(account)

    response = signed_in.get(
        reverse("payments:checkout_cancel", args=[account.public_id, topup.public_id]),
        follow=True,
    )

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.PENDING
    assert "Resume it or cancel it below." in response.content.decode()


def test_an_abandoned_checkout_is_canceled_after_24_hours_and_not_before(account):
    topup = pending(account)
    auto = pending(account, kind=TopUpKind.AUTO)

    assert expire_abandoned_topups(now=NOW + ABANDONED_AFTER - timedelta(seconds=1)) == 0
    assert expire_abandoned_topups(now=NOW + ABANDONED_AFTER) == 1
    assert expire_abandoned_topups(now=NOW + ABANDONED_AFTER) == 0

    topup.refresh_from_db(), auto.refresh_from_db()
    assert (topup.status, topup.error) == (TopUpStatus.CANCELED, "The checkout page expired.")
    assert auto.status == TopUpStatus.PENDING


def test_a_payment_that_arrives_after_the_cancel_is_still_credited(account):
    topup = pending(account)
    cancel_topup(account=account, topup_public_id=topup.public_id, now=NOW)

    fulfil_topup(topup_id=topup.pk, now=NOW + timedelta(minutes=1))

    account.refresh_from_db()
    assert account.balance_micros == 55 * USD


def test_the_expiry_job_is_scheduled_by_a_stable_path(db):
    assert jobs.SCHEDULES["Abandoned top-up expiry"] == ("billing.jobs.expire_abandoned_topups", 60)
    # The test database is built by the migrations, which register it.
    assert Schedule.objects.filter(func="billing.jobs.expire_abandoned_topups").exists()


# Removing the default card ---------------------------------------------------------------------


def test_removing_the_default_card_asks_which_card_becomes_the_default(signed_in, account):
    first = add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    second = add_test_card(account=account, behaviour=TestCardBehaviour.DECLINE, now=NOW)

    page = signed_in.get(billing_url(account)).content.decode()

    action = reverse("payments:remove_card", args=[account.public_id, first.pk])
    form = re.search(rf'<form method="post" action="{action}">.*?</form>', page, re.S).group()
    assert f'<option value="{second.pk}">Visa •••• 0341</option>' in form
    assert '<option value="">None: turn auto-top-up off</option>' in form


def test_removing_the_default_card_without_a_successor_says_auto_top_up_is_off(signed_in, account):
    card = add_test_card(account=account, behaviour=TestCardBehaviour.SUCCEED, now=NOW)
    add_test_card(account=account, behaviour=TestCardBehaviour.DECLINE, now=NOW)
    AutoTopUpSettings.objects.create(
        account=account, enabled=True, threshold_micros=5 * USD, amount_micros=20 * USD
    )

    response = signed_in.post(
        reverse("payments:remove_card", args=[account.public_id, card.pk]),
        {"new_default": ""},
        follow=True,
    )

    assert "Auto-top-up is off: it had no default card left to charge." in (
        response.content.decode()
    )
    assert AutoTopUpSettings.objects.get(account=account).enabled is False
    assert not account.payment_methods.filter(is_default=True).exists()
