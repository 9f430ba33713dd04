"""The SSRF guard: refused addresses after DNS resolution, and the connection pinned to the
address that was checked."""

import socket

import pytest
from django.db import transaction
from django.utils import timezone

from webhooks.addresses import RefusedUrl, check_url, refusal, resolve
from webhooks.events import emit
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db

REAL_GETADDRINFO = socket.getaddrinfo


def fake_dns(monkeypatch, names: dict[str, list[str]]):
    """Answer these names with these addresses; count the lookups of each."""
    lookups = dict.fromkeys(names, 0)

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            lookups[host] += 1
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port),
                )
                for a in names[host]
            ]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",  # noqa: S104 - the unspecified address, refused
        "240.0.0.1",
        "100.64.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
    ],
)
def test_loopback_private_link_local_multicast_reserved_and_unspecified_are_refused(address):
    assert refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert refusal(address) is None


def test_a_name_that_resolves_to_loopback_is_refused(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    with pytest.raises(RefusedUrl, match="loopback"):
        check_url("http://localhost:8000/hooks")


def test_one_private_address_among_public_ones_is_enough_to_refuse(settings, monkeypatch):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34", "10.0.0.7"]})

    with pytest.raises(RefusedUrl, match=r"10\.0\.0\.7"):
        check_url("https://hooks.example.test/in")


def test_a_name_that_does_not_resolve_yet_may_be_configured(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    check_url("https://not-there-yet.invalid/hooks")


def test_only_http_and_https_are_accepted():
    for url in ("ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "example.com"):
        with pytest.raises(RefusedUrl):
            check_url(url)


def test_allow_private_lets_the_demo_and_tests_use_127_0_0_1(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True

    assert resolve("http://localhost:9/hooks").ip in ("127.0.0.1", "::1")


def test_a_delivery_to_a_name_resolving_to_127_0_0_1_is_refused_before_connecting(
    receiver, endpoint_to, make_account, settings, monkeypatch, django_capture_on_commit_callbacks
):
    fake_dns(monkeypatch, {"hooks.example.test": ["93.184.216.34"]})
    endpoint = endpoint_to()
    endpoint.url = f"http://hooks.example.test:{receiver.port}/hooks"
    endpoint.save()
    # The name now rebinds to the receiver on loopback, after the endpoint was accepted.
    fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event = emit("balance.low", {}, account=make_account(), now=timezone.now())

    assert receiver.received == []
    attempt = Delivery.objects.get(event=event).attempt_rows.get()
    assert attempt.status_code is None
    assert "loopback" in attempt.error


def test_the_connection_goes_to_the_address_checked_with_the_name_as_host(
    receiver, endpoint_to, make_account, monkeypatch, django_capture_on_commit_callbacks
):
    account = make_account()
    endpoint = endpoint_to()
    endpoint.url = f"http://hooks.example.test:{receiver.port}/hooks?x=1"
    endpoint.save()
    lookups = fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        emit("balance.low", {}, account=account, now=timezone.now())

    [got] = receiver.received
    assert got.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert got.verified is not None
    # Resolved once, for the check: the connection used that answer, not a second lookup.
    assert lookups["hooks.example.test"] == 1
