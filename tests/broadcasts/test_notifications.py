"""The events of broadcasts (broadcasts/notifications.py), handed to the outbox: free when nobody listens,
bulk when someone does, one task per endpoint."""

import pytest

from broadcasts.counts import counts_rebuild
from broadcasts.models import BroadcastStatus, Send, SendStatus
from broadcasts.notifications import broadcast_event_publish, message_events_publish, message_events_record
from events.models import Event, EventDelivery
from tests.broadcasts.counts_support import sends_update
from tests.events import conftest as events_conftest
from tests.events.helpers import broadcast_with_sends

# The outbox's fixtures (endpoints through the service, queued tasks recorded instead of sent).
allow_private = events_conftest.allow_private
endpoint_for = events_conftest.endpoint_for
enqueued = events_conftest.enqueued


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=300)


def send_ids(broadcast):
    return list(broadcast.sends.order_by("index").values_list("id", flat=True))


def test_no_endpoint_means_no_query_and_no_row(broadcast, django_assert_max_num_queries, enqueued):
    ids = send_ids(broadcast)
    message_events_publish(send_ids=ids, status="SENT")  # warms the cache of active endpoints
    with django_assert_max_num_queries(0):
        message_events_publish(send_ids=ids, status="SENT")
        broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.completed")
    assert not Event.objects.exists()
    assert enqueued == []


def test_a_chunk_is_written_in_bulk_with_one_task_per_endpoint(
    org, broadcast, endpoint_for, enqueued, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    # Given two endpoints of the organization, one subscribed only to failures
    everything, _ = endpoint_for(org, "http://127.0.0.1:9/all")
    failures, _ = endpoint_for(org, "http://127.0.0.1:9/failed", events=["message.failed"])
    ids = send_ids(broadcast)
    # When a chunk of 300 sends is published as SENT: endpoints, sends, two bulk INSERTs (+ savepoint)
    with django_capture_on_commit_callbacks(execute=True):
        with django_assert_max_num_queries(6):
            message_events_publish(send_ids=ids, status="SENT")
    # Then 300 events and 300 deliveries (only to the endpoint that wants them), one task queued
    assert Event.objects.filter(type="message.sent").count() == 300
    assert EventDelivery.objects.filter(endpoint=everything).count() == 300
    assert not EventDelivery.objects.filter(endpoint=failures).exists()
    assert enqueued == [everything.id]


def test_failed_events_carry_the_error(org, broadcast, endpoint_for, enqueued):
    endpoint_for(org, "http://127.0.0.1:9/all")
    send = broadcast.sends.get(index=7)
    sends_update(
        Send.objects.filter(id=send.id),
        status=SendStatus.FAILED,
        error_code="missing_variables",
        error_message="monto is missing",
        error_retryable=False,
    )
    message_events_publish(send_ids=[send.id], status="FAILED")
    event = Event.objects.get()
    assert event.type == "message.failed"
    assert event.data["status"] == "FAILED"
    assert event.data["error"] == {"code": "missing_variables", "message": "monto is missing", "retryable": False}
    assert event.ordering_key == f"send:{send.id}"


def test_another_organizations_endpoint_gets_nothing(other_org, broadcast, endpoint_for, enqueued):
    endpoint_for(other_org, "http://127.0.0.1:9/other")
    message_events_publish(send_ids=send_ids(broadcast), status="DELIVERED")
    broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.paused")
    assert not Event.objects.exists()
    assert enqueued == []


def test_broadcast_completed_has_counts_and_error_rate(org, broadcast, endpoint_for, enqueued):
    endpoint_for(org, "http://127.0.0.1:9/all")
    sends_update(Send.objects.filter(broadcast=broadcast, index__lt=30), status=SendStatus.FAILED)
    sends_update(Send.objects.filter(broadcast=broadcast, index__gte=290), status=SendStatus.READ)
    broadcast.status = BroadcastStatus.COMPLETED
    broadcast.save()
    broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.completed")
    event = Event.objects.get()
    assert event.type == "broadcast.completed"
    assert event.data["broadcast_id"] == broadcast.id
    assert event.data["status"] == "COMPLETED"
    assert event.data["counts"] == {"pending": 0, "sent": 260, "delivered": 0, "read": 10, "failed": 30, "cancelled": 0}
    assert event.data["error_rate"] == 0.1
    assert "completed_at" in event.data


def test_cancelling_a_broadcast_publishes_broadcast_cancelled_with_its_counts(
    org, broadcast, endpoint_for, enqueued, django_capture_on_commit_callbacks
):
    # Given an endpoint and a running broadcast whose first 100 sends went out
    from broadcasts.lifecycle import broadcast_cancel

    endpoint_for(org, "http://127.0.0.1:9/all")
    Send.objects.filter(broadcast=broadcast, index__lt=100).update(status=SendStatus.SENT)
    Send.objects.filter(broadcast=broadcast, index__gte=100).update(status=SendStatus.PENDING, message_id=None)
    counts_rebuild(broadcast_ids=[broadcast.id])  # the rows were written behind the kept counts' back
    broadcast.refresh_from_db()
    broadcast.status = BroadcastStatus.IN_PROGRESS
    broadcast.save()
    # When it is cancelled (its after-commit work run: the posting fence's wait, then the event)
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = broadcast_cancel(broadcast=broadcast)
    # Then one broadcast.cancelled event carries the final status and the counts: 100 sent, 200 never posted
    assert cancelled
    event = Event.objects.get(type="broadcast.cancelled")
    assert event.data["status"] == "CANCELLED"
    assert event.data["counts"]["sent"] == 100 and event.data["counts"]["cancelled"] == 200
    assert event.data["completed_at"]


def test_unknown_statuses_and_event_types(broadcast, enqueued):
    message_events_publish(send_ids=send_ids(broadcast), status="PENDING")
    with pytest.raises(ValueError):
        broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.exploded")
    assert not Event.objects.exists()


@pytest.mark.parametrize("status", ["SENT", "FAILED"])
def test_message_events_carry_the_whole_payload(org, broadcast, endpoint_for, enqueued, status):
    # Given sends with an error title but no message (and one without meta_data), and one endpoint
    from events import endpoints

    endpoint_for(org, "http://127.0.0.1:9/all")
    sends_update(
        Send.objects.filter(broadcast=broadcast, index__lt=2),
        status=status,
        error_code="131026",
        error_title="Undeliverable",
        error_message="",
        error_retryable=False,
    )
    Send.objects.filter(broadcast=broadcast, index=1).update(meta_data=None)
    ids = send_ids(broadcast)[:2]
    # When their events are recorded
    assert message_events_record(send_ids=ids, status=status, endpoints=endpoints.endpoints_active()) == 2
    # Then each event is the contract's payload (the error only for FAILED, its message from the title)
    error = {"code": "131026", "message": "Undeliverable", "retryable": False} if status == "FAILED" else None
    sends = {s.id: s for s in Send.objects.filter(id__in=ids)}
    for event in Event.objects.order_by("ordering_key"):
        send = sends[int(event.ordering_key.removeprefix("send:"))]
        assert event.type == f"message.{status.lower()}"
        assert event.data == {
            "broadcast_id": broadcast.id,
            "index": send.index,
            "to": send.to,
            "message_id": send.message_id,
            "status": status,
            "error": error,
            "meta_data": send.meta_data,
        }
        assert event.id.startswith("evt_") and len(event.id) == 28
    assert EventDelivery.objects.count() == 2
