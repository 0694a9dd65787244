"""POST /v1/messages/bulk/{id}/cancel|pause|resume over HTTP: 200 with the broadcast, 409 otherwise."""

from unittest import mock

import pytest

from broadcasts.models import Broadcast
from tests.broadcasts.test_api_create import URL, payload, post


@pytest.fixture
def broadcast_id(api, channel, template) -> str:
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        return post(api, payload(channel, n=3)).json()["broadcast_id"]


def test_pause_resume_cancel_round_trip(api, broadcast_id):
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        paused = api.post(f"{URL}/{broadcast_id}/pause")
        assert paused.status_code == 200
        assert paused.json()["status"] == "PAUSED" and paused.json()["paused_reason"]["code"] == "manual"

        assert api.post(f"{URL}/{broadcast_id}/pause").status_code == 409

        resumed = api.post(f"{URL}/{broadcast_id}/resume")
        assert resumed.status_code == 200
        assert resumed.json()["status"] == "PENDING" and resumed.json()["paused_reason"] is None
        assert api.post(f"{URL}/{broadcast_id}/resume").json()["error"]["code"] == "conflict"

        cancelled = api.post(f"{URL}/{broadcast_id}/cancel")
        assert cancelled.status_code == 200
        data = cancelled.json()
        assert data["status"] == "CANCELLED" and data["completed_at"]
        assert data["counts"]["cancelled"] == 3 and data["counts"]["pending"] == 0

        again = api.post(f"{URL}/{broadcast_id}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    assert Broadcast.objects.get(pk=broadcast_id).status == "CANCELLED"


def test_actions_take_no_body_and_reject_get(api, broadcast_id):
    response = api.get(f"{URL}/{broadcast_id}/cancel")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
