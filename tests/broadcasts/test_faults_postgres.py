"""PostgreSQL stopped while a pump holds Meta's answers (docs/rules.md: a known answer is never forgotten)."""

import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from broadcasts.models import Broadcast, Send
from broadcasts.queue import enqueue_dispatch
from tests.broadcasts.counts_support import assert_counts_exact
from tests.delivery_support import (
    CeleryProcess,
    broadcast_make,
    broadcast_settled,
    numbers,
    postgres_start,
    postgres_stop,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _processes(worker_env, **overrides):
    env = {**worker_env, **{name: str(value) for name, value in overrides.items()}}
    return {
        "worker": CeleryProcess("worker", env=env, concurrency=2).start(),
        "beat": CeleryProcess("beat", env=env).start(),
    }


def _stop(processes):
    for kind, process in processes.items():
        Path(tempfile.gettempdir(), f"faults-pg-{kind}.log").write_text(process.log())
        process.stop()


def _settled(broadcast_id) -> bool:
    try:
        return broadcast_settled(broadcast_id)
    except Exception:  # the test's own connection died with the server
        connection.close()
        return False


def _outage_during_last_flush(channel, template, sandbox, *, down_seconds: float, latency_ms: int = 1500):
    """40 sends at 20/s on a Graph API that answers in ``latency_ms``: PostgreSQL is stopped as soon as the last POST
    has arrived, so every answer still on its way comes back to a pump that cannot write it (the answers' delay must
    outlast a ``pg_ctl stop`` on a loaded machine)."""
    channel.max_mps = 20
    channel.save()
    sandbox.config(latency_ms=latency_ms)
    recipients = numbers(40)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    enqueue_dispatch(broadcast.id)
    sandbox.wait_for_requests(40, timeout=20)
    postgres_stop()
    time.sleep(down_seconds)
    postgres_start()
    connection.close()
    return broadcast, recipients


def _assert_every_send_sent_once(broadcast, sandbox, recipients):
    broadcast = Broadcast.objects.get(id=broadcast.id)
    assert broadcast.status == "COMPLETED"
    sends = list(Send.objects.filter(broadcast=broadcast))
    assert Counter(s.status for s in sends) == {"SENT": len(recipients)}
    posts = Counter(r["to"] for r in sandbox.requests())
    assert set(posts) == {n.lstrip("+") for n in recipients}
    assert max(posts.values()) == 1, [n for n, c in posts.items() if c > 1]
    assert all(s.message_id for s in sends)
    # the counts kept through the outage (the journal's writes included) are the sends' own
    assert assert_counts_exact(broadcast)[broadcast.id]["sent"] == len(recipients)


def test_postgres_stopped_during_the_last_flush_the_pump_writes_its_answers_when_it_is_back(
    channel, template, delivery_sandbox, worker_env, delivery_settings
):
    # Given a worker whose chunks have 20 s (soft time limit) to write their outcomes, and a beat sweeping
    processes = _processes(worker_env, DELIVERY_LEASE_SECONDS=30, DELIVERY_READ_TIMEOUT_SECONDS=10)
    try:
        # When PostgreSQL is down for 4 s while the last answers come back
        broadcast, recipients = _outage_during_last_flush(
            channel, template, delivery_sandbox, down_seconds=4, latency_ms=2500
        )

        # Then every send ends SENT and no number got a second POST (nothing Meta accepted was forgotten)
        wait_for(lambda: _settled(broadcast.id), timeout=30, interval=0.5, message="broadcast settled")
        for name, process in processes.items():
            assert process.alive(), f"{name} died:\n{process.log()[-4000:]}"
        assert "last outcome write" in processes["worker"].log()  # the outage really hit the last flush
    finally:
        _stop(processes)
    _assert_every_send_sent_once(broadcast, delivery_sandbox, recipients)


def test_postgres_down_longer_than_the_chunk_may_wait_its_answers_come_back_from_the_journal(
    channel, template, delivery_sandbox, worker_env, delivery_settings
):
    # Given a worker whose chunks give up writing after ~4 s (8 s lease, 5 s soft time limit), and a beat sweeping
    processes = _processes(worker_env, DELIVERY_READ_TIMEOUT_SECONDS=4)
    try:
        # When PostgreSQL is down for 9 s while the last answers come back (the chunk gives up meanwhile)
        broadcast, recipients = _outage_during_last_flush(channel, template, delivery_sandbox, down_seconds=9)

        # Then the sweeper writes the journaled answers before it takes back the expired leases: every send SENT,
        # none posted twice
        wait_for(lambda: _settled(broadcast.id), timeout=30, interval=0.5, message="broadcast settled")
        for name, process in processes.items():
            assert process.alive(), f"{name} died:\n{process.log()[-4000:]}"
        assert "journaled in Redis" in processes["worker"].log()
    finally:
        _stop(processes)
    _assert_every_send_sent_once(broadcast, delivery_sandbox, recipients)
