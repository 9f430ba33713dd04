"""The demo's receiver: `manage.py demo` points an endpoint at it and prints what arrives."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.demo.webhooks import DESCRIPTION, start_receiver, verified
from webhooks.events import emit
from webhooks.models import WebhookEndpoint
from webhooks.signing import new_secret, signed_headers

pytestmark = pytest.mark.django_db


def test_the_demo_receiver_prints_each_webhook_with_its_verified_signature(
    make_account, django_capture_on_commit_callbacks
):
    printed = []
    start_receiver(write=printed.append)
    account = make_account()

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event = emit("balance.low", {}, account=account, now=timezone.now())

    assert printed == [
        f"webhook balance.low {event.event_id} for {account.public_id}: signature verified"
    ]


def test_a_second_start_points_the_same_endpoint_at_the_new_receiver():
    first = start_receiver(write=print)
    second = start_receiver(write=print)

    [endpoint] = WebhookEndpoint.objects.filter(description=DESCRIPTION)
    assert endpoint.url == second != first


def test_the_demo_receiver_flags_another_secret_and_an_old_timestamp():
    secret, body, now = new_secret(), b'{"id":"evt_1"}', timezone.now()

    def headers(*, secrets, sent_at):
        return signed_headers(secrets=secrets, msg_id="evt_1", sent_at=sent_at, body=body)

    assert verified(secrets=[secret], headers=headers(secrets=[secret], sent_at=now), body=body)
    assert not verified(
        secrets=[secret], headers=headers(secrets=[new_secret()], sent_at=now), body=body
    )
    assert not verified(
        secrets=[secret],
        headers=headers(secrets=[secret], sent_at=now - timedelta(minutes=10)),
        body=body,
    )
