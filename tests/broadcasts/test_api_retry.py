"""POST /v1/messages/bulk/{id}/retry: FAILED sends with ``retryable: true`` (of the given codes) are pending again,
with exact kept counts; the broadcast's status as docs/api.md says; 400 / 404 / 409 as for the other actions."""

from unittest import mock

import orjson
import pytest
from django.utils import timezone

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from events.models import Event
from tests.broadcasts.counts_support import assert_counts_exact, sends_update
from tests.delivery_support import broadcast_make, numbers
from tests.events import conftest as events_conftest

allow_private = events_conftest.allow_private
endpoint_for = events_conftest.endpoint_for
enqueued = events_conftest.enqueued

URL = "/v1/messages/bulk"

# index -> (status, code, retryable) of a broadcast that ran: what retry must and must not touch.
SENDS = {
    0: ("SENT", "", None),
    1: ("FAILED", "131049", True),
    2: ("FAILED", "131049", True),
    3: ("FAILED", "131026", False),
    4: ("FAILED", "130429", True),
    5: ("FAILED", "timeout", True),
    6: ("FAILED", "missing_variables", False),
    7: ("READ", "", None),
    8: ("FAILED", "131000", True),
    9: ("CANCELLED", "", None),
}


def ran(channel, template, *, status=BroadcastStatus.COMPLETED) -> Broadcast:
    """A broadcast whose sends ended as SENDS says, with kept counts to match."""
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(len(SENDS)), status=status)
    now = timezone.now()
    for index, (send_status, code, retryable) in SENDS.items():
        fields = {"status": send_status, "attempts": 3, "updated_at": now}
        if send_status in ("SENT", "READ"):
            fields.update(message_id=f"wamid.{index}", sent_at=now)
        if send_status == "FAILED":
            fields.update(
                error_code=code, error_title="t", error_message=f"m {code}", error_retryable=retryable, failed_at=now
            )
            if code == "131049":
                fields.update(message_id=f"wamid.{index}")  # failed by webhook after Meta accepted it
        sends_update(Send.objects.filter(broadcast=broadcast, index=index), **fields)
    if status in (BroadcastStatus.COMPLETED, BroadcastStatus.FAILED):
        Broadcast.objects.filter(id=broadcast.id).update(started_at=now, completed_at=now)
    elif status != BroadcastStatus.PENDING:
        Broadcast.objects.filter(id=broadcast.id).update(started_at=now)
    return Broadcast.objects.get(id=broadcast.id)


@pytest.fixture
def dispatched():
    with mock.patch("broadcasts.services.enqueue_dispatch") as enqueue:
        yield enqueue


_commit = {}


@pytest.fixture(autouse=True)
def _on_commit(django_capture_on_commit_callbacks):
    """Each request's after-commit work (the dispatch) runs when the request ends, as it would in production."""
    _commit["capture"] = django_capture_on_commit_callbacks


def retry(api, broadcast_id: str, body=None, **kwargs):
    with _commit["capture"](execute=True):
        if body is None and not kwargs:
            return api.post(f"{URL}/{broadcast_id}/retry")
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        content_type = kwargs.pop("content_type", "application/json")
        return api.post(f"{URL}/{broadcast_id}/retry", raw, content_type=content_type)


def pending_indexes(broadcast) -> list[int]:
    return sorted(Send.objects.filter(broadcast=broadcast, status="PENDING").values_list("index", flat=True))


