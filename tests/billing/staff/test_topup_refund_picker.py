"""Refunding a top-up to the card from a picker that shows each top-up's date, amount, what was
refunded and what is left, and from the top-up's own admin page (issue 16, item 5)."""

from datetime import timedelta

from django.urls import reverse

from billing.models import Refund
from billing.money import format_usd_exact, usd_input
from tests.billing.staff_data import USD, paid_topup
from tests.conftest import NOW


def picker_url(account, topup=None) -> str:
    url = reverse("admin:account_staff_action", args=[account.pk, "refund-topup"])
    return url if topup is None else f"{url}?topup={topup}"


def token_of(response) -> str:
    return response.context["form"]["token"].value()


def test_the_topups_page_links_the_refund_with_the_topup_chosen_and_whats_left_offered(
    finance, prepaid, client
):
    client.force_login(finance)
    topup = prepaid.topups.get()

    page = client.get(reverse("admin:billing_topup_change", args=[topup.pk])).content.decode()
    assert f'href="{picker_url(prepaid, topup.pk)}"' in page
    form = client.get(picker_url(prepaid, topup.pk)).context["form"]

    assert str(form["topup"].value()) == str(topup.pk)
    assert form["amount"].value() == usd_input(topup.amount_micros)
    # The top-up is picked before the amount is typed.
    assert list(form.fields)[:2] == ["topup", "amount"]


def test_a_partial_refund_from_the_picker_and_the_picker_shows_what_is_left(
    finance, prepaid, client
):
    client.force_login(finance)
    older = prepaid.topups.get()
    newer = paid_topup(prepaid, 30 * USD, now=NOW + timedelta(days=2))
    page = client.get(picker_url(prepaid))
    choices = page.content.decode()
    for topup in (older, newer):
        assert (
            f"{format_usd_exact(topup.amount_micros)} paid · $0.00 refunded · "
            f"{format_usd_exact(topup.amount_micros)} refundable"
        ) in choices
    assert choices.index(f"{format_usd_exact(30 * USD)} paid") < choices.index(
        f"{format_usd_exact(older.amount_micros)} paid"
    )  # newest first

    part = 12 * USD + 340_000
    done = client.post(
        picker_url(prepaid),
        {"token": token_of(page), "topup": newer.pk, "amount": usd_input(part), "reason": "r"},
    )

    assert done.status_code == 302
    [refund] = Refund.objects.all()
    assert (refund.topup, refund.amount_micros) == (newer, part)
    again = client.get(picker_url(prepaid, newer.pk))
    assert (
        f"{format_usd_exact(30 * USD)} paid · {format_usd_exact(part)} refunded · "
        f"{format_usd_exact(30 * USD - part)} refundable"
    ) in again.content.decode()
    assert again.context["form"]["amount"].value() == usd_input(30 * USD - part)


def test_a_topup_id_that_is_not_a_number_offers_no_amount(finance, prepaid, client):
    client.force_login(finance)

    response = client.get(picker_url(prepaid, "not-a-number"))

    assert response.status_code == 200
    assert not response.context["form"]["amount"].value()
