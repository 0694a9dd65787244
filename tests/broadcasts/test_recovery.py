"""Recovery: a killed worker, an emptied Redis, expired leases, scheduled starts; the database is the truth."""

import time
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from broadcasts.counts import counts_rebuild
from broadcasts.delivery.recovery import broadcasts_start_due, broadcasts_sweep, sends_recover_expired
from broadcasts.models import Broadcast, Send
from broadcasts.queue import enqueue_dispatch
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import CeleryProcess, broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sweep_until_settled(broadcast, *, timeout: float) -> None:
    """What beat does, from this process: sweep every second until the broadcast is final."""
    deadline = time.monotonic() + timeout
    while not broadcast_settled(broadcast.id):
        if time.monotonic() > deadline:
            rows = Counter(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True))
            raise AssertionError(f"not settled in {timeout}s: {Broadcast.objects.get(id=broadcast.id).status} {rows}")
        broadcasts_sweep()
        time.sleep(1.0)


def test_kill_9_mid_broadcast_loses_nothing_and_repeats_only_unknown_outcomes(
    channel, template, delivery_sandbox, worker, delivery_settings, _session_worker, worker_env
):
    # Given a broadcast in full flight on a slow API (300 ms per answer)
    delivery_sandbox.config(latency_ms=300)
    channel.max_mps = 40
    channel.save()
    recipients = numbers(120)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(30, timeout=15)

    # When the worker (main process and pool children) is killed with SIGKILL, then started again
    worker.kill_hard()
    in_flight = Send.objects.filter(broadcast=broadcast, status="PENDING", posting_at__isnull=False).count()
    _session_worker["worker"] = CeleryProcess("worker", env=worker_env, concurrency=2).start()

    # Then (with the sweeper running) every send ends SENT, none lost
    _sweep_until_settled(broadcast, timeout=60)
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED"
    sends = list(Send.objects.filter(broadcast=broadcast))
    assert {s.status for s in sends} == {"SENT"}
    assert len(sends) == 120
    # and a number got a second POST only where an unknown outcome was counted
    posts = Counter(r["to"] for r in delivery_sandbox.requests())
    assert set(posts) == {n.lstrip("+") for n in recipients}
    for send in sends:
        if posts[send.to.lstrip("+")] > 1:
            assert send.unknown_outcomes >= posts[send.to.lstrip("+")] - 1, send
        assert send.attempts == posts[send.to.lstrip("+")] or send.unknown_outcomes > 0
    assert in_flight > 0  # the kill really caught POSTs in flight
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 120
    assert sum(s.unknown_outcomes for s in sends) >= sum(c - 1 for c in posts.values())


def test_redis_flushall_mid_broadcast_every_send_still_ends(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a broadcast going out at 20/s, with most chunks still waiting in the broker
    channel.max_mps = 20
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(120))
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(10, timeout=10)

    # When Redis is emptied (broker queue, rate buckets, number holds, wake and fan-out marks: all gone)
    redis.Redis.from_url(settings.REDIS_URL).flushall()

    # Then the sweeper finds the work again from the rows: every send final within 2 minutes, one POST each
    _sweep_until_settled(broadcast, timeout=120)
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED"
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {"SENT"}
    posts = Counter(r["to"] for r in delivery_sandbox.requests())
    assert len(posts) == 120
    assert max(posts.values()) == 1