def test_retry_by_code_requeues_exactly_those_retryable_failures(api, channel, template, dispatched):
    # Given a COMPLETED broadcast with failures of several codes
    broadcast = ran(channel, template)
    before = assert_counts_exact(broadcast)[broadcast.id]

    # When its 131049 failures are retried
    response = retry(api, broadcast.id, {"error_codes": ["131049"]})

    # Then exactly those two are PENDING again, attempts over, error and wamid cleared
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["retried"] == 2
    assert pending_indexes(broadcast) == [1, 2]
    for send in Send.objects.filter(broadcast=broadcast, index__in=[1, 2]):
        assert (send.attempts, send.error_code, send.error_message, send.error_retryable) == (0, "", "", None)
        assert send.message_id is None and send.failed_at is None and send.next_attempt_at is None
    # the broadcast runs again, completed_at cleared, and its kept counts moved exactly
    assert data["status"] == "IN_PROGRESS" and data["completed_at"] is None
    kept = assert_counts_exact(broadcast)[broadcast.id]
    assert kept == {**before, "failed": before["failed"] - 2, "pending": 2}
    assert data["counts"] == kept
    # and the workers are woken at once
    dispatched.assert_called_once_with(broadcast.id)


def test_retry_without_codes_requeues_every_retryable_failure(api, channel, template, dispatched):
    broadcast = ran(channel, template, status=BroadcastStatus.FAILED)
    response = retry(api, broadcast.id)
    assert response.status_code == 200
    assert response.json()["retried"] == 5
    assert pending_indexes(broadcast) == [1, 2, 4, 5, 8]  # ... 5 = "timeout" ran out of attempts
    assert sorted(Send.objects.filter(broadcast=broadcast, status="FAILED").values_list("index", flat=True)) == [3, 6]
    assert response.json()["status"] == "IN_PROGRESS"
    assert_counts_exact(broadcast)


def test_an_empty_object_or_null_codes_mean_every_retryable_failure(api, channel, template, dispatched):
    first = ran(channel, template)
    second = ran(channel, template)
    assert retry(api, first.id, {}).json()["retried"] == 5
    assert retry(api, second.id, {"error_codes": None}).json()["retried"] == 5


