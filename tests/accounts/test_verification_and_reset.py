"""Mandatory email verification and password reset through allauth's real pages (SPEC A1).

The test settings make verification optional so that other tests can sign up and go straight on;
production makes it mandatory, so these tests switch it back and walk the pages as a customer
would, reading the emails from Django's locmem outbox.
"""

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.models import Membership, User

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase"
USD = 1_000_000
EMAIL = "new.customer@example.test"


@pytest.fixture(autouse=True)
def mandatory_verification(settings, db, clear_cache):
    # clear_cache: allauth keeps its sign-up, login and reset throttles in the cache.
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"


def sign_up(client, email=EMAIL):
    return client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


def log_in(client, email=EMAIL, password=PASSWORD):
    return client.post("/accounts/login/", {"login": email, "password": password})


def logged_in_user_id(client):
    return client.session.get("_auth_user_id")


def link_in(message):
    """Return the path of the one link to this site in an email."""
    (path,) = re.findall(r"http://testserver(/\S+)", message.body)
    return path


def verified_user(make_user, email=EMAIL):
    user = make_user(email, password=PASSWORD)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


# Email verification ---------------------------------------------------------------------------


def test_a_new_user_verifies_the_email_then_lands_on_the_dashboard_with_the_signup_credit(
    client, plans
):
    response = sign_up(client)

    assert response.status_code == 302
    assert response.url == "/accounts/confirm-email/"
    assert logged_in_user_id(client) is None
    assert client.get("/app/").url == "/accounts/login/?next=/app/"

    (message,) = mail.outbox
    assert message.to == [EMAIL]
    confirm_path = link_in(message)
    assert confirm_path.startswith("/accounts/confirm-email/")
    confirm_page = client.get(confirm_path)
    assert confirm_page.status_code == 200
    assert f'action="{confirm_path}"' in confirm_page.content.decode()

    response = client.post(confirm_path)

    assert response.status_code == 302
    user = User.objects.get(email=EMAIL)
    assert EmailAddress.objects.get(user=user).verified
    assert logged_in_user_id(client) == str(user.pk)
    dashboard = client.get(response.url, follow=True)
    assert dashboard.status_code == 200
    account = Membership.objects.get(user=user).account
    assert dashboard.redirect_chain[-1][0] == f"/app/a/{account.public_id}/"
    assert account.balance_micros == 10 * USD
    assert "$10.00" in dashboard.content.decode()


def test_the_verification_page_says_where_the_email_went(client, plans):
    response = sign_up(client, email="someone@example.test")

    page = client.get(response.url).content.decode()

    assert "Verify Your Email Address" in page
    assert "Confirmation email sent to someone@example.test." in page
    assert "css/meterline.css" in page and 'class="entrance"' in page


def test_logging_in_before_verifying_is_refused_with_the_verification_page(client, plans):
    sign_up(client)
    other_browser = Client()

    response = log_in(other_browser)

    assert response.status_code == 302
    assert response.url == "/accounts/confirm-email/"
    assert logged_in_user_id(other_browser) is None
    assert other_browser.get("/app/").status_code == 302
    assert "Verify Your Email Address" in other_browser.get(response.url).content.decode()


def test_a_link_opened_in_another_browser_verifies_but_the_user_still_logs_in(client, plans):
    sign_up(client)
    confirm_path = link_in(mail.outbox[0])
    other_browser = Client()

    other_browser.post(confirm_path)

    # Only the browser that signed up is logged in by the link (allauth's pending login), so a
    # forwarded or intercepted email does not open a session by itself.
    assert EmailAddress.objects.get(email=EMAIL).verified
    assert logged_in_user_id(other_browser) is None
    response = log_in(other_browser)
    assert response.status_code == 302
    assert logged_in_user_id(other_browser) == str(User.objects.get(email=EMAIL).pk)


def test_a_made_up_verification_link_verifies_nothing(client, plans):
    sign_up(client)

    response = client.post("/accounts/confirm-email/not-a-real-key/")

    assert response.status_code == 404
    assert not EmailAddress.objects.get(email=EMAIL).verified
    assert logged_in_user_id(client) is None


def test_signing_up_with_a_taken_email_reveals_nothing_and_tells_the_owner(client, make_user):
    verified_user(make_user)

    response = sign_up(client)

    # The same answer as a fresh sign-up: the page does not tell who has an account.
    assert response.status_code == 302
    assert response.url == "/accounts/confirm-email/"
    assert User.objects.filter(email__iexact=EMAIL).count() == 1
    (message,) = mail.outbox
    assert message.to == [EMAIL]
    assert "/accounts/confirm-email/" not in message.body


# Password reset -------------------------------------------------------------------------------


def request_reset(client, email=EMAIL):
    return client.post("/accounts/password/reset/", {"email": email})


def test_a_user_resets_the_password_through_the_emailed_link(client, make_user):
    user = verified_user(make_user)

    response = request_reset(client)

    assert response.url == "/accounts/password/reset/done/"
    (message,) = mail.outbox
    assert message.to == [EMAIL]
    key_path = link_in(message)
    assert key_path.startswith("/accounts/password/reset/key/")
    # allauth moves the key from the address into the session before showing the form, so the
    # key does not leak through the Referer header of anything the page loads.
    form_path = client.get(key_path).url
    assert client.get(form_path).status_code == 200

    response = client.post(form_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.url == "/accounts/password/reset/key/done/"
    browser = Client()
    assert log_in(browser, password=PASSWORD).status_code == 200  # the form again, with an error
    assert logged_in_user_id(browser) is None
    assert log_in(browser, password=NEW_PASSWORD).status_code == 302
    assert logged_in_user_id(browser) == str(user.pk)


def test_a_reset_link_works_once(client, make_user):
    verified_user(make_user)
    request_reset(client)
    key_path = link_in(mail.outbox[0])
    form_path = client.get(key_path).url
    client.post(form_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    response = Client().get(key_path, follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Bad Token" in page and 'name="password1"' not in page
    user = User.objects.get(email=EMAIL)
    assert user.check_password(NEW_PASSWORD)


def test_a_reset_for_an_unknown_email_looks_the_same_and_sends_no_reset_link(client, make_user):
    verified_user(make_user)
    known = request_reset(client)
    known_page = client.get(known.url)
    mail.outbox.clear()

    unknown = request_reset(Client(), email="nobody@example.test")

    assert (unknown.status_code, unknown.url) == (known.status_code, known.url)
    unknown_page = Client().get(unknown.url)
    assert unknown_page.status_code == known_page.status_code
    assert _main(unknown_page) == _main(known_page)
    # The address's owner, not the requester, hears that it has no account; no reset link exists.
    (message,) = mail.outbox
    assert message.to == ["nobody@example.test"]
    assert "/accounts/password/reset/key/" not in message.body


def _main(response):
    """Return the page's main content, which unlike the CSRF token is the same for everyone."""
    page = response.content.decode()
    return page[page.index('<main id="main"') : page.index("</main>")]
