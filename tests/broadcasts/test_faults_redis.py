"""Redis faults mid-broadcast with a real worker and beat: restarted, down for 20 s, flushed (docs/rules.md)."""

import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from tests.delivery_support import (
    CeleryProcess,
    broadcast_make,
    broadcast_settled,
    max_in_any_second,
    numbers,
    redis_kill,
    redis_start,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def processes(worker_env, delivery_settings):
    """A worker and a beat of this test's own (the session worker is not to be disturbed)."""
    started = {
        "worker": CeleryProcess("worker", env=worker_env, concurrency=2).start(),
        "beat": CeleryProcess("beat", env=worker_env).start(),
    }
    yield started
    for kind, process in started.items():
        # Kept for a post-mortem (the process's own log file goes with it).
        Path(tempfile.gettempdir(), f"faults-{kind}.log").write_text(process.log())
        process.stop()


def _assert_all_final_once(broadcast, sandbox, recipients) -> list[Send]:
    broadcast.refresh_from_db()
    sends = list(Send.objects.filter(broadcast=broadcast))
    statuses = Counter(s.status for s in sends)
    assert statuses == {"SENT": len(recipients)}, statuses
    assert broadcast.status == "COMPLETED"
    posts = Counter(r["to"] for r in sandbox.requests())
    assert set(posts) == {n.lstrip("+") for n in recipients}
    # Every answer came back from the (healthy) Graph API: no outcome is unknown, so no number got two POSTs.
    assert max(posts.values()) == 1, [n for n, c in posts.items() if c > 1]
    assert sum(s.unknown_outcomes for s in sends) == 0
    return sends


def test_redis_killed_and_restarted_mid_broadcast(channel, template, delivery_sandbox, processes):
    # Given a broadcast of 400 going out at 80/s through a real worker and beat
    channel.max_mps = 80
    channel.save()
    recipients = numbers(400)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(80, timeout=15)

    # When Redis is killed (SIGKILL) and started again, empty, on the same port 1 s later
    redis_kill()
    time.sleep(1.0)
    redis_start()

    # Then, with no process restarted by hand, every send ends SENT, none posted twice without an unknown outcome
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=45, interval=0.5, message="broadcast settled")
    for name, process in processes.items():
        assert process.alive(), f"{name} died:\n{process.log()[-4000:]}"
    _assert_all_final_once(broadcast, delivery_sandbox, recipients)
    # and the cap held in every sliding second
    assert max_in_any_second([r["received_at"] for r in delivery_sandbox.requests()]) <= 80
    assert "Unrecoverable error" not in processes["worker"].log()


@pytest.mark.extended  # `make test-extended`: Redis killed and restarted mid-broadcast stays in `make test`
def test_redis_down_20_s_mid_broadcast_nothing_unpaced_then_everything_final(
    channel, template, delivery_sandbox, processes
):
    # Given a broadcast of 300 going out at 80/s through a real worker and beat
    channel.max_mps = 80
    channel.save()
    recipients = numbers(300)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(60, timeout=15)

    # When Redis (broker, limiter, number holds) is away for 20 s
    redis_kill()
    down_at = time.time()
    time.sleep(20)
    up_at = time.time()
    redis_start()

    # Then nothing was posted while the limiter was unreachable (slots granted before it went cannot outlive
    # their 0.12 s horizon), worker and beat rode it out, and every send ends SENT, once
    arrivals = [r["received_at"] for r in delivery_sandbox.requests()]
    assert [t for t in arrivals if down_at + 0.5 < t < up_at] == []
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=30, interval=0.5, message="broadcast settled")
    for name, process in processes.items():
        assert process.alive(), f"{name} died:\n{process.log()[-4000:]}"
    _assert_all_final_once(broadcast, delivery_sandbox, recipients)
    assert max_in_any_second([r["received_at"] for r in delivery_sandbox.requests()]) <= 80


@pytest.fixture
def two_pumps(worker_env, delivery_settings):
    """A worker (two processes) and a beat whose channels are served by two pumps at once: what a flush brings
    about anyway (it empties the channel's running places, and the sweeper starts a second pump beside the first)."""
    env = {**worker_env, "DELIVERY_CHANNEL_PARALLELISM": "2"}
    started = {
        "worker": CeleryProcess("worker", env=env, concurrency=2).start(),
        "beat": CeleryProcess("beat", env=env).start(),
    }
    yield started
    for process in started.values():
        process.stop()


def test_redis_flushed_between_grants_the_cap_holds_at_the_receiving_end(
    channel, template, delivery_sandbox, two_pumps
):
    # Given a broadcast of 240 going out at 20/s (paced at 18/s) from two pumps sharing the channel's schedule
    channel.max_mps = 20
    channel.save()
    recipients = numbers(240)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    delivery_sandbox.wait_for_requests(20, timeout=15)

    # When Redis is emptied (FLUSHALL) six times, 0.6 s apart, each while slots granted before it are still to go
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    for _ in range(6):
        client.flushall()
        time.sleep(0.6)

    # Then every send ends SENT, once (beat's sweeper finds what the broker forgot), and the Graph API never
    # received more than 20 in any sliding second
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=60, interval=0.5, message="broadcast settled")
    for name, process in two_pumps.items():
        assert process.alive(), f"{name} died:\n{process.log()[-4000:]}"
    _assert_all_final_once(broadcast, delivery_sandbox, recipients)
    assert max_in_any_second([r["received_at"] for r in delivery_sandbox.requests()]) <= 20
