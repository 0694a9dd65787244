"""The outbox (events/outbox.py) over real HTTP to a receiver on 127.0.0.1: retries, order, claims, sweep,
disabling. The signed shape of a POST: test_signing.py; the connection itself: test_transport.py."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.notifications import message_events_publish
from events import endpoints, outbox
from events.models import DeliveryAttempt, DeliveryStatus, EventDelivery, WebhookEndpoint
from tests.events.conftest import contract_signature_valid
from tests.events.helpers import broadcast_with_sends


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=3)


def publish_sent(broadcast, indexes=(0,)):
    ids = list(broadcast.sends.filter(index__in=indexes).order_by("index").values_list("id", flat=True))
    message_events_publish(send_ids=ids, status="SENT")
    return ids


def test_failures_are_retried_with_backoff_and_the_same_event_id(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, secret = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    receiver.status = 500
    now = timezone.now()
    # When the first attempt gets a 500
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now) == {"delivered": 0, "failed_attempts": 1}
    delivery = EventDelivery.objects.get()
    # Then it is pending again, due later, and nothing is tried before then
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_status_code == 500
    assert now + timedelta(seconds=7) < delivery.next_attempt_at < now + timedelta(seconds=13)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now + timedelta(seconds=1))["failed_attempts"] == 0
    # When the next attempt (later, second backoff doubled) gets a 2xx, the same event id is delivered
    receiver.status = 204
    later = delivery.next_attempt_at
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=later)["delivered"] == 1
    first, second = receiver.requests
    assert first["headers"]["X-Webhook-Id"] == second["headers"]["X-Webhook-Id"]
    assert first["body"] == second["body"]
    assert contract_signature_valid(second, secret)
    assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 2
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0


def test_backoff_doubles_and_is_capped():
    assert 8 <= outbox.backoff_seconds(attempts=1) <= 12
    assert 16 <= outbox.backoff_seconds(attempts=2) <= 24
    assert 0.8 * 3600 <= outbox.backoff_seconds(attempts=40) <= 1.2 * 3600


def test_timeouts_and_connection_errors_are_failures(org, broadcast, endpoint_for, enqueued):
    # Given an endpoint on a closed port (connection refused)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    endpoint, _ = endpoint_for(org, f"http://127.0.0.1:{port}/x")
    publish_sent(broadcast)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    delivery = EventDelivery.objects.get()
    assert delivery.last_status_code is None and "ConnectionError" in delivery.last_error


def test_redirects_are_not_followed(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    receiver.status = 302
    publish_sent(broadcast)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    assert len(receiver.requests) == 1


def test_a_delivery_fails_for_good_after_24_hours(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    receiver.status = 503
    delivery = EventDelivery.objects.get()
    # When an attempt fails 5 s before the 24 h window closes, the next one would be past the window
    outbox.endpoint_deliver_due(
        endpoint_id=endpoint.id, now=delivery.created_at + timedelta(hours=23, minutes=59, seconds=55)
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == 503


def test_sweep_expires_pending_deliveries_older_than_24_hours(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    delivery = EventDelivery.objects.get()
    assert outbox.deliveries_sweep(now=delivery.created_at + timedelta(hours=1)) == [endpoint.id]
    assert outbox.deliveries_sweep(now=delivery.created_at + timedelta(hours=24, seconds=1)) == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and "24 hours" in delivery.last_error


def test_fifty_consecutive_failures_disable_the_endpoint(
    org, other_org, channel, template, receiver, endpoint_for, enqueued
):
    # Given 60 events to a failing endpoint
    big = broadcast_with_sends(org=org, channel=channel, template=template, count=60)
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(big, indexes=range(60))
    receiver.status = 500
    now = timezone.now()
    # When the first run fails its first batch (one round of concurrent POSTs), then each later run probes with one
    # event until 49 failed
    first = outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)["failed_attempts"]
    assert first == outbox.POST_CONCURRENCY
    for _ in range(49 - first):
        assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)["failed_attempts"] == 1
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 49
    # Then the 50th disables it, visibly, and nothing more is tried
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert endpoint.consecutive_failures == 50
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now) == {"delivered": 0, "failed_attempts": 0}
    assert len(receiver.requests) == 50
    assert endpoints.endpoints_active() == []
    # And re-enabling it (admin action) resets the streak and delivers again
    receiver.status = 200
    endpoints.endpoint_enable(endpoint=endpoint)
    endpoint.refresh_from_db()
    assert endpoint.is_active and endpoint.consecutive_failures == 0
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now + timedelta(hours=2))["delivered"] == 60


def test_a_success_resets_the_failure_streak(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    WebhookEndpoint.objects.filter(id=endpoint.id).update(consecutive_failures=49)
    publish_sent(broadcast)
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 0 and endpoint.is_active


def test_events_of_one_message_are_delivered_in_status_order(org, broadcast, receiver, endpoint_for, enqueued):
    # Given message 0 has sent, delivered and read events, recorded out of order
    endpoint, _ = endpoint_for(org, receiver.url)
    [send_id] = list(broadcast.sends.filter(index=0).values_list("id", flat=True))
    message_events_publish(send_ids=[send_id], status="READ")
    message_events_publish(send_ids=[send_id], status="SENT")
    message_events_publish(send_ids=[send_id], status="DELIVERED")
    # And the first one fails once
    receiver.status = 500
    now = timezone.now()
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)
    # When the endpoint recovers but the sent event is not due yet, nothing of that message goes out
    receiver.status = 200
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)["delivered"] == 0
    # Then once due, all three arrive in status order
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now + timedelta(minutes=1))
    types = [e["type"] for e in receiver.events()]
    assert types == ["message.sent", "message.sent", "message.delivered", "message.read"]


def test_other_messages_are_not_held_back_by_a_failing_one(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast, indexes=[0])
    receiver.status = 500
    now = timezone.now()
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now)
    receiver.status = 200
    publish_sent(broadcast, indexes=[1, 2])
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id, now=now + timedelta(seconds=1))["delivered"] == 2


def test_a_private_address_is_refused_at_send_time_too(org, broadcast, receiver, endpoint_for, enqueued, settings):
    # Given an endpoint registered while private addresses were allowed, and the setting now off
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    # When delivering, then nothing is posted and the attempt records why
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    assert receiver.requests == []
    assert "private" in EventDelivery.objects.get().last_error


def test_deleted_endpoints_get_nothing(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    endpoints.endpoint_delete(organization=org, endpoint_id=endpoint.id)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id) == {"delivered": 0, "failed_attempts": 0}
    assert EventDelivery.objects.get().status == DeliveryStatus.FAILED
    assert receiver.requests == []


def test_a_leased_delivery_is_not_claimed_twice(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast, indexes=[0, 1, 2])
    now = timezone.now()
    first = outbox.deliveries_claim(endpoint_id=endpoint.id, now=now)
    assert len(first) == 3
    assert outbox.deliveries_claim(endpoint_id=endpoint.id, now=now) == []
    # Past the lease (a worker died), another worker takes them over
    assert len(outbox.deliveries_claim(endpoint_id=endpoint.id, now=now + outbox.CLAIM_LEASE * 2)) == 3


def test_sweep_deletes_events_past_retention(org, broadcast, receiver, endpoint_for, enqueued):
    from events.models import Event

    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast, indexes=[0, 1])
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
    created = Event.objects.first().created_at
    outbox.deliveries_sweep(now=created + outbox.EVENT_RETENTION - timedelta(minutes=1))
    assert Event.objects.count() == 2
    outbox.deliveries_sweep(now=created + outbox.EVENT_RETENTION + timedelta(minutes=1))
    assert not Event.objects.exists() and not EventDelivery.objects.exists() and not DeliveryAttempt.objects.exists()


def test_a_name_that_does_not_resolve_is_not_posted_to(org, broadcast, enqueued, settings):
    endpoint = endpoints.endpoint_create(organization=org, url="https://hooks.customer.invalid/x").endpoint
    publish_sent(broadcast)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    assert "does not resolve" in EventDelivery.objects.get().last_error
