"""Outbound webhooks end to end: the outbox, signing, delivery to a real receiver on 127.0.0.1,
retries on the back-off schedule, the sweep, secret rotation and disabling a failing endpoint."""

from datetime import timedelta

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from operations.business import business_figures
from tests.webhooks.conftest import Receiver
from webhooks import transport
from webhooks.delivery import deliver, retry_due_deliveries
from webhooks.endpoints import create_endpoint, rotate_secret, update_endpoint
from webhooks.events import emit
from webhooks.models import Delivery, DeliveryStatus, OutboundEvent, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _emit_committed(account, callbacks_fixture, *, event_type="credit.granted", now=None):
    with callbacks_fixture(execute=True), transaction.atomic():
        return emit(event_type, {"amount": "5.00"}, account=account, now=now or timezone.now())


def test_a_committed_event_reaches_the_receiver_signed_as_standard_webhooks_says(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    endpoint_to()
    account = make_account()

    event = _emit_committed(account, django_capture_on_commit_callbacks)

    [got] = receiver.received
    assert got.error == ""
    assert got.verified["id"] == event.event_id
    assert got.verified["type"] == "credit.granted"
    assert got.verified["data"] == {
        "customer": account.external_id,
        "account": account.public_id,
        "amount": "5.00",
    }
    assert got.headers["webhook-id"] == event.event_id
    assert got.headers["webhook-signature"].startswith("v1,")
    delivery = Delivery.objects.get(event=event)
    assert delivery.status == DeliveryStatus.DELIVERED
    [attempt] = delivery.attempt_rows.all()
    assert attempt.status_code == 200
    assert attempt.response_excerpt == "answered 200"
    assert attempt.latency_ms is not None


def test_an_outbox_row_and_one_delivery_per_subscribed_endpoint_for_a_committed_cause(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    everything = endpoint_to()
    grants_only = endpoint_to(event_types=["credit.granted"])
    endpoint_to(event_types=["invoice.paid"])
    endpoint_to(enabled=False)
    account = make_account()

    event = _emit_committed(account, django_capture_on_commit_callbacks)

    assert OutboundEvent.objects.filter(type="credit.granted").count() == 1
    assert {d.endpoint for d in Delivery.objects.filter(event=event)} == {everything, grants_only}
    assert receiver.event_ids() == [event.event_id, event.event_id]


def test_a_rolled_back_cause_writes_no_event_and_sends_nothing(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    account = make_account()
    endpoint_to()
    events_before = OutboundEvent.objects.count()

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        emit("credit.granted", {"amount": "5.00"}, account=account, now=timezone.now())
        raise RuntimeError("the cause failed")

    assert OutboundEvent.objects.count() == events_before
    assert not Delivery.objects.exists()
    assert receiver.received == []


def test_a_receiver_down_for_a_while_then_up_gets_every_event_exactly_once(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    account = make_account()
    endpoint = endpoint_to()
    start = timezone.now()
    receiver.stop()
    with time_machine.travel(start, tick=True):
        sent = [_emit_committed(account, django_capture_on_commit_callbacks) for _ in range(3)]
    # A fourth whose task the broker lost: its on-commit queueing never runs.
    with time_machine.travel(start, tick=True):
        sent.append(emit("balance.low", {}, account=account, now=timezone.now()))
    assert all(d.attempts == 1 for d in Delivery.objects.filter(event__in=sent[:3]))

    with time_machine.travel(start + timedelta(seconds=10), tick=True):
        assert retry_due_deliveries(now=timezone.now()) == 4  # still down: 2nd attempts fail
    assert set(Delivery.objects.values_list("attempts", flat=True)) == {1, 2}

    receiver.start()  # the same port again
    with time_machine.travel(start + timedelta(minutes=1), tick=True):
        retry_due_deliveries(now=timezone.now())
    # Only the lost one's 2nd attempt is due (5 s after its 1st); the others' 3rd attempts are
    # due 5 minutes after their 2nd.
    assert receiver.event_ids() == [sent[3].event_id]
    for minutes in (6, 7, 60, 24 * 60):
        with time_machine.travel(start + timedelta(minutes=minutes), tick=True):
            retry_due_deliveries(now=timezone.now())
            for delivery in Delivery.objects.all():
                deliver(delivery_id=delivery.pk, now=timezone.now())  # a duplicate task

    assert sorted(receiver.event_ids()) == sorted(e.event_id for e in sent)
    assert all(r.verified is not None for r in receiver.received)
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_retries_follow_the_back_off_schedule_and_stop_after_three_days(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    endpoint_to()
    receiver.status = 503
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        event = _emit_committed(make_account(), django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(event=event)
    waits = []
    moment = start
    while delivery.status == DeliveryStatus.PENDING:
        waits.append(delivery.next_attempt_at - moment)
        moment = delivery.next_attempt_at
        with time_machine.travel(moment, tick=False):
            deliver(delivery_id=delivery.pk, now=moment)
        delivery.refresh_from_db()

    assert waits[:7] == [
        timedelta(seconds=5),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
        timedelta(hours=10),
        timedelta(hours=10),
    ]
    assert moment - start <= timedelta(days=3)
    assert moment + timedelta(hours=10) - start > timedelta(days=3)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == len(receiver.received) == len(waits) + 1


def test_a_redirect_is_an_answer_not_followed(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    elsewhere = Receiver()
    elsewhere.start()
    try:
        endpoint_to()
        receiver.status = 307
        receiver.location = elsewhere.url

        event = _emit_committed(make_account(), django_capture_on_commit_callbacks)
    finally:
        elsewhere.stop()

    assert elsewhere.received == []
    delivery = Delivery.objects.get(event=event)
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempt_rows.get().status_code == 307


def test_the_timeout_ends_a_slow_answer(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(transport, "TIMEOUT_SECONDS", 0.5)
    endpoint_to()
    receiver.delay_seconds = 3

    event = _emit_committed(make_account(), django_capture_on_commit_callbacks)

    attempt = Delivery.objects.get(event=event).attempt_rows.get()
    assert attempt.status_code is None
    assert attempt.error == "Timed out."
    assert attempt.latency_ms < 2500


def test_after_a_rotation_the_old_secret_signs_for_24_hours_and_not_after(
    receiver, make_account, django_capture_on_commit_callbacks
):
    start = timezone.now()
    created = create_endpoint(url=receiver.url, now=start)
    old = created.secret
    receiver.secrets = [old]
    account = make_account()

    new = rotate_secret(endpoint=created.endpoint, now=start)
    with time_machine.travel(start + timedelta(hours=23), tick=True):
        _emit_committed(account, django_capture_on_commit_callbacks)
        during = receiver.received[-1]
        assert Webhook(new).verify(during.body, during.headers)
    with time_machine.travel(start + timedelta(hours=25), tick=True):
        _emit_committed(account, django_capture_on_commit_callbacks)
        after = receiver.received[-1]
        assert Webhook(new).verify(after.body, after.headers)

    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verified is not None  # by the old secret
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verified is None  # the old secret no longer signs


def test_an_endpoint_failing_for_three_days_is_disabled_and_staff_are_emailed_once(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks, mailoutbox, settings
):
    settings.STAFF_ALERT_EMAILS = ["ops@example.test"]
    endpoint = endpoint_to()
    receiver.status = 500
    start = timezone.now()
    with time_machine.travel(start, tick=True):
        _emit_committed(make_account(), django_capture_on_commit_callbacks)

    with time_machine.travel(start + timedelta(days=2, hours=23), tick=True):
        retry_due_deliveries(now=timezone.now())
    endpoint.refresh_from_db()
    assert endpoint.enabled
    assert mailoutbox == []

    for hours in (73, 74):
        with time_machine.travel(start + timedelta(hours=hours), tick=True):
            retry_due_deliveries(now=timezone.now())

    endpoint.refresh_from_db()
    assert not endpoint.enabled
    assert endpoint.disabled_at is not None
    [email] = mailoutbox
    assert email.to == ["ops@example.test"]
    assert endpoint.url in email.subject


def test_a_success_resets_the_failure_clock(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    endpoint = endpoint_to()
    account = make_account()
    start = timezone.now()
    receiver.status = 500
    with time_machine.travel(start, tick=True):
        _emit_committed(account, django_capture_on_commit_callbacks)
    receiver.status = 200
    with time_machine.travel(start + timedelta(days=2), tick=True):
        _emit_committed(account, django_capture_on_commit_callbacks)
    receiver.status = 500
    with time_machine.travel(start + timedelta(days=3, hours=1), tick=True):
        retry_due_deliveries(now=timezone.now())

    endpoint.refresh_from_db()
    assert endpoint.enabled


def test_enabling_an_endpoint_again_sends_what_waited_for_it(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    endpoint = endpoint_to()
    update_endpoint(endpoint=endpoint, changes={"enabled": False}, now=timezone.now())
    event = emit("balance.low", {}, account=make_account(), now=timezone.now())
    assert receiver.received == []  # a disabled endpoint is subscribed to nothing

    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=True)
    pending = Delivery.objects.create(
        event=event,
        endpoint=endpoint,
        created_at=timezone.now(),
        next_attempt_at=timezone.now() + timedelta(hours=5),
        retry_until=timezone.now() + timedelta(days=3),
    )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    endpoint.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        update_endpoint(endpoint=endpoint, changes={"enabled": True}, now=timezone.now())

    assert receiver.event_ids() == [event.event_id]
    pending.refresh_from_db()
    assert pending.status == DeliveryStatus.DELIVERED


def test_the_metrics_count_pending_deliveries_and_failing_endpoints(
    receiver, endpoint_to, make_account, django_capture_on_commit_callbacks
):
    account = make_account()
    endpoint_to()
    endpoint_to(enabled=False)
    receiver.status = 500
    _emit_committed(account, django_capture_on_commit_callbacks)

    figures = {name: values for name, _, _, values in business_figures(now=timezone.now())}

    assert figures["meterline_webhook_deliveries_pending"] == [([], 1)]
    assert figures["meterline_webhook_deliveries_pending_oldest_age_seconds"][0][1] >= 0
    assert {labels[0]: n for labels, n in figures["meterline_webhook_endpoints"]} == {
        "failing": 1,
        "disabled": 1,
    }
