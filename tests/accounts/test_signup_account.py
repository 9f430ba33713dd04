"""Sign-up opens the new user's own account on the sign-up plan, with its credit (SPEC A1, D1)."""

from django.test import override_settings

from accounts.models import Membership, Role, User
from billing.models import EntryKind, LedgerEntry

PASSWORD = "correct horse battery staple"
USD = 1_000_000


def sign_up(client, email="new.customer@example.test"):
    return client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


def test_signing_up_opens_an_account_on_llm_api_with_ten_usd_of_credit(client, plans):
    response = sign_up(client)

    assert response.status_code == 302
    user = User.objects.get(email="new.customer@example.test")
    membership = Membership.objects.select_related("account__subscription__plan").get(user=user)
    assert membership.role == Role.OWNER
    account = membership.account
    assert account.subscription.plan.code == "llm-api"
    assert account.balance_micros == 10 * USD
    assert LedgerEntry.objects.get(account=account).kind == EntryKind.SIGNUP_CREDIT


def test_the_new_user_lands_on_the_overview_showing_the_signup_credit(client, plans):
    sign_up(client)

    response = client.get("/app/", follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Balance" in page and "$10.00" in page


@override_settings(SIGNUP_PLAN_CODE="voice-prepaid")
def test_the_sign_up_plan_is_a_setting(client, plans):
    sign_up(client)

    account = Membership.objects.get().account
    assert account.subscription.plan.code == "voice-prepaid"
    assert account.balance_micros == 0


def test_without_the_sign_up_plan_the_user_is_created_without_an_account(client, db):
    response = sign_up(client)

    assert response.status_code == 302
    assert User.objects.count() == 1
    assert not Membership.objects.exists()


def test_the_sign_in_page_uses_the_site_layout_with_labelled_fields(client, db):
    page = client.get("/accounts/login/").content.decode()

    assert "css/meterline.css" in page
    assert 'class="entrance"' in page
    assert '<label for="id_login"' in page and '<label for="id_password"' in page
