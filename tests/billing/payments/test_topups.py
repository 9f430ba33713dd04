"""Manual top-ups: minimums, Checkout, the test-mode page, and the views (SPEC P1, P6)."""

import pytest
from django.urls import reverse

from accounts.models import Role
from billing.models import EntryKind, LedgerEntry, TopUp, TopUpStatus
from billing.payments.simulated import complete_test_topup
from billing.payments.topups import TopUpError, fulfil_topup, start_topup
from tests.conftest import NOW

USD = 1_000_000
URLS = {"success_url": "https://x.test/done/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}


def test_voice_prepaid_refuses_a_topup_under_twenty_dollars(make_account):
    account = make_account("voice-prepaid")

    with pytest.raises(TopUpError, match=r"minimum top-up is \$20\.00"):
        start_topup(account=account, amount_micros=19_990_000, now=NOW, **URLS)

    assert not TopUp.objects.exists()


def test_llm_api_accepts_five_dollars_and_refuses_less(make_account):
    account = make_account("llm-api")

    with pytest.raises(TopUpError, match=r"\$5\.00"):
        start_topup(account=account, amount_micros=4_990_000, now=NOW, **URLS)
    started = start_topup(account=account, amount_micros=5 * USD, now=NOW, **URLS)

    assert started.topup.status == TopUpStatus.PENDING


def test_a_fraction_of_a_cent_is_refused(make_account):
    with pytest.raises(TopUpError, match="whole number of cents"):
        start_topup(account=make_account(), amount_micros=20_000_001, now=NOW, **URLS)


def test_stripe_checkout_is_opened_in_cents_with_the_topup_key(
    make_account, stripe_keys, fake_stripe
):
    account = make_account()

    started = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS)

    topup = started.topup
    assert started.redirect_url.startswith("https://checkout.stripe.com/")
    assert topup.checkout_session_id.startswith("cs_test_")
    (_, _, params, key) = next(r for r in fake_stripe.requests if r[1] == "/v1/checkout/sessions")
    assert key == f"{topup.key}:checkout"
    assert params["mode"] == "payment"
    assert params["line_items[0][price_data][unit_amount]"] == "2500"
    assert params["metadata[topup]"] == topup.public_id
    assert params["payment_intent_data[metadata][topup]"] == topup.public_id
    assert params["success_url"] == f"https://x.test/done/{topup.public_id}/"
    assert params["customer"] == account.stripe_customer_id
    # No credit before Stripe confirms the payment.
    assert not LedgerEntry.objects.filter(account=account, kind=EntryKind.TOPUP).exists()


def test_fulfil_twice_credits_once(make_account):
    account = make_account()
    topup = start_topup(account=account, amount_micros=20 * USD, now=NOW, **URLS).topup

    fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id="pi_1")
    fulfil_topup(topup_id=topup.pk, now=NOW, payment_intent_id="pi_1")

    account.refresh_from_db()
    assert account.balance_micros == 20 * USD
    assert LedgerEntry.objects.get(idempotency_key=f"topup:{topup.pk}").amount_micros == 20 * USD


def test_test_mode_page_pays_through_the_fulfilment(make_account):
    account = make_account()
    topup = start_topup(account=account, amount_micros=20 * USD, now=NOW, **URLS).topup

    complete_test_topup(account=account, topup_public_id=topup.public_id, pay=True, now=NOW)

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.SUCCEEDED
    assert topup.entry.idempotency_key == f"topup:{topup.pk}"


def test_test_mode_decline_credits_nothing(make_account):
    account = make_account()
    topup = start_topup(account=account, amount_micros=20 * USD, now=NOW, **URLS).topup

    complete_test_topup(account=account, topup_public_id=topup.public_id, pay=False, now=NOW)

    topup.refresh_from_db()
    assert topup.status == TopUpStatus.FAILED
    assert not LedgerEntry.objects.filter(kind=EntryKind.TOPUP).exists()


def test_test_mode_page_is_off_with_stripe_keys(make_account, stripe_keys):
    account = make_account()
    topup = start_topup(account=account, amount_micros=20 * USD, now=NOW, **URLS).topup

    with pytest.raises(TopUpError, match="real payments"):
        complete_test_topup(account=account, topup_public_id=topup.public_id, pay=True, now=NOW)


