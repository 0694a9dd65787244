"""Standard Webhooks headers beside ours (docs/api.md): real deliveries to a local receiver, verified by the
``standardwebhooks`` library itself and by the contract's own rule."""

import base64
import binascii
import secrets
import time

import orjson
import pytest

from broadcasts.notifications import message_events_publish
from events import outbox, signing
from events.models import WebhookEndpoint
from tests.events.conftest import contract_signature_valid, standard_webhooks_valid
from tests.events.helpers import broadcast_with_sends


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=2)


def legacy_secret(*, url_safe_characters: bool) -> str:
    """A secret as issued before the Standard Webhooks headers: ``whsec_`` + ``token_urlsafe(32)``, with or without
    a ``-`` or ``_`` in its random part (about 3 in 4 have one)."""
    while True:
        encoded = secrets.token_urlsafe(32)
        if any(c in encoded for c in "-_") == url_safe_characters:
            return f"whsec_{encoded}"


def deliver_one(broadcast, endpoint, index: int = 0) -> None:
    message_events_publish(send_ids=[broadcast.sends.get(index=index).id], status="SENT")
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id) == {"delivered": 1, "failed_attempts": 0}


def test_a_delivery_carries_both_header_sets_and_both_verifiers_accept_it(
    org, broadcast, receiver, endpoint_for, enqueued
):
    # Given an endpoint registered as the API does
    endpoint, secret = endpoint_for(org, receiver.url)
    # When an event is delivered to the real receiver
    before = int(time.time())
    deliver_one(broadcast, endpoint)
    [request] = receiver.requests
    headers = request["headers"]
    # Then the standardwebhooks library verifies it with the secret as issued, and so does the contract's rule
    assert standard_webhooks_valid(request, secret)
    assert contract_signature_valid(request, secret)
    # And both header sets name the same event and attempt
    body = orjson.loads(request["body"])
    assert headers["webhook-id"] == headers["X-Webhook-Id"] == body["id"]
    assert headers["webhook-timestamp"] == headers["X-Webhook-Timestamp"]
    assert abs(int(headers["webhook-timestamp"]) - before) <= 2
    assert headers["webhook-signature"].startswith("v1,") and " " not in headers["webhook-signature"]
    assert headers["X-Webhook-Signature"].startswith("v1=") and " " not in headers["X-Webhook-Signature"]


def test_another_secret_is_refused_by_both_verifiers(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, _ = endpoint_for(org, receiver.url)
    deliver_one(broadcast, endpoint)
    other = signing.secret_generate()
    assert not standard_webhooks_valid(receiver.requests[0], other)
    assert not contract_signature_valid(receiver.requests[0], other)


def test_a_tampered_body_is_refused_by_both_verifiers(org, broadcast, receiver, endpoint_for, enqueued):
    endpoint, secret = endpoint_for(org, receiver.url)
    deliver_one(broadcast, endpoint)
    request = {**receiver.requests[0]}
    request["body"] = request["body"].replace(b'"index":0', b'"index":1')
    assert not standard_webhooks_valid(request, secret)
    assert not contract_signature_valid(request, secret)


def test_new_secrets_are_whsec_and_standard_base64_of_32_random_bytes(org, endpoint_for):
    issued = {endpoint_for(org, "http://127.0.0.1:9/x")[1] for _ in range(5)}
    assert len(issued) == 5
    for secret in issued:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    # The stored secret is the issued one (encrypted at rest, read back as it is)
    assert {e.secret for e in WebhookEndpoint.objects.all()} == issued


def test_a_secret_issued_before_standard_webhooks_keeps_working(org, broadcast, receiver, endpoint_for, enqueued):
    # Given an endpoint whose secret has the old form (url-safe base64 without padding) with a '-' or '_' in it
    legacy = legacy_secret(url_safe_characters=True)
    endpoint, _ = endpoint_for(org, receiver.url)
    WebhookEndpoint.objects.filter(id=endpoint.id).update(secret=legacy)
    deliver_one(broadcast, endpoint)
    [request] = receiver.requests
    # Then our header verifies as before, and the Standard Webhooks one with the secret's 32 bytes as the key
    assert contract_signature_valid(request, legacy)
    key = base64.urlsafe_b64decode(legacy.removeprefix("whsec_") + "=")
    assert len(key) == 32
    assert standard_webhooks_valid(request, key)
    # (the library reads only the standard alphabet: given as a string, such a secret is a different key or none)
    try:
        library_reads_the_string = standard_webhooks_valid(request, legacy)
    except binascii.Error:  # the library could not even decode it
        library_reads_the_string = False
    assert not library_reads_the_string


def test_an_old_secret_without_url_safe_characters_verifies_as_it_is(org, broadcast, receiver, endpoint_for, enqueued):
    # The same string in both alphabets: the library reads it directly
    legacy = legacy_secret(url_safe_characters=False)
    endpoint, _ = endpoint_for(org, receiver.url)
    WebhookEndpoint.objects.filter(id=endpoint.id).update(secret=legacy)
    deliver_one(broadcast, endpoint)
    assert standard_webhooks_valid(receiver.requests[0], legacy)
    assert contract_signature_valid(receiver.requests[0], legacy)


def test_signature_headers_follow_both_rules_for_a_known_input():
    # Fixed input, so the expected values can be recomputed by hand (also: the standardwebhooks signer agrees)
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    secret = "whsec_" + base64.b64encode(bytes(range(32))).decode()
    body = b'{"id":"evt_1","type":"ping","created_at":"2026-01-01T00:00:00Z","data":{}}'
    headers = signing.signature_headers(secrets=[secret], message_id="evt_1", timestamp=1_790_000_000, body=body)
    expected = Webhook(secret).sign("evt_1", datetime.fromtimestamp(1_790_000_000, tz=UTC), body.decode())
    assert headers["webhook-signature"] == expected
    assert headers["X-Webhook-Signature"] == signing.signature_make(secret=secret, timestamp=1_790_000_000, body=body)
    assert set(headers) == {
        "X-Webhook-Id",
        "X-Webhook-Timestamp",
        "X-Webhook-Signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
