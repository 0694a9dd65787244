"""Pacing for real: the channel cap over a sliding one-second window, same-number spacing, scheduled starts."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.models import Broadcast, Send
from broadcasts.recovery import broadcasts_start_due
from broadcasts.tasks import enqueue_dispatch
from tests.delivery_support import (
    CeleryProcess,
    broadcast_make,
    broadcast_settled,
    max_in_any_second,
    numbers,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_channel_cap_holds_in_every_sliding_second(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given a channel capped at 20 messages/s and 100 recipients (both worker processes post for it)
    channel.max_mps = 20
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(100))
    started = time.time()

    # When it is sent
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=30)

    # Then no one-second window (sliding, over the sandbox's arrival times) holds more than 20 sends,
    # and the channel was still used at close to its cap
    arrivals = [r["received_at"] for r in delivery_sandbox.requests()]
    assert len(arrivals) == 100
    assert max_in_any_second(arrivals) <= 20
    assert delivery_sandbox.stats()["phone_numbers"][channel.phone_number_id]["max_in_one_second"] <= 20
    assert max(arrivals) - min(arrivals) < 100 / 20 * 1.15
    assert min(arrivals) - started < 1.0


def test_two_broadcasts_on_one_channel_share_its_cap_back_to_back(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given two broadcasts of 80 recipients each on one channel capped at 40 messages/s
    channel.max_mps = 40
    channel.save()
    first = broadcast_make(channel=channel, template=template, recipients=numbers(80))
    second = broadcast_make(channel=channel, template=template, recipients=numbers(80, start=80))

    # When both are sent at once
    enqueue_dispatch(first.id)
    enqueue_dispatch(second.id)
    wait_for(lambda: broadcast_settled(first.id) and broadcast_settled(second.id), timeout=30)

    # Then each recipient got exactly one POST, the two together never went over the cap in any second,
    # and the channel did not idle between them (the pump went on with the second broadcast at once)
    assert Broadcast.objects.get(id=first.id).status == "COMPLETED"
    assert Broadcast.objects.get(id=second.id).status == "COMPLETED"
    requests = delivery_sandbox.requests()
    assert sorted(r["to"] for r in requests) == sorted(n.lstrip("+") for n in numbers(160))
    arrivals = sorted(r["received_at"] for r in requests)
    assert max_in_any_second(arrivals) <= 40
    assert max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) < 0.25
    assert arrivals[-1] - arrivals[0] < 160 / 40 * 1.15


def test_same_number_is_spaced_six_seconds_but_not_dropped(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a broadcast listing one number twice, and another broadcast on the same channel with it again
    twice = "+573009990001"
    recipients = [twice, *numbers(3), twice]
    first = broadcast_make(channel=channel, template=template, recipients=recipients)

    # When both are sent at once
    enqueue_dispatch(first.id)

    # Then the number gets both messages (not de-duplicated), at least 6 s apart; the others go at once
    wait_for(lambda: broadcast_settled(first.id), timeout=30)
    assert Broadcast.objects.get(id=first.id).status == "COMPLETED"
    arrivals = sorted(r["received_at"] for r in delivery_sandbox.requests(to=twice.lstrip("+")))
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 6.0
    sends = Send.objects.filter(broadcast=first, to=twice)
    assert {s.status for s in sends} == {"SENT"}
    assert {s.attempts for s in sends} == {1}  # the deferral counted no attempt
    assert len(delivery_sandbox.requests()) == 5


def test_scheduled_broadcast_starts_on_time_never_early(
    channel, template, delivery_sandbox, worker, worker_env, delivery_settings
):
    # Given a broadcast scheduled 3 s ahead, a beat process (start_due every 1 s) and a premature dispatch
    scheduled_at = timezone.now() + timedelta(seconds=3)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(5), scheduled_at=scheduled_at)
    beat = CeleryProcess("beat", env=worker_env).start()
    try:
        enqueue_dispatch(broadcast.id)
        assert broadcasts_start_due() == []

        # When its time comes
        wait_for(lambda: broadcast_settled(broadcast.id), timeout=25, message="scheduled broadcast completed")
    finally:
        beat.stop()

    # Then nothing went out before scheduled_at, and the first send within 15 s after it
    arrivals = sorted(r["received_at"] for r in delivery_sandbox.requests())
    assert len(arrivals) == 5
    assert arrivals[0] >= scheduled_at.timestamp()
    assert arrivals[0] - scheduled_at.timestamp() < 15
    broadcast.refresh_from_db()
    assert broadcast.started_at >= scheduled_at


def test_start_due_starts_each_broadcast_once(channel, template, delivery_settings):
    # Given a due scheduled broadcast, a future one, and an unscheduled one whose dispatch was lost
    due = broadcast_make(
        channel=channel, template=template, recipients=numbers(1), scheduled_at=timezone.now() - timedelta(seconds=1)
    )
    future = broadcast_make(
        channel=channel, template=template, recipients=numbers(1), scheduled_at=timezone.now() + timedelta(hours=1)
    )
    lost = broadcast_make(channel=channel, template=template, recipients=numbers(1))
    Broadcast.objects.filter(id=lost.id).update(created_at=timezone.now() - timedelta(minutes=1))

    # When beat runs twice
    first = broadcasts_start_due()
    second = broadcasts_start_due()

    # Then the due and the lost one start, once; the future one waits
    assert sorted(first) == sorted([due.id, lost.id])
    assert second == []
    assert Broadcast.objects.get(id=future.id).status == "PENDING"
    assert Broadcast.objects.get(id=due.id).status == "IN_PROGRESS"
