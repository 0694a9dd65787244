"""POST /v1/webhooks/{id}/ping (docs/api.md): a signed ping POSTed at once through the pinned, time-bounded transport,
answered with what the endpoint answered; nothing queued or stored."""

import threading
import time

import orjson
import pytest

from events import endpoints
from events.models import DeliveryAttempt, Event, EventDelivery, WebhookEndpoint
from events.ping import endpoint_ping
from tests.events.conftest import contract_signature_valid, standard_webhooks_valid
from tests.events.helpers import Tarpit

URL = "/v1/webhooks"


def ping(api, endpoint_id: str):
    return api.post(f"{URL}/{endpoint_id}/ping")


def test_ping_posts_a_signed_ping_and_answers_the_endpoints_status(api, org, receiver, endpoint_for, enqueued):
    # Given an endpoint subscribed to message.failed only
    endpoint, secret = endpoint_for(org, receiver.url, events=["message.failed"])
    # When it is pinged
    response = ping(api, endpoint.id)
    # Then the answer says what the endpoint answered
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"event_id", "ok", "status", "error", "duration_ms"}
    assert (body["ok"], body["status"], body["error"]) == (True, 200, None)
    assert isinstance(body["duration_ms"], int) and 0 <= body["duration_ms"] < 10_000
    # And the receiver got one ping, at once, verified by the standardwebhooks library and the contract's rule
    [request] = receiver.requests
    assert standard_webhooks_valid(request, secret) and contract_signature_valid(request, secret)
    event = orjson.loads(request["body"])
    assert set(event) == {"id", "type", "created_at", "data"}
    assert event["type"] == "ping" and event["id"] == body["event_id"] == request["headers"]["webhook-id"]
    assert event["data"] == {"endpoint_id": endpoint.id, "message": "ping"}
    # Nothing went through the outbox
    assert not Event.objects.exists() and not EventDelivery.objects.exists() and not DeliveryAttempt.objects.exists()
    assert enqueued == []


def test_a_failing_endpoint_is_still_a_200_saying_so(api, org, receiver, endpoint_for):
    endpoint, _ = endpoint_for(org, receiver.url)
    receiver.status = 503
    body = ping(api, endpoint.id).json()
    assert (body["ok"], body["status"], body["error"]) == (False, 503, "HTTP 503")
    # A ping neither counts toward nor resets the failure streak
    assert WebhookEndpoint.objects.get().consecutive_failures == 0


def test_nothing_listening_answers_null_status_and_the_error(api, org, endpoint_for):
    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/closed")
    body = ping(api, endpoint.id).json()
    assert body["ok"] is False and body["status"] is None
    assert body["error"].startswith("ConnectionError")


def test_ping_is_bounded_by_its_timeout(api, org, receiver, endpoint_for, settings):
    settings.EVENTS_PING_TIMEOUT_SECONDS = 1.25
    receiver.delay = 3.0
    endpoint, _ = endpoint_for(org, receiver.url)
    started = time.monotonic()
    body = ping(api, endpoint.id).json()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert body["ok"] is False and body["status"] is None and body["error"] == "timeout"
    assert 900 <= body["duration_ms"] < 2000


def test_private_addresses_are_refused_as_for_events(api, org, receiver, endpoint_for, settings):
    # Given an endpoint on a loopback address (registered while private addresses were allowed)
    endpoint, _ = endpoint_for(org, receiver.url)
    # When private addresses are not allowed any more
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    body = ping(api, endpoint.id).json()
    # Then the ping is refused before any connection
    assert body["ok"] is False and body["status"] is None
    assert body["error"].startswith("Refused:") and "127.0.0.1" not in body["error"]  # no lookup service
    assert receiver.requests == []


def test_a_disabled_endpoint_can_be_pinged(api, org, receiver, endpoint_for):
    endpoint, _ = endpoint_for(org, receiver.url)
    endpoints.endpoint_disable(endpoint_id=endpoint.id, reason="test")
    assert ping(api, endpoint.id).json()["ok"] is True
    assert WebhookEndpoint.objects.get().is_active is False  # re-enabling stays the operator's decision


