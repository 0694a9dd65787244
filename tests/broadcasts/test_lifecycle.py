"""broadcasts/lifecycle.py: each status change of a broadcast, written once, and what it does to the sends."""

from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from broadcasts import lifecycle
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.counts_support import sends_update
from tests.delivery_support import broadcast_make, numbers

pytestmark = pytest.mark.django_db


@pytest.fixture
def broadcast(channel, template) -> Broadcast:
    return broadcast_make(channel=channel, template=template, recipients=numbers(4))


def _locked(broadcast: Broadcast) -> Broadcast:
    return Broadcast.objects.select_for_update().get(pk=broadcast.pk)


def test_start_is_idempotent_and_keeps_the_first_start(broadcast):
    # Given a PENDING broadcast started once
    first_at = timezone.now()
    assert lifecycle.broadcasts_start(broadcast_ids=[broadcast.id], now=first_at) == 1

    # When it is started again (a second dispatch, beat)
    again = lifecycle.broadcasts_start(broadcast_ids=[broadcast.id], now=first_at + timedelta(seconds=5))

    # Then nothing changes: IN_PROGRESS since the first start
    broadcast.refresh_from_db()
    assert again == 0
    assert (broadcast.status, broadcast.started_at) == (BroadcastStatus.IN_PROGRESS, first_at)


def test_start_never_starts_a_scheduled_broadcast_early(channel, template):
    now = timezone.now()
    later = broadcast_make(channel=channel, template=template, recipients=numbers(1), scheduled_at=now + timedelta(1))
    due = broadcast_make(channel=channel, template=template, recipients=numbers(1), scheduled_at=now)

    assert lifecycle.broadcasts_start(broadcast_ids=[later.id, due.id], now=now) == 1

    assert Broadcast.objects.get(pk=later.pk).status == BroadcastStatus.PENDING
    assert Broadcast.objects.get(pk=due.pk).status == BroadcastStatus.IN_PROGRESS


