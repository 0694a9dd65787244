"""Retention (docs/operations.md): beat purges the sends of broadcasts that ended RETENTION_DAYS ago, in bounded
batches;
the broadcast keeps its counts and error_rate and shows purged_at; nothing pending is ever purged."""

from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts import retention, services
from broadcasts.delivery.outcomes import OutcomeRow, sends_record
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.counts_support import assert_counts_exact
from tests.broadcasts.test_api_create import payload

pytestmark = pytest.mark.django_db


def _ended(org, channel, *, n: int, days_ago: float, status=BroadcastStatus.COMPLETED) -> Broadcast:
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        result = services.broadcast_create(organization=org, body=payload(channel, n=n))
    broadcast = Broadcast.objects.get(pk=result.body["broadcast_id"])
    ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
    now = timezone.now()
    rows = [OutcomeRow(id=i, status=SendStatus.SENT, message_id=f"wamid.r{i}", sent_at=now) for i in ids[1:]]
    rows.append(OutcomeRow(id=ids[0], status=SendStatus.FAILED, error_code="131026", failed_at=now))
    sends_record(rows=rows)
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status, completed_at=now - timedelta(days=days_ago))
    return Broadcast.objects.get(pk=broadcast.pk)


def test_purge_deletes_old_sends_in_batches_and_keeps_counts_and_error_rate(api, org, channel, template, settings):
    # Given a broadcast that ended 91 days ago (RETENTION_DAYS 90) and one that ended 89 days ago
    settings.RETENTION_DAYS = 90
    old = _ended(org, channel, n=12, days_ago=91)
    recent = _ended(org, channel, n=3, days_ago=89)
    before = api.get(f"/v1/messages/bulk/{old.id}").json()

    # When beat's purge runs with batches of 5 sends
    with mock.patch.object(retention, "PURGE_BATCH", 5), CaptureQueriesContext(connection) as queries:
        done = retention.sends_purge_expired()

    # Then only the old broadcast's sends are gone, by DELETEs of at most 5 ids each
    assert done == {"broadcasts": 1, "sends": 12}
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3
    assert not Send.objects.filter(broadcast=old).exists()
    assert Send.objects.filter(broadcast=recent).count() == 3
    assert_counts_exact(recent)
    # and the broadcast keeps its counts and error rate, shows purged_at, and lists no recipients
    after = api.get(f"/v1/messages/bulk/{old.id}").json()
    assert (
        after["counts"]
        == before["counts"]
        == {
            "pending": 0,
            "sent": 11,
            "delivered": 0,
            "read": 0,
            "failed": 1,
            "cancelled": 0,
        }
    )
    assert after["error_rate"] == before["error_rate"] == round(1 / 12, 4)
    assert before["purged_at"] is None and after["purged_at"].endswith("Z")
    recipients = api.get(f"/v1/messages/bulk/{old.id}/recipients")
    assert recipients.status_code == 200 and recipients.json() == {"data": [], "next_cursor": None}
    listed = api.get("/v1/messages/bulk").json()["data"]
    assert {b["broadcast_id"]: b["purged_at"] is not None for b in listed} == {old.id: True, recent.id: False}
    # and a second run has nothing to do
    assert retention.sends_purge_expired() == {"broadcasts": 0, "sends": 0}


def test_a_short_retention_purges_sooner(org, channel, template, settings):
    settings.RETENTION_DAYS = 1
    broadcast = _ended(org, channel, n=2, days_ago=1.5, status=BroadcastStatus.CANCELLED)
    assert retention.sends_purge_expired() == {"broadcasts": 1, "sends": 2}
    assert Broadcast.objects.get(pk=broadcast.pk).purged_at is not None


def test_nothing_pending_is_ever_purged(org, channel, template, settings):
    # Given an old broadcast still running, and an old ended one with a send pending again
    settings.RETENTION_DAYS = 90
    running = _ended(org, channel, n=3, days_ago=100, status=BroadcastStatus.IN_PROGRESS)
    ended = _ended(org, channel, n=3, days_ago=100)
    Send.objects.filter(broadcast=ended, status=SendStatus.FAILED).update(status=SendStatus.PENDING)

    # When a purge of that broadcast runs anyway (its pending count was read before the send came back)
    assert retention.broadcast_sends_purge(broadcast_id=ended.id) == (2, False)
    assert retention.sends_purge_expired() == {"broadcasts": 0, "sends": 0}

    # Then the pending send is still there and the broadcast is not marked purged; the running one is untouched
    assert list(Send.objects.filter(broadcast=ended).values_list("status", flat=True)) == [SendStatus.PENDING]
    assert Broadcast.objects.get(pk=ended.pk).purged_at is None
    assert Send.objects.filter(broadcast=running).count() == 3


def test_a_run_stops_at_its_deadline_and_the_next_goes_on(org, channel, template, settings):
    settings.RETENTION_DAYS = 90
    first = _ended(org, channel, n=4, days_ago=95)
    second = _ended(org, channel, n=4, days_ago=94)
    assert retention.sends_purge_expired(max_seconds=-1) == {"broadcasts": 0, "sends": 0}
    assert retention.sends_purge_expired() == {"broadcasts": 2, "sends": 8}
    assert all(b.purged_at for b in Broadcast.objects.filter(pk__in=[first.pk, second.pk]))


def test_the_beat_task_is_scheduled_by_name(settings):
    from broadcasts import queue

    names = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert queue.RETENTION_PURGE in names
    assert settings.RETENTION_DAYS == 90