def test_several_codes_and_unknown_ones(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    response = retry(api, broadcast.id, {"error_codes": ["130429", "131026", "999999", "timeout"]})
    # 131026 is not retryable; 999999 matches nothing
    assert response.json()["retried"] == 2
    assert pending_indexes(broadcast) == [4, 5]
    assert_counts_exact(broadcast)


def test_nothing_to_retry_changes_nothing(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    response = retry(api, broadcast.id, {"error_codes": ["999999"]})
    assert response.status_code == 200
    assert response.json()["retried"] == 0
    after = Broadcast.objects.get(id=broadcast.id)
    assert after.status == "COMPLETED" and after.completed_at == broadcast.completed_at
    assert not dispatched.called
    assert_counts_exact(broadcast)


def test_a_paused_broadcast_requeues_but_stays_paused(api, channel, template, dispatched):
    broadcast = ran(channel, template, status=BroadcastStatus.PAUSED)
    Broadcast.objects.filter(id=broadcast.id).update(paused_reason={"code": "manual", "message": "m"})
    response = retry(api, broadcast.id, {"error_codes": ["131000"]})
    assert response.status_code == 200
    data = response.json()
    assert (data["status"], data["retried"], data["paused_reason"]["code"]) == ("PAUSED", 1, "manual")
    assert pending_indexes(broadcast) == [8]
    assert not dispatched.called  # nothing goes out before resume
    assert_counts_exact(broadcast)


def test_an_in_progress_broadcast_stays_in_progress_and_is_woken(api, channel, template, dispatched):
    broadcast = ran(channel, template, status=BroadcastStatus.IN_PROGRESS)
    response = retry(api, broadcast.id, {"error_codes": ["timeout"]})
    assert (response.json()["status"], response.json()["retried"]) == ("IN_PROGRESS", 1)
    dispatched.assert_called_once_with(broadcast.id)


def test_a_cancelled_broadcast_is_409_and_nothing_changes(api, channel, template, dispatched):
    broadcast = ran(channel, template, status=BroadcastStatus.CANCELLED)
    response = retry(api, broadcast.id)
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert pending_indexes(broadcast) == []
    assert_counts_exact(broadcast)


def test_a_purged_broadcast_is_409(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    Broadcast.objects.filter(id=broadcast.id).update(purged_at=timezone.now())
    response = retry(api, broadcast.id)
    assert response.status_code == 409 and "purged" in response.json()["error"]["message"]
    assert Send.objects.filter(broadcast=broadcast, status="FAILED").count() == 7


def test_another_organizations_broadcast_is_404(api, other_org, channel, template, dispatched):
    broadcast = ran(channel, template)
    Broadcast.objects.filter(id=broadcast.id).update(organization=other_org)
    response = retry(api, broadcast.id)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert pending_indexes(broadcast) == []


@pytest.mark.parametrize(
    "body",
    [
        {"error_codes": []},
        {"error_codes": "131049"},
        {"error_codes": [131049]},
        {"error_codes": [""]},
        {"error_codes": ["  "]},
        {"error_codes": [None]},
        {"error_codes": [["131049"]]},
        {"error_codes": [str(i) for i in range(51)]},
        {"error_codes": ["x" * 65]},
        {"error_code": ["131049"]},  # a typo must not retry every failure
        ["131049"],
        "131049",
    ],
)
def test_bad_bodies_are_400_validation_error_and_change_nothing(api, channel, template, dispatched, body):
    broadcast = ran(channel, template)
    response = retry(api, broadcast.id, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"]
    assert pending_indexes(broadcast) == []
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"


def test_fifty_codes_are_fine(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    response = retry(api, broadcast.id, {"error_codes": ["131049"] + [str(i) for i in range(49)]})
    assert response.status_code == 200 and response.json()["retried"] == 2


def test_malformed_json_and_other_media_types(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    assert retry(api, broadcast.id, b"{nope").json()["error"]["code"] == "invalid_json"
    response = retry(api, broadcast.id, b"error_codes=1", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert pending_indexes(broadcast) == []


def test_scope_and_token(make_token, channel, template, anon_api, dispatched):
    from rest_framework.test import APIClient

    broadcast = ran(channel, template)
    assert anon_api.post(f"{URL}/{broadcast.id}/retry").status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['templates:read'])}")
    response = client.post(f"{URL}/{broadcast.id}/retry")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    assert pending_indexes(broadcast) == []


def test_rate_limit_headers_and_get_refused(api, channel, template, dispatched):
    broadcast = ran(channel, template)
    response = retry(api, broadcast.id, {"error_codes": ["999999"]})
    assert "RateLimit" in response and "RateLimit-Policy" in response
    assert api.get(f"{URL}/{broadcast.id}/retry").status_code == 405


def test_a_new_completed_event_follows_when_it_ends_again(api, channel, template, dispatched, endpoint_for, enqueued):
    from broadcasts import lifecycle

    endpoint_for(channel.organization, "http://127.0.0.1:9/hook")
    broadcast = ran(channel, template)
    retry(api, broadcast.id, {"error_codes": ["131000"]})
    # The retried send fails again and the broadcast ends once more
    sends_update(Send.objects.filter(broadcast=broadcast, index=8), status=SendStatus.FAILED, error_code="131000")
    assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) == "COMPLETED"
    assert Event.objects.filter(type="broadcast.completed", data__broadcast_id=broadcast.id).count() == 1
    assert Broadcast.objects.get(id=broadcast.id).completed_at is not None


def test_the_schema_describes_retry_and_the_csv_format(anon_api, db):
    schema = orjson.loads(anon_api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    operation = schema["paths"]["/v1/messages/bulk/{broadcast_id}/retry"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "404", "409", "429"}
    assert "error_codes" in str(operation["requestBody"])
    recipients = schema["paths"]["/v1/messages/bulk/{broadcast_id}/recipients"]["get"]
    assert "format" in [p["name"] for p in recipients["parameters"]]
    assert "text/csv" in recipients["responses"]["200"]["content"]