def test_expired_lease_counts_unknown_outcome_only_when_the_post_may_have_left(channel, template, delivery_settings):
    # Given three leased sends whose worker died: one marked as posting, one claimed but never posted,
    # and one posting on its 6th attempt
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(4), status="IN_PROGRESS")
    posting, claimed, last, live = Send.objects.filter(broadcast=broadcast).order_by("index")
    past = timezone.now() - timedelta(seconds=1)
    Send.objects.filter(id=posting.id).update(attempts=2, lease_expires_at=past, posting_at=past)
    Send.objects.filter(id=claimed.id).update(attempts=1, lease_expires_at=past)
    Send.objects.filter(id=last.id).update(attempts=6, lease_expires_at=past, posting_at=past)
    Send.objects.filter(id=live.id).update(attempts=1, lease_expires_at=timezone.now() + timedelta(seconds=30))

    # When the sweeper takes expired leases back
    recovered = sends_recover_expired()

    # Then the posting one counts an unknown outcome and keeps its attempt; the unposted one gets its attempt
    # back; the exhausted one fails as a timeout; the live one is left to its worker
    assert recovered == {broadcast.id}
    posting.refresh_from_db(), claimed.refresh_from_db(), last.refresh_from_db(), live.refresh_from_db()
    assert (posting.status, posting.attempts, posting.unknown_outcomes, posting.lease_expires_at) == (
        "PENDING",
        2,
        1,
        None,
    )
    assert (claimed.status, claimed.attempts, claimed.unknown_outcomes) == ("PENDING", 0, 0)
    assert (last.status, last.error_code, last.unknown_outcomes) == ("FAILED", "timeout", 1)
    assert live.lease_expires_at is not None and live.attempts == 1


def test_expired_leases_are_judged_on_the_database_clock_not_the_sweepers(
    channel, template, delivery_settings, monkeypatch
):
    # Given a live lease (database's now + 30 s) and an expired one (database's now - 1 s)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    live, expired = Send.objects.filter(broadcast=broadcast).order_by("index")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        db_now = cursor.fetchone()[0]
    Send.objects.filter(id=live.id).update(attempts=1, lease_expires_at=db_now + timedelta(seconds=30))
    Send.objects.filter(id=expired.id).update(attempts=1, lease_expires_at=db_now - timedelta(seconds=1))

    # When the sweeper runs on a machine whose clock is an hour ahead
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))
    recovered = sends_recover_expired()

    # Then only the lease expired on the database's clock is taken back
    assert recovered == {broadcast.id}
    live.refresh_from_db(), expired.refresh_from_db()
    assert live.lease_expires_at is not None and live.attempts == 1
    assert expired.lease_expires_at is None and expired.attempts == 0


def test_sweeper_finishes_a_broadcast_nobody_finished(channel, template, delivery_settings):
    # Given an IN_PROGRESS broadcast whose sends are all final (the worker died before finishing it)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2), status="IN_PROGRESS")
    Send.objects.filter(broadcast=broadcast).update(status="SENT", message_id="wamid.x")
    counts_rebuild(broadcast_ids=[broadcast.id])

    # When the sweeper runs
    result = broadcasts_sweep()

    # Then the broadcast is COMPLETED, once
    assert result["dispatched"] == 1
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED" and broadcast.completed_at is not None
    completed_at = broadcast.completed_at
    broadcasts_sweep()
    broadcast.refresh_from_db()
    assert broadcast.completed_at == completed_at


def test_database_restart_mid_broadcast_every_send_still_ends_once(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    import os
    import subprocess

    from django.db import connection

    # Given a broadcast going out at 20/s
    channel.max_mps = 20
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(80))
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(10, timeout=10)

    # When PostgreSQL restarts under it (every connection cut)
    data_dir = os.path.join(os.environ["TEST_SERVICES_DIR"], "pg")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = os.path.join(os.environ["TEST_PG_BINDIR"], "pg_ctl")
    log = os.path.join(os.environ["TEST_SERVICES_DIR"], "pg.log")
    # The server's output goes to its log: a pipe held open by postgres would block us forever.
    subprocess.run(
        [*as_postgres, pg_ctl, "-D", data_dir, "-l", log, "-m", "fast", "-w", "-t", "60", "restart"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=90,
    )
    connection.close()

    # Then every send still ends SENT, and only sends with a counted unknown outcome were POSTed twice
    _sweep_until_settled(broadcast, timeout=90)
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED"
    sends = list(Send.objects.filter(broadcast=broadcast))
    assert {s.status for s in sends} == {"SENT"}
    posts = Counter(r["to"] for r in delivery_sandbox.requests())
    assert len(posts) == 80
    for send in sends:
        assert posts[send.to.lstrip("+")] == 1 or send.unknown_outcomes > 0, send
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == 80


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
