"""broadcast_create / cancel / pause / resume: the state rules the API, admin and engine share."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts import services
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from core.errors import ApplicationError, ConflictError, NotFoundError
from tests.broadcasts.counts_support import sends_update
from tests.broadcasts.test_api_create import payload


@pytest.fixture
def enqueue():
    with mock.patch("broadcasts.services.enqueue_dispatch") as enqueue:
        yield enqueue


@pytest.fixture
def broadcast(org, channel, template, enqueue) -> Broadcast:
    result = services.broadcast_create(organization=org, body=payload(channel, n=4))
    enqueue.reset_mock()
    return Broadcast.objects.get(pk=result.body["broadcast_id"])


def test_create_writes_sends_with_one_copy(org, channel, template, enqueue, django_capture_on_commit_callbacks):
    # given 300 recipients
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        result = services.broadcast_create(organization=org, body=payload(channel, n=300))
    # then the sends went in through one COPY, not 300 INSERTs, and dispatch ran after commit
    copies = [q for q in queries.captured_queries if q["sql"].startswith("COPY")]
    inserts = [q for q in queries.captured_queries if "INSERT" in q["sql"] and "broadcasts_send" in q["sql"]]
    assert len(copies) == 1 and not inserts
    assert Send.objects.filter(broadcast_id=result.body["broadcast_id"]).count() == 300
    enqueue.assert_called_once_with(result.body["broadcast_id"])


def test_create_enqueues_nothing_before_commit(org, channel, template, enqueue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.broadcast_create(organization=org, body=payload(channel, n=1))
    enqueue.assert_not_called()
    assert len(callbacks) == 1


def test_create_rejects_with_every_error(org, channel, template):
    with pytest.raises(ApplicationError) as caught:
        services.broadcast_create(organization=org, body={"recipients": [{"to": "x"}]})
    assert caught.value.code == "validation_error" and caught.value.status == 400
    assert set(caught.value.details) == {"template_name", "language", "channel_id", "recipients[0].to"}
    assert not Broadcast.objects.exists()


@pytest.mark.parametrize("status", [BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS, BroadcastStatus.PAUSED])
def test_cancel_moves_unleased_pending_sends(broadcast, status):
    # given a running broadcast: one send sent, one held by a worker, one whose lease expired, one free
    now = timezone.now()
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    sends_update(Send.objects.filter(broadcast=broadcast, index=0), status=SendStatus.SENT)
    Send.objects.filter(broadcast=broadcast, index=1).update(lease_expires_at=now + timedelta(seconds=30))
    Send.objects.filter(broadcast=broadcast, index=2).update(lease_expires_at=now - timedelta(seconds=1))

    # when cancelled
    cancelled = services.broadcast_cancel(broadcast_id=broadcast.id, organization=broadcast.organization)

    # then the broadcast is CANCELLED and only the sends no worker holds moved
    assert cancelled.status == BroadcastStatus.CANCELLED and cancelled.completed_at is not None
    statuses = list(Send.objects.filter(broadcast=broadcast).order_by("index").values_list("status", flat=True))
    assert statuses == ["SENT", "PENDING", "CANCELLED", "CANCELLED"]


@pytest.mark.parametrize("status", [BroadcastStatus.COMPLETED, BroadcastStatus.FAILED, BroadcastStatus.CANCELLED])
def test_cancel_of_an_ended_broadcast_is_a_conflict(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    with pytest.raises(ConflictError):
        services.broadcast_cancel(broadcast_id=broadcast.id)
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.PENDING).count() == 4


def test_cancel_locks_the_row(broadcast):
    with CaptureQueriesContext(connection) as queries:
        services.broadcast_cancel(broadcast_id=broadcast.id)
    assert any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)


def test_another_organizations_broadcast_is_not_found(broadcast, other_org):
    for service in (services.broadcast_cancel, services.broadcast_pause, services.broadcast_resume):
        with pytest.raises(NotFoundError):
            service(broadcast_id=broadcast.id, organization=other_org)


@pytest.mark.parametrize("status", [BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS])
def test_pause_records_a_manual_reason_and_publishes_after_commit(
    broadcast, status, django_capture_on_commit_callbacks
):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    with (
        mock.patch("broadcasts.lifecycle.broadcast_event_publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        paused = services.broadcast_pause(broadcast_id=broadcast.id)
    assert paused.status == BroadcastStatus.PAUSED and paused.paused_reason["code"] == "manual"
    publish.assert_called_once_with(broadcast_id=broadcast.id, event_type="broadcast.paused")


def test_pause_accepts_the_engines_reason(broadcast):
    reason = {"code": "131031", "message": "Account locked."}
    assert services.broadcast_pause(broadcast_id=broadcast.id, reason=reason).paused_reason == reason


@pytest.mark.parametrize(
    "status", [BroadcastStatus.PAUSED, BroadcastStatus.COMPLETED, BroadcastStatus.FAILED, BroadcastStatus.CANCELLED]
)
def test_pause_from_elsewhere_is_a_conflict(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    with pytest.raises(ConflictError):
        services.broadcast_pause(broadcast_id=broadcast.id)


def test_resume_of_a_started_broadcast_goes_on_in_progress(broadcast, enqueue, django_capture_on_commit_callbacks):
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.PAUSED, started_at=timezone.now(), paused_reason={"code": "manual", "message": "x"}
    )
    with django_capture_on_commit_callbacks(execute=True):
        resumed = services.broadcast_resume(broadcast_id=broadcast.id)
    assert resumed.status == BroadcastStatus.IN_PROGRESS and resumed.paused_reason is None
    enqueue.assert_called_once_with(broadcast.id)


def test_resume_of_a_never_started_due_broadcast_is_pending_and_dispatched(
    broadcast, enqueue, django_capture_on_commit_callbacks
):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.PAUSED)
    with django_capture_on_commit_callbacks(execute=True):
        resumed = services.broadcast_resume(broadcast_id=broadcast.id)
    assert resumed.status == BroadcastStatus.PENDING
    enqueue.assert_called_once_with(broadcast.id)


def test_resume_of_a_future_scheduled_broadcast_waits_for_beat(broadcast, enqueue, django_capture_on_commit_callbacks):
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.PAUSED, scheduled_at=datetime.now(UTC) + timedelta(hours=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        resumed = services.broadcast_resume(broadcast_id=broadcast.id)
    assert resumed.status == BroadcastStatus.PENDING
    enqueue.assert_not_called()


@pytest.mark.parametrize(
    "status",
    [BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS, BroadcastStatus.COMPLETED, BroadcastStatus.CANCELLED],
)
def test_resume_from_elsewhere_is_a_conflict(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    with pytest.raises(ConflictError):
        services.broadcast_resume(broadcast_id=broadcast.id)


def test_losing_an_idempotency_race_replays_the_winner(org, channel, template, enqueue):
    # given a winner that committed the key between our lookup and our insert
    winner = services.broadcast_create(organization=org, body=payload(channel, n=2), idempotency_key="k")
    real_replay = services.idempotency_replay
    calls = []

    def replay_missing_first(**kwargs):
        calls.append(kwargs)
        return None if len(calls) == 1 else real_replay(**kwargs)

    # when the loser inserts, the unique constraint refuses it
    with mock.patch("broadcasts.services.idempotency_replay", side_effect=replay_missing_first):
        loser = services.broadcast_create(organization=org, body=payload(channel, n=2), idempotency_key="k")

    # then it answers the winner's body, and its own rows were rolled back
    assert loser.replayed and loser.body == winner.body and len(calls) == 2
    assert Broadcast.objects.count() == 1 and Send.objects.count() == 2