@pytest.mark.parametrize("status", [BroadcastStatus.PAUSED, BroadcastStatus.CANCELLED, BroadcastStatus.COMPLETED])
def test_start_leaves_a_broadcast_that_is_not_pending(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    assert lifecycle.broadcasts_start(broadcast_ids=[broadcast.id], now=timezone.now()) == 0
    assert Broadcast.objects.get(pk=broadcast.pk).status == status


def test_cancel_clears_lease_posting_marker_and_retry_time_of_the_sends_it_cancels(
    broadcast, django_capture_on_commit_callbacks
):
    # Given a running broadcast: one send held by a live worker, one whose worker died while posting, one waiting
    # for a retry, one free
    now = timezone.now()
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    live, dead, retry, free = Send.objects.filter(broadcast=broadcast).order_by("index")
    Send.objects.filter(pk=live.pk).update(lease_expires_at=now + timedelta(seconds=30), posting_at=now)
    Send.objects.filter(pk=dead.pk).update(lease_expires_at=now - timedelta(seconds=1), posting_at=now)
    Send.objects.filter(pk=retry.pk).update(next_attempt_at=now + timedelta(seconds=30))

    # When it is cancelled
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert lifecycle.broadcast_cancel(broadcast=_locked(broadcast))

    # Then it is CANCELLED; every send no worker holds is CANCELLED with no lease, marker or retry time left
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.CANCELLED and broadcast.completed_at is not None
    rows = {
        s["id"]: s
        for s in Send.objects.filter(broadcast=broadcast).values(
            "id", "status", "lease_expires_at", "posting_at", "next_attempt_at"
        )
    }
    for send in (dead, retry, free):
        assert rows[send.pk] == {
            "id": send.pk,
            "status": SendStatus.CANCELLED,
            "lease_expires_at": None,
            "posting_at": None,
            "next_attempt_at": None,
        }
    # the live worker's send is left to it
    assert rows[live.pk]["status"] == SendStatus.PENDING and rows[live.pk]["lease_expires_at"] is not None
    # and after commit the answer waits for the posting fence (it was running), then broadcast.cancelled is published
    assert [c.__qualname__.split(".")[0] for c in callbacks] == ["_posting_fence", "broadcast_cancel"]


def test_cancel_of_a_broadcast_that_never_ran_has_no_fence(broadcast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert lifecycle.broadcast_cancel(broadcast=_locked(broadcast))
    # no fence (nothing was posting), only the broadcast.cancelled event after commit
    assert [c.__qualname__.split(".")[0] for c in callbacks] == ["broadcast_cancel"]
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {SendStatus.CANCELLED}


@pytest.mark.parametrize("status", [BroadcastStatus.COMPLETED, BroadcastStatus.FAILED, BroadcastStatus.CANCELLED])
def test_cancel_refuses_an_ended_broadcast_and_changes_nothing(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
    assert not lifecycle.broadcast_cancel(broadcast=_locked(broadcast))
    assert Broadcast.objects.get(pk=broadcast.pk).status == status
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.PENDING).count() == 4


def test_the_fence_waits_fence_seconds_after_commit(broadcast, django_capture_on_commit_callbacks):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    with (
        mock.patch("broadcasts.lifecycle.time.sleep") as sleep,
        mock.patch("broadcasts.lifecycle.broadcast_event_publish"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert lifecycle.broadcast_pause(broadcast=_locked(broadcast))
    sleep.assert_called_once_with(lifecycle.FENCE_SECONDS)


def test_the_posting_permit_ends_before_the_fence():
    from broadcasts.delivery.claims import POST_PERMIT_SECONDS

    assert POST_PERMIT_SECONDS < lifecycle.FENCE_SECONDS


def test_the_engines_pause_keeps_metas_reason_publishes_and_does_not_wait(
    broadcast, django_capture_on_commit_callbacks
):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    reason = {"code": "190", "message": "Token expired."}
    with (
        mock.patch("broadcasts.lifecycle.time.sleep") as sleep,
        mock.patch("broadcasts.lifecycle.broadcast_event_publish") as publish,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert lifecycle.broadcast_pause_for_account_error(broadcast_id=broadcast.id, reason=reason)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.paused_reason) == (BroadcastStatus.PAUSED, reason)
    publish.assert_called_once_with(broadcast_id=broadcast.id, event_type="broadcast.paused")
    sleep.assert_not_called()


@pytest.mark.parametrize("status", [BroadcastStatus.PAUSED, BroadcastStatus.CANCELLED, BroadcastStatus.COMPLETED])
def test_the_engines_pause_leaves_a_broadcast_someone_else_stopped(broadcast, status):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status, paused_reason=None)
    reason = {"code": "190", "message": "Token expired."}
    assert not lifecycle.broadcast_pause_for_account_error(broadcast_id=broadcast.id, reason=reason)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.paused_reason) == (status, None)


@pytest.mark.parametrize(
    ("started", "expected"), [(True, BroadcastStatus.IN_PROGRESS), (False, BroadcastStatus.PENDING)]
)
def test_resume_goes_back_to_where_the_broadcast_was(broadcast, started, expected):
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.PAUSED,
        started_at=timezone.now() if started else None,
        paused_reason={"code": "manual", "message": "x"},
    )
    locked = _locked(broadcast)
    assert lifecycle.broadcast_resume(broadcast=locked)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.paused_reason) == (expected, None)
    assert not lifecycle.broadcast_resume(broadcast=_locked(broadcast))


def test_finalize_completes_once_when_nothing_is_pending(broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    sends_update(Send.objects.filter(broadcast=broadcast, index=0), status=SendStatus.SENT, message_id="wamid.1")
    sends_update(Send.objects.filter(broadcast=broadcast, index__gt=0), status=SendStatus.FAILED)
    with mock.patch("broadcasts.lifecycle.broadcast_event_publish") as publish:
        assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) == BroadcastStatus.COMPLETED
        assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) is None
    publish.assert_called_once_with(broadcast_id=broadcast.id, event_type="broadcast.completed")


def test_finalize_waits_for_pending_sends_and_fails_a_broadcast_meta_accepted_nothing_of(broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    sends_update(Send.objects.filter(broadcast=broadcast, index__gt=0), status=SendStatus.FAILED)
    assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) is None
    sends_update(Send.objects.filter(broadcast=broadcast), status=SendStatus.FAILED)
    with mock.patch("broadcasts.lifecycle.broadcast_event_publish"):
        assert lifecycle.broadcast_finalize(broadcast_id=broadcast.id) == BroadcastStatus.FAILED
