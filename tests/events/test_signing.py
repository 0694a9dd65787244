"""What a customer receives (events/signing.py): the exact body and the signature the contract describes."""

import time

import orjson
import pytest

from broadcasts.notifications import message_events_publish
from events import outbox
from events.models import DeliveryStatus, Event, EventDelivery
from events.signing import event_body, signature_make
from tests.events.conftest import contract_signature_valid
from tests.events.helpers import broadcast_with_sends


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=3)


def publish_sent(broadcast, indexes=(0,)):
    ids = list(broadcast.sends.filter(index__in=indexes).order_by("index").values_list("id", flat=True))
    message_events_publish(send_ids=ids, status="SENT")
    return ids


def test_event_is_posted_signed_with_the_contracts_shape(org, broadcast, receiver, endpoint_for, enqueued):
    # Given an endpoint and a message.sent event
    endpoint, secret = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    # When the endpoint's deliveries run
    before = int(time.time())
    stats = outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
    # Then the receiver got one POST it can verify with the contract's rule
    assert stats == {"delivered": 1, "failed_attempts": 0}
    [request] = receiver.requests
    assert contract_signature_valid(request, secret)
    assert abs(int(request["headers"]["X-Webhook-Timestamp"]) - before) <= 2
    assert request["headers"]["Content-Type"] == "application/json"
    body = orjson.loads(request["body"])
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["id"].startswith("evt_") and request["headers"]["X-Webhook-Id"] == body["id"]
    assert body["type"] == "message.sent"
    assert body["data"] == {
        "broadcast_id": broadcast.id,
        "index": 0,
        "to": "+34600000000",
        "message_id": f"wamid.{broadcast.id}.0",
        "status": "SENT",
        "error": None,
        "meta_data": {"crm_id": 0},
    }
    delivery = EventDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 200)


def test_a_wrong_secret_does_not_verify(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    publish_sent(broadcast)
    outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
    assert not contract_signature_valid(receiver.requests[0], "whsec_not-the-secret")


def test_signature_make_follows_the_contracts_rule(org, broadcast, endpoint_for, enqueued):
    # Given a recorded event, its exact body and a signature made for it
    endpoint_for(org, "http://127.0.0.1:9/x")
    publish_sent(broadcast)
    event = Event.objects.get()
    body = event_body(event=event)
    signature = signature_make(secret="whsec_k", timestamp=1_790_000_000, body=body)
    # Then a receiver following docs/api.md verifies it, and the body is the same bytes every time
    request = {"headers": {"X-Webhook-Timestamp": "1790000000", "X-Webhook-Signature": signature}, "body": body}
    assert contract_signature_valid(request, "whsec_k")
    assert not contract_signature_valid(request, "whsec_other")
    assert event_body(event=event) == body and orjson.loads(body)["id"] == event.id
