"""Fan-out: dispatch starts a broadcast, enqueues its chunk tasks, and finishes one with nothing to send."""

import pytest

from broadcasts.counts import counts_rebuild
from broadcasts.models import Send
from tests.delivery_support import broadcast_make, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_broadcast_whose_sends_all_failed_before_sending_ends_failed_once(channel, template, delivery_settings):
    from broadcasts.delivery.dispatch import broadcast_dispatch
    from broadcasts.lifecycle import broadcast_finalize

    # Given a broadcast whose every recipient lacked a variable (FAILED at creation, never posted)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(3))
    Send.objects.filter(broadcast=broadcast).update(status="FAILED", error_code="missing_variables")
    counts_rebuild(broadcast_ids=[broadcast.id])

    # When it is dispatched
    chunks = broadcast_dispatch(broadcast_id=broadcast.id)

    # Then nothing is enqueued and it ends FAILED at once, exactly once
    assert chunks == 0
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.started_at is not None, broadcast.completed_at is not None) == (
        "FAILED",
        True,
        True,
    )
    assert broadcast_finalize(broadcast_id=broadcast.id) is None


def test_wakes_asked_from_machines_with_skewed_clocks_keep_one_chain(monkeypatch, delivery_settings):
    import threading
    import time
    from datetime import timedelta

    from django.utils import timezone

    from broadcasts import queue
    from broadcasts.delivery import dispatch

    # Given a broadcast whose wakes are asked by a machine 5 s ahead and by one on time
    sent: list[tuple[str, float, float]] = []
    monkeypatch.setattr(queue, "dispatch_at", lambda b, *, wake_at, countdown: sent.append((b, wake_at, countdown)))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + (5.0 if threading.current_thread().name == "ahead" else 0))
    results = []

    def ask(seconds: float) -> None:
        results.append(dispatch.broadcast_wake(broadcast_id="skewed-b", at=timezone.now() + timedelta(seconds=seconds)))

    # When the machine ahead asks for a wake in 1 s, then the one on time for a later one (3 s)
    thread = threading.Thread(target=ask, args=(1.0,), name="ahead")
    thread.start()
    thread.join()
    ask(3.0)

    # Then only the first is scheduled (an earlier wake is pending), and its time is Redis's clock + 1 s
    assert results == [True, False]
    assert len(sent) == 1
    redis_now = sum(int(x) * f for x, f in zip(dispatch.redis_client().time(), (1, 1e-6), strict=True))
    assert abs(sent[0][1] - (redis_now + 1.0)) < 0.5
