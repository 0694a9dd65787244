"""The delivery rows are the outbox: an event recorded while Redis (cache and broker) is down is kept, and the
beat sweeper delivers it once Redis is back. Redis here is the test run's own server, stopped and started."""

import os
import signal
import subprocess
from urllib.parse import urlsplit

import pytest
import redis
from django.db import connection

from broadcasts.notifications import message_events_publish
from events import endpoints, queue
from events.models import DeliveryStatus, EventDelivery
from tests.delivery_support import CeleryProcess, celery_env, database_url_for, redis_server_binary, wait_for
from tests.events.helpers import broadcast_with_sends


class RedisServer:
    """Stops and starts the Redis of scripts/services.py (its pid file and folder are in TEST_SERVICES_DIR)."""

    def __init__(self) -> None:
        self.folder = os.environ["TEST_SERVICES_DIR"]
        self.port = urlsplit(os.environ["REDIS_URL"]).port
        self.pidfile = os.path.join(self.folder, "redis.pid")

    def ping(self) -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        with open(self.pidfile) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not self.ping(), timeout=10, message="redis stopped")

    def start(self) -> None:
        if self.ping():
            return
        subprocess.run(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--daemonize", "yes", "--pidfile", self.pidfile, "--logfile", os.path.join(self.folder, "redis.log")]
            + ["--dir", self.folder],
            check=True,
        )
        wait_for(self.ping, timeout=10, message="redis started")


@pytest.fixture
def test_redis():
    server = RedisServer()
    yield server
    server.start()  # whatever happened, the rest of the run gets its Redis back


def test_queueing_never_raises_when_the_broker_refuses(org, endpoint_for, monkeypatch):
    # Given a broker that refuses the message (the cache took the queued mark)
    from kombu.exceptions import OperationalError

    endpoint, _ = endpoint_for(org, "http://127.0.0.1:9/x")

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1. Connection refused.")

    monkeypatch.setattr(queue, "delivery_task_send", refuse)
    # When a delivery is queued, then nothing escapes, and the mark is gone so the sweeper's wake-up is not skipped
    queue.delivery_enqueue(endpoint.id)
    from django.core.cache import cache

    assert cache.get(queue.queued_mark_key(endpoint.id)) is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_event_recorded_while_redis_is_down_is_delivered_by_the_sweeper_later(
    org, channel, template, receiver, endpoint_for, test_redis
):
    # Given an endpoint (its list cached in Redis) and three sends whose outcome was just committed
    endpoint, _ = endpoint_for(org, receiver.url)
    endpoints.endpoints_active()
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    send_ids = list(broadcast.sends.order_by("index").values_list("id", flat=True))
    # When Redis (cache and broker) is down while the delivery engine publishes their message.sent events
    test_redis.stop()
    message_events_publish(send_ids=send_ids, status="SENT")  # no exception escapes
    # Then the events are kept as pending delivery rows (the outbox), nothing posted yet
    assert EventDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).count() == 3
    assert receiver.requests == []
    # And when Redis is back, a real worker runs the beat's sweeper task, which queues and delivers them
    test_redis.start()
    worker_redis = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/9"  # its own database: no other test's worker
    redis.Redis.from_url(worker_redis).flushdb()
    env = celery_env(
        database_url=database_url_for(connection.settings_dict["NAME"]),
        graph_url="http://127.0.0.1:9/v23.0",
        overrides={"WEBHOOKS_ALLOW_PRIVATE": "true", "REDIS_URL": worker_redis},
    )
    worker = CeleryProcess("worker", env=env, concurrency=2).start()
    try:
        from config.celery import app
        from events.tasks import deliveries_sweep_task

        with app.connection_for_write(worker_redis) as conn:
            deliveries_sweep_task.apply_async(connection=conn)
        wait_for(lambda: len(receiver.requests) >= 3, timeout=30, message="3 events delivered")
        wait_for(
            lambda: EventDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3,
            timeout=10,
            message="deliveries marked delivered",
        )
    finally:
        log = worker.log()
        worker.stop()
    assert sorted(e["data"]["index"] for e in receiver.events()) == [0, 1, 2]
    # (Only the sweeper can have queued them: the worker's broker database never saw the failed enqueue.)
    assert "Traceback" not in log, log
