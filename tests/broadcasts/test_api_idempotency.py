"""Idempotency-Key on POST /v1/messages/bulk (docs/api.md)."""

import threading
from datetime import timedelta
from unittest import mock

import orjson
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from broadcasts.idempotency import idempotency_records_purge
from broadcasts.models import Broadcast, IdempotencyRecord, Send
from tests.broadcasts.test_api_create import URL, payload, post, stored


@pytest.fixture(autouse=True)
def _no_dispatch():
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        yield


def test_same_key_and_body_replays_the_first_answer_creating_nothing(api, channel, template):
    # given a first request with a key
    body = payload(channel, n=3)
    first = post(api, body, HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers

    # when the same body is sent again with the same key (keys reordered: same JSON)
    again = api.post(
        URL,
        orjson.dumps(dict(reversed(list(body.items())))),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="order-42",
    )

    # then the original 202 body comes back, marked replayed, and nothing new exists
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert stored() == (1, 3, 1)


def test_same_key_with_another_body_is_409(api, channel, template):
    post(api, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY="k1")
    response = post(api, payload(channel, n=2), HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert stored() == (1, 1, 1)


def test_keys_are_per_organization(api, channel, template, other_org, make_token):
    post(api, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY="shared")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(organization=other_org)}")
    response = post(other, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY="shared")
    # their org has no such channel: a 400 of its own, not a replay of ours
    assert response.status_code == 400
    assert "Idempotent-Replayed" not in response.headers


def test_a_key_older_than_24_hours_is_forgotten(api, channel, template):
    post(api, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    response = post(api, payload(channel, n=2), HTTP_IDEMPOTENCY_KEY="old")
    assert response.status_code == 202 and "Idempotent-Replayed" not in response.headers
    assert Broadcast.objects.count() == 2 and IdempotencyRecord.objects.count() == 1
    assert idempotency_records_purge(now=timezone.now() + timedelta(hours=25)) == 1


def test_an_invalid_request_does_not_burn_the_key(api, channel, template):
    bad = payload(channel, n=1)
    bad["recipients"][0]["to"] = "+1"
    assert post(api, bad, HTTP_IDEMPOTENCY_KEY="retry-me").status_code == 400
    assert stored() == (0, 0, 0)
    assert post(api, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY="retry-me").status_code == 202


@pytest.mark.parametrize("key", ["", "has space", "x" * 256, "tab\there"])
def test_a_malformed_key_is_400(api, channel, template, key):
    response = post(api, payload(channel, n=1), HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]) == ["Idempotency-Key"]
    assert stored() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_create_one_broadcast(channel, template, token):
    # given 4 clients racing with the same key and body
    body = orjson.dumps(payload(channel, n=200))
    barrier = threading.Barrier(4)
    results: list = []

    def send():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        barrier.wait()
        try:
            response = client.post(URL, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="race")
            results.append((response.status_code, response.headers.get("Idempotent-Replayed"), response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then one broadcast, one record, and everybody got its 202 body
    assert [code for code, _, _ in results] == [202] * 4
    assert sum(1 for _, replayed, _ in results if replayed is None) == 1
    assert len({data["broadcast_id"] for _, _, data in results}) == 1
    assert (Broadcast.objects.count(), Send.objects.count(), IdempotencyRecord.objects.count()) == (1, 200, 1)