def test_ping_is_404_for_another_organizations_or_a_deleted_endpoint(api, org, other_org, receiver, endpoint_for):
    theirs, _ = endpoint_for(other_org, receiver.url)
    response = ping(api, theirs.id)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    mine, _ = endpoint_for(org, receiver.url)
    endpoints.endpoint_delete(organization=org, endpoint_id=mine.id)
    assert ping(api, mine.id).status_code == 404
    assert receiver.requests == []


def test_ping_needs_the_webhooks_manage_scope(make_token, anon_api, org, receiver, endpoint_for):
    endpoint, _ = endpoint_for(org, receiver.url)
    anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['messages:bulk'])}")
    assert ping(anon_api, endpoint.id).status_code == 403
    assert receiver.requests == []


def test_ping_ignores_a_json_body(api, org, receiver, endpoint_for):
    endpoint, _ = endpoint_for(org, receiver.url)
    response = api.post(f"{URL}/{endpoint.id}/ping", {}, format="json")
    assert response.status_code == 200 and response.json()["ok"] is True


@pytest.mark.parametrize("button", ["ping"])
def test_admin_ping_button_reports_the_answer(admin_client, org, receiver, endpoint_for, button):
    endpoint, secret = endpoint_for(org, receiver.url)
    response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/{button}/", follow=True)
    assert response.status_code == 200
    assert "Ping delivered: HTTP 200" in response.content.decode()
    [request] = receiver.requests
    assert standard_webhooks_valid(request, secret)
    receiver.status = 500
    response = admin_client.post(f"/admin/events/webhookendpoint/{endpoint.id}/{button}/", follow=True)
    assert "Ping failed" in response.content.decode() and "HTTP 500" in response.content.decode()


def test_other_methods_are_405_in_the_error_envelope(api, org, receiver, endpoint_for):
    endpoint, _ = endpoint_for(org, receiver.url)
    for action in ("ping", "rotate-secret"):
        response = api.get(f"{URL}/{endpoint.id}/{action}")
        assert response.status_code == 405
        assert response.json()["error"]["code"]
    assert receiver.requests == []


@pytest.fixture
def tarpit():
    with Tarpit() as server:
        yield server


def test_an_endpoint_that_accepts_and_never_answers_is_a_timeout_within_5_s(api, org, tarpit, endpoint_for):
    endpoint, _ = endpoint_for(org, tarpit.url)
    started = time.monotonic()
    response = ping(api, endpoint.id)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["status"], body["error"]) == (False, None, "timeout")
    assert 4.0 <= elapsed < 5.5, elapsed
    assert tarpit.accepted == 1
    # The organization's lock is free again once the answer is out
    assert ping(api, endpoint.id).json()["error"] == "timeout"


def test_one_ping_per_organization_in_flight(api, org, other_org, make_token, anon_api, tarpit, receiver, endpoint_for):
    # Given a ping of the organization hanging on a tarpit
    hanging, _ = endpoint_for(org, tarpit.url)
    healthy, _ = endpoint_for(org, receiver.url)
    theirs, _ = endpoint_for(other_org, receiver.url)
    first: list = []
    thread = threading.Thread(target=lambda: first.append(endpoint_ping(endpoint=hanging)))
    thread.start()
    try:
        deadline = time.monotonic() + 3
        while tarpit.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tarpit.accepted == 1
        # When the organization pings another (healthy) endpoint meanwhile
        response = ping(api, healthy.id)
        # Then it is refused at once, saying when to come back
        assert response.status_code == 429
        error = response.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["retry_after_seconds"] >= 1
        assert 1 <= int(response["Retry-After"]) <= 5
        assert receiver.requests == []
        # And another organization's ping is not held up
        anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(organization=other_org)}")
        started = time.monotonic()
        body = ping(anon_api, theirs.id).json()
        assert body["ok"] is True and time.monotonic() - started < 1.0
    finally:
        thread.join()
    assert first[0].error == "timeout"
    # Once the first has answered, the organization may ping again
    assert ping(api, healthy.id).json()["ok"] is True
