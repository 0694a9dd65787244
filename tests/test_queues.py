"""Three Celery queues (docs/operations.md): `delivery`, `events` and `maintenance`, each published through the
anonymous
exchange with routing_key = the queue's name, so a FLUSHALL of the broker leaves nothing to re-declare.

The real-process tests use a Redis database of their own, so no other test's worker takes their tasks.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter

import pytest
import redis
from celery import current_app
from django.conf import settings
from django.db import connection

from broadcasts import queue as broadcasts_queue
from broadcasts.models import Broadcast, Send
from events import queue as events_queue
from events.endpoints import endpoint_create
from sandbox.process import start_sandbox
from tests.delivery_support import (
    FAST_DELIVERY_SETTINGS,
    CeleryProcess,
    broadcast_make,
    celery_env,
    database_url_for,
    numbers,
    wait_for,
)
from tests.events.helpers import Receiver

QUEUES = ("delivery", "events", "maintenance")
DELIVERY_TASKS = {"broadcasts.dispatch", "broadcasts.send_chunk"}
EVENTS_TASKS = {"events.endpoint_deliver"}
MAINTENANCE_TASKS = {
    "broadcasts.start_due",
    "broadcasts.sweep",
    "broadcasts.idempotency_purge",
    "broadcasts.unmatched_statuses_retry",
    "broadcasts.retention_purge",
    "broadcasts.limit_waiters_wake",
    "events.sweep",
    "core.heartbeat",
}
RECEIVED = re.compile(r"Task ([\w.]+)\[[0-9a-f-]+\] received")


def _own_redis(db: int) -> str:
    url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + f"/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def _publish(url: str, name: str, args: list) -> None:
    """What broadcasts/queue.py and events/queue.py do (send_task by name, routed by CELERY_TASK_ROUTES), to the
    broker at ``url``."""
    with current_app.connection_for_write(url) as conn:
        current_app.send_task(name, args=args, connection=conn, ignore_result=True)


def _received(worker: CeleryProcess) -> Counter:
    return Counter(RECEIVED.findall(worker.log()))


# --- routing, without processes ---------------------------------------------------------------------------------


def test_every_task_has_its_queue_and_every_beat_entry_goes_to_maintenance():
    import broadcasts.tasks  # noqa: F401 - registers the tasks, as a worker's autodiscovery does
    import core.tasks  # noqa: F401
    import events.tasks  # noqa: F401

    routes = {**broadcasts_queue.ROUTES, **events_queue.ROUTES}
    registered = {name for name in current_app.tasks if not name.startswith("celery.")}
    assert registered == DELIVERY_TASKS | EVENTS_TASKS | MAINTENANCE_TASKS
    router = current_app.amqp.router
    for name in registered:
        queue = router.route({}, name)["queue"]
        expected = "delivery" if name in DELIVERY_TASKS else "events" if name in EVENTS_TASKS else "maintenance"
        assert (queue.name, queue.exchange.name, queue.routing_key) == (expected, "", expected), name
        assert routes.get(name, "maintenance") == expected
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["options"]["queue"] == "maintenance"
        assert entry["task"] in MAINTENANCE_TASKS
    assert [q.name for q in settings.CELERY_TASK_QUEUES] == list(QUEUES)


# --- a worker per queue -----------------------------------------------------------------------------------------


@pytest.fixture
def queue_env(db):
    url = _own_redis(13)
    sandbox = start_sandbox(latency_ms=5)
    env = celery_env(
        database_url=database_url_for(connection.settings_dict["NAME"]),
        graph_url=sandbox.graph_url,
        overrides={**FAST_DELIVERY_SETTINGS, "REDIS_URL": url, "WEBHOOKS_ALLOW_PRIVATE": "true"},
    )
    yield url, env, sandbox
    sandbox.stop()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.extended  # `make test-extended`: the queue routing itself stays in `make test`
def test_a_worker_per_queue_sees_a_broadcast_through_with_its_events_and_sweeps(
    queue_env, org, channel, template, settings
):
    url, env, sandbox = queue_env
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    workers: dict[str, CeleryProcess] = {}
    beat = None
    with Receiver() as customer:
        endpoint_create(organization=org, url=customer.url, events=["message.sent", "broadcast.completed"])
        try:
            # Given one worker per queue (-Q one queue each) and beat
            for name in QUEUES:
                workers[name] = CeleryProcess("worker", env=env, concurrency=1, extra_args=["-Q", name]).start()
            beat = CeleryProcess("beat", env=env).start()
            # When a broadcast of 20 is dispatched
            broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(20))
            _publish(url, broadcasts_queue.DISPATCH, [broadcast.id])

            # Then it completes, the customer gets its 20 message.sent and the broadcast.completed event
            wait_for(
                lambda: Broadcast.objects.filter(id=broadcast.id, status="COMPLETED").exists(),
                timeout=60,
                message="broadcast completed",
            )
            wait_for(lambda: len(customer.requests) >= 21, timeout=60, message="21 customer events")
            # and beat's passes ran on the maintenance worker meanwhile
            wait_for(
                lambda: (
                    {"broadcasts.sweep", "events.sweep", "broadcasts.start_due"}
                    <= set(_received(workers["maintenance"]))
                ),
                timeout=30,
                message="sweeps on the maintenance worker",
            )
        finally:
            if beat is not None:
                beat.stop()
            logs = {name: _received(worker) for name, worker in workers.items()}
            for worker in workers.values():
                worker.stop()
    assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {"SENT"}
    # And each worker ran its own queue's tasks only
    assert set(logs["delivery"]) <= DELIVERY_TASKS and logs["delivery"]["broadcasts.send_chunk"] >= 1
    assert set(logs["events"]) == EVENTS_TASKS
    assert set(logs["maintenance"]) <= MAINTENANCE_TASKS and logs["maintenance"]["broadcasts.sweep"] >= 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_after_a_flushall_every_queue_stays_routable_and_a_delivery_worker_takes_only_its_own(queue_env):
    url, env, _ = queue_env
    client = redis.Redis.from_url(url)
    # Given a worker serving only `delivery`, started before the broker is emptied
    worker = CeleryProcess("worker", env=env, concurrency=1, extra_args=["-Q", "delivery"]).start()
    others = None
    try:
        # When Redis is flushed (FLUSHALL: every queue, binding and exchange key gone)
        client.flushall()
        # and one task per queue is published afterwards
        _publish(url, broadcasts_queue.DISPATCH, ["no-such-broadcast"])
        _publish(url, events_queue.ENDPOINT_DELIVER_TASK, ["no-such-endpoint"])
        _publish(url, broadcasts_queue.SWEEP, [])
        # Then nothing routes through a binding (none exists) and each message is in its own queue's list
        assert not [key for key in client.keys("_kombu.binding.*") if b"pidbox" not in key and b"celeryev" not in key]
        wait_for(lambda: "broadcasts.dispatch" in _received(worker), timeout=30, message="dispatch received")
        time.sleep(1.0)
        # and the delivery worker took its own and never an events or maintenance task
        assert set(_received(worker)) == {"broadcasts.dispatch"}
        assert (client.llen("delivery"), client.llen("events"), client.llen("maintenance")) == (0, 1, 1)
        # And a worker for the other two queues, started after the flush, runs what waited there
        others = CeleryProcess("worker", env=env, concurrency=1, extra_args=["-Q", "events,maintenance"]).start()
        wait_for(
            lambda: {"events.endpoint_deliver", "broadcasts.sweep"} <= set(_received(others)),
            timeout=30,
            message="events and maintenance tasks received",
        )
        assert client.llen("events") == client.llen("maintenance") == 0
    finally:
        worker.stop()
        if others is not None:
            others.stop()
