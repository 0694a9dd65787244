"""One organization's hanging endpoints never delay another organization's events (docs/operations.md), with a real
worker: organization A has 10 endpoints that accept and never answer (a tarpit) and a burst of events; B's event
reaches B's healthy endpoint within a couple of seconds.

The worker uses its own Redis database (broker, cache and lanes), so the delivery tests' session worker never takes
these tasks; it has two pool processes, as the Procfile's default serves the events queue with a few.
"""

import os
import time

import orjson
import pytest
import redis
from django.db import connection

from events import queue
from events.models import WebhookEndpoint
from events.outbox import NewEvent, events_record
from tests.delivery_support import CeleryProcess, celery_env, database_url_for, wait_for
from tests.events.helpers import Receiver, Tarpit

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def fairness_redis_url() -> str:
    return os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/6"


@pytest.fixture
def fair_worker(monkeypatch):
    from config.celery import app
    from events.tasks import endpoint_deliver_task

    redis.Redis.from_url(fairness_redis_url()).flushdb()
    env = celery_env(
        database_url=database_url_for(connection.settings_dict["NAME"]),
        graph_url="http://127.0.0.1:9",
        overrides={"WEBHOOKS_ALLOW_PRIVATE": "true", "REDIS_URL": fairness_redis_url(), "LIMITER_REDIS_URL": ""},
    )
    worker = CeleryProcess("worker", env=env, concurrency=2).start()
    try:
        with app.connection_for_write(fairness_redis_url()) as conn:
            # What this process queues goes to that worker's broker.
            monkeypatch.setattr(
                queue, "delivery_enqueue", lambda eid: endpoint_deliver_task.apply_async((eid,), connection=conn)
            )
            yield worker
    finally:
        worker.stop()


def _burst(org, count: int) -> None:
    events_record(
        events=[
            NewEvent(organization_id=org.id, type="message.sent", data={"n": i}, ordering_key=f"m{i}")
            for i in range(count)
        ]
    )


@pytest.mark.parametrize("a_state", ["new", "failing"])
def test_hanging_endpoints_of_one_organization_do_not_delay_anothers_events(fair_worker, org, other_org, a_state):
    with Tarpit() as tarpit, Receiver() as receiver:
        # Given organization A with 10 endpoints that hang (new ones, or ones already failing)
        for i in range(10):
            WebhookEndpoint.objects.create(organization=org, url=f"{tarpit.url}/{i}", secret=f"whsec_{'a' * 43}{i}")
        if a_state == "failing":
            WebhookEndpoint.objects.filter(organization=org).update(consecutive_failures=3)
        # and organization B with a healthy one
        WebhookEndpoint.objects.create(organization=other_org, url=receiver.url, secret=f"whsec_{'b' * 44}")
        # When A publishes a burst of events, then B one
        _burst(org, 50)
        wait_for(lambda: tarpit.accepted >= 1, timeout=20, message="the worker to reach the tarpit")
        started = time.monotonic()
        _burst(other_org, 1)
        # Then B's endpoint has it within a couple of seconds, while A's endpoints still hang
        wait_for(lambda: len(receiver.requests) == 1, timeout=10, message="B's event")
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, elapsed
        assert tarpit.accepted <= 8  # one slot of A's (a first batch of 8 concurrent POSTs, or 1 probe)


def test_a_healthy_endpoint_gets_a_burst_of_events_at_full_speed(fair_worker, org):
    with Receiver() as receiver:
        # Given an organization with one healthy endpoint
        WebhookEndpoint.objects.create(organization=org, url=receiver.url, secret=f"whsec_{'c' * 44}")
        # When 3,000 events are recorded in bursts, each while the endpoint's runs are in progress
        started = time.monotonic()
        for n in range(30):
            _burst(org, 100)
            wait_for(lambda n=n: len(receiver.requests) > n, timeout=20, message="a run in progress")
        # Then every event reaches it soon, woken by the runs themselves (no beat sweeper runs here)
        wait_for(lambda: len(receiver.requests) >= 3000, timeout=60, message="the 3,000 events")
        elapsed = time.monotonic() - started
        assert len({orjson.loads(r["body"])["id"] for r in receiver.requests}) == 3000
        # (one run at a time, as the organization's lane allows: ~95 s when each round of POSTs waited for its
        # slowest, this receiver's accept queue of 5 making a few of them wait 1 s for a SYN retransmit)
        assert elapsed < 40.0, elapsed
