"""The whole path for real: bulk API -> Celery worker -> sandbox Graph API -> Meta's signed webhooks to
our receiver (live server) -> customer events POSTed by the worker to a receiver on 127.0.0.1.

This module's worker uses its own Redis database (broker and cache), so that the delivery tests' worker,
alive for the whole session with another sandbox and without WEBHOOKS_ALLOW_PRIVATE, never takes its tasks.
"""

import os

import pytest
import redis
from django.db import connection

from broadcasts.models import Send
from broadcasts.status_updates.unmatched import unmatched_statuses_retry
from sandbox.process import start_sandbox
from tests.delivery_support import FAST_DELIVERY_SETTINGS, CeleryProcess, celery_env, database_url_for, wait_for
from tests.events.conftest import contract_signature_valid
from tests.events.helpers import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
APP_SECRET = "e2e-app-secret"


def e2e_redis_url() -> str:
    base = os.environ["REDIS_URL"].rsplit("/", 1)[0]
    return f"{base}/7"


@pytest.fixture(scope="module")
def e2e_sandbox():
    server = start_sandbox(latency_ms=5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def e2e_worker(django_db_setup, django_db_blocker, e2e_sandbox):
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    # The worker posts customer events to 127.0.0.1, so it must allow private addresses too.
    redis.Redis.from_url(e2e_redis_url()).flushdb()
    env = celery_env(
        database_url=database_url_for(name),
        graph_url=e2e_sandbox.graph_url,
        overrides={**FAST_DELIVERY_SETTINGS, "WEBHOOKS_ALLOW_PRIVATE": "true", "REDIS_URL": e2e_redis_url()},
    )
    worker = CeleryProcess("worker", env=env, concurrency=2).start()
    yield worker
    worker.stop()


@pytest.fixture
def to_e2e_worker(monkeypatch):
    """Tasks this process queues (dispatch after the API's commit, event deliveries after the webhook's) go
    to the e2e worker's broker."""
    from broadcasts.tasks import broadcast_dispatch_task
    from config.celery import app
    from events import queue
    from events.tasks import endpoint_deliver_task

    with app.connection_for_write(e2e_redis_url()) as conn:
        monkeypatch.setattr(
            "broadcasts.services.enqueue_dispatch",
            lambda bid: broadcast_dispatch_task.apply_async((bid,), connection=conn),
        )
        monkeypatch.setattr(
            queue, "delivery_enqueue", lambda eid: endpoint_deliver_task.apply_async((eid,), connection=conn)
        )
        yield


def test_a_broadcast_reaches_the_customer_as_ordered_signed_events(
    api, channel, template, e2e_sandbox, e2e_worker, to_e2e_worker, live_server, settings
):
    # Given Meta's webhooks (the sandbox's) pointed at our receiver, and a customer endpoint
    settings.WHATSAPP_APP_SECRET = APP_SECRET
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    settings.WHATSAPP_GRAPH_URL = e2e_sandbox.graph_url
    e2e_sandbox.reset()
    e2e_sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=APP_SECRET,
        delivered_after_ms=50,
        read_after_ms=150,
    )
    with Receiver() as customer:
        created = api.post("/v1/webhooks", {"url": customer.url}, format="json").json()
        # When a broadcast of three is requested, one recipient lacking a variable
        response = api.post(
            "/v1/messages/bulk",
            {
                "template_name": template.name,
                "language": template.language,
                "channel_id": channel.id,
                "recipients": [
                    {"to": "+573001110001", "variables": {"nombre": "Ana", "monto": "1"}, "meta_data": {"crm": 1}},
                    {"to": "+573001110002", "variables": {"nombre": "Luis", "monto": "2"}},
                    {"to": "+573001110003", "variables": {"nombre": "Eva"}},
                ],
            },
            format="json",
        )
        assert response.status_code == 202, response.content
        broadcast_id = response.json()["broadcast_id"]

        # Then the sends go all the way to READ (and the incomplete one FAILED)
        def statuses():
            unmatched_statuses_retry()  # the beat's job: statuses that beat their wamid to the database
            return sorted(Send.objects.filter(broadcast_id=broadcast_id).values_list("status", flat=True))

        wait_for(lambda: statuses() == ["FAILED", "READ", "READ"], timeout=30, message="sends READ")
        # And the worker delivers the customer: sent, delivered, read per message, failed, completed
        wait_for(lambda: len(customer.requests) >= 8, timeout=30, message="8 customer events")
        events = customer.events()
        assert all(contract_signature_valid(r, created["secret"]) for r in customer.requests)
        per_message: dict[int, list[str]] = {}
        for event in events:
            if event["type"].startswith("message."):
                per_message.setdefault(event["data"]["index"], []).append(event["type"])
        assert per_message == {
            0: ["message.sent", "message.delivered", "message.read"],
            1: ["message.sent", "message.delivered", "message.read"],
            2: ["message.failed"],
        }
        failed = next(e for e in events if e["type"] == "message.failed")["data"]
        assert failed["error"]["code"] == "missing_variables" and failed["status"] == "FAILED"
        first = next(e for e in events if e["type"] == "message.sent" and e["data"]["index"] == 0)["data"]
        assert first["meta_data"] == {"crm": 1} and first["message_id"].startswith("wamid.")
        completed = [e for e in events if e["type"] == "broadcast.completed"]
        assert len(completed) == 1 and completed[0]["data"]["status"] == "COMPLETED"
        assert len({e["id"] for e in events}) == len(events)
