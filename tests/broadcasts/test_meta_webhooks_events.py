"""Meta's statuses in, the customer's signed events out: the whole path over real HTTP."""

import orjson
import pytest

from broadcasts.models import Send, SendStatus
from events import endpoints, outbox, queue
from events.models import Event
from tests.events.conftest import contract_signature_valid
from tests.events.helpers import Receiver, broadcast_with_sends, meta_envelope, meta_signature, status_entry

URL = "/v1/webhooks/whatsapp"
SECRET = "meta-app-secret"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.WHATSAPP_APP_SECRET = SECRET
    settings.WEBHOOKS_ALLOW_PRIVATE = True


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def post_signed(client, payload):
    body = orjson.dumps(payload)
    return client.post(
        URL, data=body, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=meta_signature(body, SECRET)
    )


def test_meta_statuses_become_signed_customer_events(client, org, channel, template, receiver, monkeypatch):
    # Given a customer endpoint and a broadcast with SENT sends
    monkeypatch.setattr(queue, "delivery_enqueue", lambda endpoint_id: None)
    issued = endpoints.endpoint_create(organization=org, url=receiver.url)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    wamid = f"wamid.{broadcast.id}.1"
    # When Meta reports delivered, then read, then the same delivered again
    for status in ("delivered", "read", "delivered"):
        assert post_signed(client, meta_envelope(statuses=[status_entry(wamid, status)])).status_code == 200
    outbox.endpoint_deliver_due(endpoint_id=issued.endpoint.id)
    # Then the customer got exactly message.delivered then message.read, each verifiable
    assert [e["type"] for e in receiver.events()] == ["message.delivered", "message.read"]
    assert all(contract_signature_valid(r, issued.secret) for r in receiver.requests)
    read = receiver.events()[1]["data"]
    assert read["status"] == "READ" and read["message_id"] == wamid and read["index"] == 1


def test_a_thousand_status_body_with_an_endpoint_is_applied_in_a_few_queries(
    client, org, channel, template, django_assert_max_num_queries, monkeypatch
):
    # Given 1,000 SENT sends and an endpoint listening
    monkeypatch.setattr(queue, "delivery_enqueue", lambda endpoint_id: None)
    endpoints.endpoint_create(organization=org, url="http://127.0.0.1:9/hooks")
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1000)
    delivered = meta_envelope(statuses=[status_entry(f"wamid.{broadcast.id}.{i}", "delivered") for i in range(1000)])
    # When Meta posts all 1,000 statuses in one body
    with django_assert_max_num_queries(12):
        response = post_signed(client, delivered)
    # Then every send moved, and one event per send was recorded
    assert response.status_code == 200
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.DELIVERED).count() == 1000
    assert Event.objects.filter(type="message.delivered").count() == 1000
    # And redelivering the same body changes nothing and records nothing
    with django_assert_max_num_queries(3):
        assert post_signed(client, delivered).status_code == 200
    assert Event.objects.count() == 1000


def test_a_thousand_status_body_without_endpoints(client, org, channel, template, django_assert_max_num_queries):
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1000)
    statuses = [status_entry(f"wamid.{broadcast.id}.{i}", "read") for i in range(1000)]
    # (the broadcast's row lock and its kept counts' UPDATE included: a fixed number, whatever the body's size)
    with django_assert_max_num_queries(8):
        assert post_signed(client, meta_envelope(statuses=statuses)).status_code == 200
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.READ).count() == 1000


def test_a_jump_from_sent_to_read_also_tells_the_customer_delivered(
    client, org, channel, template, receiver, monkeypatch
):
    monkeypatch.setattr(queue, "delivery_enqueue", lambda endpoint_id: None)
    issued = endpoints.endpoint_create(organization=org, url=receiver.url)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=1)
    # When Meta's only status for a SENT message is "read" (its "delivered" came too early, or never)
    post_signed(client, meta_envelope(statuses=[status_entry(f"wamid.{broadcast.id}.0", "read")]))
    outbox.endpoint_deliver_due(endpoint_id=issued.endpoint.id)
    outbox.endpoint_deliver_due(endpoint_id=issued.endpoint.id)
    # Then the customer still sees delivered before read, and a late "delivered" adds nothing
    post_signed(client, meta_envelope(statuses=[status_entry(f"wamid.{broadcast.id}.0", "delivered")]))
    outbox.endpoint_deliver_due(endpoint_id=issued.endpoint.id)
    assert [e["type"] for e in receiver.events()] == ["message.delivered", "message.read"]
    assert [e["data"]["status"] for e in receiver.events()] == ["DELIVERED", "READ"]