# Views -------------------------------------------------------------------------------------


@pytest.fixture
def owner_client(client, make_user, make_account):
    user = make_user()
    account = make_account(owner=user)
    client.force_login(user)
    return client, account


def test_topup_through_the_pages_in_test_mode(owner_client):
    client, account = owner_client

    response = client.post(
        reverse("billing_dashboard:topup", args=[account.public_id]), {"amount": "25.00"}
    )
    topup = TopUp.objects.get(account=account)
    assert response.status_code == 302
    assert response.url == reverse(
        "payments:test_checkout", args=[account.public_id, topup.public_id]
    )

    page = client.get(response.url)
    assert "TEST MODE — no real money" in page.content.decode()

    paid = client.post(response.url, {"outcome": "pay"}, follow=True)
    body = paid.content.decode()
    assert "TEST MODE — no real money" in body
    assert "Paid." in body
    account.refresh_from_db()
    assert account.balance_micros == 25 * USD


def test_every_payment_page_says_test_mode(owner_client):
    client, account = owner_client
    for name in ("billing_dashboard:home", "billing_dashboard:payments", "payments:test_card"):
        body = client.get(reverse(name, args=[account.public_id])).content.decode()
        assert "TEST MODE — no real money" in body


def test_success_redirect_only_shows_the_state(owner_client):
    client, account = owner_client
    topup = start_topup(account=account, amount_micros=20 * USD, now=NOW, **URLS).topup

    body = client.get(
        reverse("payments:checkout_success", args=[account.public_id, topup.public_id]),
        follow=True,
    ).content.decode()

    assert "waiting for the payment of $20.00 to be confirmed" in body
    account.refresh_from_db()
    assert account.balance_micros == 0


def test_topup_under_the_minimum_shows_the_error(owner_client):
    client, account = owner_client

    response = client.post(
        reverse("billing_dashboard:topup", args=[account.public_id]), {"amount": "10"}, follow=True
    )

    assert "The minimum top-up is $20.00." in response.content.decode()
    assert not TopUp.objects.exists()


def test_viewer_may_not_top_up_and_stranger_sees_nothing(
    client, make_user, make_account, add_member
):
    account = make_account()
    viewer, stranger = make_user(), make_user()
    add_member(viewer, account, Role.VIEWER)
    url = reverse("billing_dashboard:topup", args=[account.public_id])

    client.force_login(viewer)
    assert client.post(url, {"amount": "25"}).status_code == 403
    client.force_login(stranger)
    assert client.post(url, {"amount": "25"}).status_code == 404
    assert (
        client.get(reverse("billing_dashboard:payments", args=[account.public_id])).status_code
        == 404
    )
    assert client.get(reverse("payments:home", args=[account.public_id])).status_code == 404
    assert not TopUp.objects.exists()


def test_billing_role_adds_test_cards_and_manages_them(client, make_user, make_account, add_member):
    account = make_account()
    member = make_user()
    add_member(member, account, Role.BILLING)
    client.force_login(member)

    for behaviour in ("succeed", "decline"):
        client.post(
            reverse("payments:test_card", args=[account.public_id]), {"behaviour": behaviour}
        )
    first, second = account.payment_methods.order_by("pk")
    assert (first.is_default, second.is_default) == (True, False)

    client.post(reverse("payments:set_default_card", args=[account.public_id, second.pk]))
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.is_default, second.is_default) == (False, True)

    client.post(
        reverse("payments:remove_card", args=[account.public_id, second.pk]),
        {"new_default": first.pk},
    )
    first.refresh_from_db(), second.refresh_from_db()
    assert second.removed_at is not None
    assert first.is_default


def test_add_card_with_stripe_keys_opens_checkout_in_setup_mode(
    owner_client, stripe_keys, fake_stripe
):
    client, account = owner_client

    response = client.post(reverse("payments:add_card", args=[account.public_id]))

    assert response.status_code == 302
    assert response.url.startswith("https://checkout.stripe.com/")
    params = fake_stripe.posts("/v1/checkout/sessions")[-1]
    assert (params["mode"], params["currency"]) == ("setup", "usd")
