"""Strings customers read on the billing pages, as people write them (issue 17)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import TopUp
from billing.money import MoneyError, usd_to_micros
from billing.payments.simulated import complete_test_topup
from billing.payments.topups import start_topup
from tests.conftest import NOW

USD = 1_000_000
URLS = {"success_url": "https://x.test/done/{TOPUP}/", "cancel_url": "https://x.test/no/{TOPUP}/"}


@pytest.fixture
def owner(make_user):
    return make_user()


@pytest.fixture
def account(make_account, owner):
    return make_account("voice-prepaid", owner=owner, credit_micros=30 * USD)


def test_a_declined_payment_reads_as_sentences_with_one_full_stop(client, owner, account):
    topup = start_topup(account=account, amount_micros=25 * USD, now=NOW, **URLS).topup
    complete_test_topup(account=account, topup_public_id=topup.public_id, pay=False, now=NOW)
    error = TopUp.objects.get(pk=topup.pk).error
    assert error.endswith(".")
    client.force_login(owner)

    page = client.get(
        reverse("payments:checkout_success", args=[account.public_id, topup.public_id]),
        follow=True,
    ).content.decode()

    assert f">{error}</li>" in page
    assert ".." not in page


@pytest.mark.parametrize("text", ["1e3", "1E3", "2e1", "1_000", "NaN", "Infinity", "0x10"])
def test_an_amount_in_any_but_plain_digits_is_no_top_up(client, owner, account, text):
    client.force_login(owner)

    response = client.post(
        reverse("billing_dashboard:topup", args=[account.public_id]), {"amount": text}, follow=True
    )

    assert not TopUp.objects.filter(account=account).exists()
    assert response.status_code == 400
    assert "Enter an amount in USD, such as 25 or 12.50." in response.content.decode()
    with pytest.raises(MoneyError):
        usd_to_micros(text)


@pytest.mark.parametrize("text", ["25", "25.", "25.50", ".5", " 20 "])
def test_plain_amounts_still_parse(text):
    assert usd_to_micros(text) == int(Decimal(text.strip()) * USD)


def test_the_budget_section_speaks_no_status_code(client, owner, account):
    client.force_login(owner)

    page = client.get(f"/app/a/{account.public_id}/billing/").content.decode()

    assert 'id="budgets"' in page
    assert "(402)" not in page
    assert "stops billable usage until the next period" in page
