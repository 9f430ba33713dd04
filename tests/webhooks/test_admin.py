"""Webhooks in Django admin: the secret shown once, rotate, enable and disable, events and
deliveries with each attempt, and the manual resend that Support may use."""

import pytest
from django.contrib.messages import get_messages
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from tests.billing.staff_data import staff_member
from webhooks.events import emit
from webhooks.models import Delivery, DeliveryStatus, SigningSecret, WebhookEndpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, make_user):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_creating_an_endpoint_shows_its_secret_once(admin_client, receiver):
    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {
            "url": receiver.url,
            "description": "Ours",
            "event_types": ["balance.low"],
            "enabled": "on",
        },
        follow=True,
    )

    endpoint = WebhookEndpoint.objects.get()
    secret = SigningSecret.objects.get(endpoint=endpoint).secret
    assert (endpoint.event_types, endpoint.description) == (["balance.low"], "Ours")
    assert any(secret in m for m in messages_of(response))
    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk]))
    assert page.status_code == 200
    assert secret not in page.content.decode()


def test_a_refused_url_is_a_form_error(admin_client, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"), {"url": "http://127.0.0.1:9/x"}
    )

    assert response.status_code == 200
    assert "loopback" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_rotate_disable_and_enable_actions(admin_client, endpoint_to):
    endpoint = endpoint_to()
    changelist = reverse("admin:webhooks_webhookendpoint_changelist")

    rotated = admin_client.post(
        changelist, {"action": "rotate_secret", "_selected_action": [endpoint.pk]}, follow=True
    )
    newest = endpoint.secrets.first()
    assert any(newest.secret in m for m in messages_of(rotated))
    assert endpoint.secrets.filter(expires_at__isnull=False).count() == 1

    admin_client.post(changelist, {"action": "disable", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert "Disabled by" in endpoint.disabled_reason

    admin_client.post(changelist, {"action": "enable", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_support_sees_each_attempt_and_resends_a_delivery(
    client, receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    account = make_account()
    endpoint_to()
    receiver.status = 503
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        event = emit("balance.low", {}, account=account, now=timezone.now())
    delivery = Delivery.objects.get(event=event)
    client.force_login(staff_member("Support"))

    page = client.get(reverse("admin:webhooks_delivery_change", args=[delivery.pk]))
    assert page.status_code == 200
    assert "503" in page.content.decode()
    assert "answered 503" in page.content.decode()  # the response excerpt
    assert (
        client.get(reverse("admin:webhooks_outboundevent_change", args=[event.pk])).status_code
        == 200
    )

    receiver.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("admin:webhooks_delivery_changelist"),
            {"action": "resend", "_selected_action": [delivery.pk]},
        )

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert receiver.event_ids() == [event.event_id, event.event_id]
    assert delivery.attempt_rows.count() == 2


def test_support_cannot_create_or_change_endpoints(client, receiver):
    client.force_login(staff_member("Support"))

    response = client.post(
        reverse("admin:webhooks_webhookendpoint_add"), {"url": receiver.url, "enabled": "on"}
    )

    assert response.status_code == 403
    assert not WebhookEndpoint.objects.exists()
