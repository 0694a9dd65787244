"""OpenAPI 3.1 ``webhooks`` in GET /v1/schema: every event type with its body and the signature headers; the bodies
actually POSTed validate against them."""

import orjson
import pytest
from django.conf import settings
from drf_spectacular.validation import validate_schema
from jsonschema import Draft202012Validator

from broadcasts.models import BroadcastStatus
from broadcasts.notifications import broadcast_event_publish, message_events_publish
from events import openapi, outbox
from events.models import EventType
from tests.events.helpers import broadcast_with_sends

HEADERS = {
    *("X-Webhook-Id", "X-Webhook-Timestamp", "X-Webhook-Signature"),
    *("webhook-id", "webhook-timestamp", "webhook-signature"),
}


@pytest.fixture
def schema(anon_api, db) -> dict:
    response = anon_api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return orjson.loads(response.content)


def body_schema(schema: dict, event_type: str) -> dict:
    return schema["webhooks"][event_type]["post"]["requestBody"]["content"]["application/json"]["schema"]


def assert_valid(schema: dict, event: dict) -> None:
    validator = Draft202012Validator(
        body_schema(schema, event["type"]), format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(event)]
    assert errors == [], errors


def test_the_schema_is_openapi_3_1_and_valid(schema):
    assert schema["openapi"].startswith("3.1.")
    validate_schema(schema)  # drf-spectacular's bundled OpenAPI 3.1 meta-schema; raises when invalid


def test_every_event_type_is_a_webhook_with_its_headers_and_body(schema):
    assert set(schema["webhooks"]) == set(EventType.values)
    assert set(EventType.values) >= {
        "message.sent",
        "message.delivered",
        "message.read",
        "message.failed",
        "broadcast.paused",
        "broadcast.completed",
        "broadcast.cancelled",
        "suppression.added",
        "suppression.removed",
        "ping",
    }
    for event_type, item in schema["webhooks"].items():
        operation = item["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header" and p["required"]}
        assert headers == HEADERS, event_type
        body = body_schema(schema, event_type)
        assert body["required"] == ["id", "type", "created_at", "data"]
        assert body["properties"]["type"] == {"type": "string", "const": event_type}
        assert body["properties"]["data"]["required"], event_type
        assert "2XX" in operation["responses"] and operation["summary"]


def test_the_settings_list_every_webhook_of_events_openapi():
    assert settings.SPECTACULAR_SETTINGS["OAS_VERSION"].startswith("3.1")
    # Each webhook object of events/openapi.py, by its import path (drf-spectacular's documented form)
    assert settings.SPECTACULAR_SETTINGS["WEBHOOKS"] == [
        f"events.openapi.{name}" for name, value in vars(openapi).items() if value in openapi.WEBHOOKS.values()
    ]
    assert set(openapi.WEBHOOKS) == set(EventType.values)


def test_the_existing_paths_are_still_described(schema):
    assert {"/v1/messages/bulk", "/v1/webhooks", "/v1/webhooks/{endpoint_id}"} <= set(schema["paths"])
    assert "post" in schema["paths"]["/v1/webhooks/{endpoint_id}/rotate-secret"]
    assert "post" in schema["paths"]["/v1/webhooks/{endpoint_id}/ping"]


def test_the_bodies_posted_validate_against_their_schemas(
    schema, api, org, channel, template, receiver, endpoint_for, enqueued
):
    # Given every event the service produces today, delivered to a real receiver
    endpoint, _ = endpoint_for(org, receiver.url)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=2)
    sends = list(broadcast.sends.order_by("index"))
    sends[1].error_code, sends[1].error_message, sends[1].error_retryable = "131026", "Message undeliverable", False
    sends[1].save()
    for status in ("SENT", "DELIVERED", "READ"):
        message_events_publish(send_ids=[sends[0].id], status=status)
    message_events_publish(send_ids=[sends[1].id], status="FAILED")
    broadcast.status = BroadcastStatus.PAUSED
    broadcast.paused_reason = {"code": "manual", "message": "Paused on request."}
    broadcast.save()
    broadcast_event_publish(broadcast_id=broadcast.id, event_type=EventType.BROADCAST_PAUSED)
    broadcast.status, broadcast.paused_reason = BroadcastStatus.COMPLETED, None
    broadcast.save()
    broadcast_event_publish(broadcast_id=broadcast.id, event_type=EventType.BROADCAST_COMPLETED)
    while outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["delivered"]:
        pass
    assert api.post(f"/v1/webhooks/{endpoint.id}/ping").json()["ok"] is True
    # Then each body the receiver got validates against its webhook's schema
    events = receiver.events()
    assert sorted(e["type"] for e in events) == sorted(
        [
            "message.sent",
            "message.delivered",
            "message.read",
            "message.failed",
            "broadcast.paused",
            "broadcast.completed",
            "ping",
        ]
    )
    for event in events:
        assert_valid(schema, event)


def test_a_body_off_the_schema_is_caught(schema):
    # The validation above can fail: a message event without its status, or with another event's status
    event = {
        "id": "evt_0123456789abcdef01234567",
        "type": "message.sent",
        "created_at": "2026-01-01T00:00:00Z",
        "data": {
            "broadcast_id": "b",
            "index": 0,
            "to": "+34600000001",
            "message_id": "wamid.x",
            "status": "READ",
            "error": None,
            "meta_data": None,
        },
    }
    with pytest.raises(AssertionError):
        assert_valid(schema, event)
    event["data"]["status"] = "SENT"
    assert_valid(schema, event)
    with pytest.raises(AssertionError):
        assert_valid(schema, {**event, "data": {k: v for k, v in event["data"].items() if k != "to"}})
