"""Email login through django-allauth: sign-up, login, admin login, throttling (SPEC A1)."""

from urllib.parse import parse_qs, urlsplit

from accounts.models import User

PASSWORD = "correct horse battery staple"


def logged_in_user_id(client):
    return client.session.get("_auth_user_id")


def test_signing_up_with_an_email_creates_a_user_without_a_username(client, db):
    response = client.post(
        "/accounts/signup/",
        {"email": "New.Person@Example.test", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    user = User.objects.get()
    assert user.email.lower() == "new.person@example.test"
    assert user.check_password(PASSWORD)
    assert not hasattr(user, "username")


def test_signing_up_twice_with_one_email_creates_one_user(client, make_user):
    make_user("taken@example.test")

    response = client.post(
        "/accounts/signup/",
        {"email": "taken@example.test", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 200  # the form comes back with an error
    assert User.objects.filter(email__iexact="taken@example.test").count() == 1


def test_a_user_logs_in_with_email_and_password(client, make_user, clear_cache):
    user = make_user("login@example.test", password=PASSWORD)

    response = client.post(
        "/accounts/login/", {"login": "login@example.test", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert logged_in_user_id(client) == str(user.pk)


def test_a_wrong_password_does_not_log_in(client, make_user, clear_cache):
    make_user("login@example.test", password=PASSWORD)

    response = client.post("/accounts/login/", {"login": "login@example.test", "password": "nope"})

    assert response.status_code == 200
    assert logged_in_user_id(client) is None


def test_admin_login_redirects_to_the_throttled_login_page(client, db):
    response = client.get("/admin/login/?next=/admin/billing/")

    assert response.status_code == 302
    url = urlsplit(response.url)
    assert url.path == "/accounts/login/"
    assert parse_qs(url.query) == {"next": ["/admin/billing/"]}


def test_admin_login_without_next_returns_to_the_admin_index(client, db):
    response = client.get("/admin/login/")

    assert parse_qs(urlsplit(response.url).query) == {"next": ["/admin/"]}


def test_staff_logging_in_through_allauth_reach_the_admin(client, make_user, clear_cache):
    make_user("staff@example.test", password=PASSWORD, is_staff=True, is_superuser=True)

    response = client.post(
        "/accounts/login/?next=/admin/",
        {"login": "staff@example.test", "password": PASSWORD, "next": "/admin/"},
    )

    assert response.status_code == 302
    assert response.url == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_five_failed_logins_throttle_even_the_right_password(client, make_user, clear_cache):
    make_user("target@example.test", password=PASSWORD)
    for _ in range(5):
        client.post("/accounts/login/", {"login": "target@example.test", "password": "guess"})

    response = client.post(
        "/accounts/login/", {"login": "target@example.test", "password": PASSWORD}
    )

    assert logged_in_user_id(client) is None
    assert response.status_code in (200, 429)
    assert b"Too many failed login attempts" in response.content


def test_fewer_failed_logins_than_the_limit_do_not_lock_a_user_out(client, make_user, clear_cache):
    user = make_user("target@example.test", password=PASSWORD)
    for _ in range(4):
        client.post("/accounts/login/", {"login": "target@example.test", "password": "guess"})

    client.post("/accounts/login/", {"login": "target@example.test", "password": PASSWORD})

    assert logged_in_user_id(client) == str(user.pk)


def test_a_signed_in_customer_opening_the_admin_gets_403_not_a_redirect_loop(client, make_user):
    client.force_login(make_user("customer@example.test", password=PASSWORD))

    response = client.get("/admin/", follow=True)

    assert response.status_code == 403
    # One hop: /admin/ sends them to the admin login, which refuses them.
    assert [url for url, _ in response.redirect_chain] == ["/admin/login/?next=/admin/"]
