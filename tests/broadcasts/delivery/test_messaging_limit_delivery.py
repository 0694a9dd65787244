"""The messaging limit on the real path (docs/rules.md): Celery worker processes, Redis, PostgreSQL, the sandbox over
HTTP counting unique numbers per portfolio, and its signed webhooks into the service (live server)."""

import time

import pytest
from django.db import connection
from django.utils import timezone

from broadcasts.models import Broadcast, Send
from broadcasts.queue import enqueue_dispatch
from core.redis import redis_client
from sandbox.process import start_sandbox
from templates_registry.models import Channel, Template
from tests.delivery_support import (
    FAST_DELIVERY_SETTINGS,
    broadcast_make,
    broadcast_settled,
    broadcasts_stop_all,
    numbers,
    wait_for,
    workers_with_beat,
)
from tokens.models import Organization

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WINDOW = 10.0
SECRET = "limits-app-secret"
LIMIT_SETTINGS = {
    **FAST_DELIVERY_SETTINGS,
    "MESSAGING_LIMIT_WINDOW_SECONDS": WINDOW,
    "CUSTOMER_SERVICE_WINDOW_SECONDS": 120,
    "WHATSAPP_APP_SECRET": SECRET,
}


@pytest.fixture(scope="module")
def limits_sandbox():
    server = start_sandbox(latency_ms=5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def limits_workers(django_db_setup, django_db_blocker, limits_sandbox):
    """Two worker processes (one pool process each): they share the organization's count through Redis; and beat,
    as in production (its sweeper dispatches running broadcasts whose waits are over if a wake was lost)."""
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    with workers_with_beat(database_name=name, graph_url=limits_sandbox.graph_url, overrides=LIMIT_SETTINGS) as workers:
        yield workers


@pytest.fixture
def setup(limits_sandbox, limits_workers, settings, live_server):
    for key, value in LIMIT_SETTINGS.items():
        setattr(settings, key, value)
    settings.WHATSAPP_GRAPH_URL = limits_sandbox.graph_url
    redis_client().flushdb()
    limits_sandbox.reset()
    limits_sandbox.config(latency_ms=5, webhook_url=f"{live_server.url}/v1/webhooks/whatsapp", app_secret=SECRET)
    yield limits_sandbox
    # No status webhook may reach the live server once the test's database is gone.
    limits_sandbox.config(webhook_url=None)
    broadcasts_stop_all()
    limits_sandbox.reset()


def make_org(name, limit, channels=1):
    org = Organization.objects.create(name=name, messaging_limit=limit, messaging_limit_set_at=timezone.now())
    made = []
    for i in range(channels):
        channel = Channel.objects.create(
            organization=org,
            phone_number_id=f"10000000000{org.id:02d}{i}",
            waba_id=f"2000000{org.id:03d}",
            access_token="EAAG-test",
            max_mps=1000,
        )
        template = Template.objects.get_or_create(
            waba_id=channel.waba_id,
            name="welcome_v2",
            language="es",
            defaults={
                "status": "APPROVED",
                "category": "MARKETING",
                "body_variables": ["nombre", "monto"],
                "components": [{"type": "BODY", "text": "Hola {{nombre}}, {{monto}}"}],
            },
        )[0]
        made.append((channel, template))
    return org, made


def posted_numbers(sandbox, phone_number_ids):
    return [r["to"] for r in sandbox.requests() if r["phone_number_id"] in phone_number_ids and r["outcome"] == "ok"]


def test_a_broadcast_over_the_limit_posts_exactly_the_limit_then_the_rest_as_the_window_frees(setup):
    sandbox = setup
    # Given an organization limited to 200 unique numbers per 10 s window, and the sandbox's tier the same
    lim, [(channel, template)] = make_org("Limited", 200)
    sandbox.config(phone_numbers={channel.phone_number_id: {"waba_id": channel.waba_id}})
    sandbox.messaging_limits(waba_id=channel.waba_id, limit=200, window_seconds=WINDOW)
    # ... and one number that wrote in (incoming messages webhook, signed, through the service)
    writer = numbers(1, start=900)[0]
    answer = sandbox.post_webhook("inbound-message", phone_number_id=channel.phone_number_id, **{"from": writer})
    assert answer["status"] == 200
    recipients = numbers(500) + [writer]
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)
    started = time.monotonic()

    # When it is dispatched
    enqueue_dispatch(broadcast.id)

    # Then exactly 200 numbers (and the one whose window is open) go out in the first window
    wait_for(lambda: len(posted_numbers(sandbox, {channel.phone_number_id})) >= 201, timeout=15, message="201 posted")
    time.sleep(2.0)
    first = posted_numbers(sandbox, {channel.phone_number_id})
    assert len(first) == 201 and len(set(first)) == 201 and writer.lstrip("+") in first

    # ... the rest wait PENDING for the messaging limit, with an eta, none failed
    def waiting():
        body = api_get(lim, broadcast.id)
        return body if body["waiting"]["messaging_limit"] >= 100 else None

    body = wait_for(waiting, timeout=10, message="300 waiting for the limit")
    assert body["counts"]["pending"] == 300 == sum(body["waiting"].values()) and body["counts"]["failed"] == 0
    assert body["eta"] is not None
    assert Send.objects.filter(broadcast=broadcast, status="PENDING", attempts=0).count() == 300

    # ... and they go out as the window frees, never more than 200 in any window (the sandbox saw no excess)
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=60, message="broadcast completed")
    elapsed = time.monotonic() - started
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
    every = posted_numbers(sandbox, {channel.phone_number_id})
    assert sorted(every) == sorted(n.lstrip("+") for n in recipients)  # each exactly once
    report = sandbox.messaging_limits()
    assert report["over"] == [] and report["portfolios"][channel.waba_id]["max_used"] <= 200
    assert elapsed > 2 * WINDOW  # three windows' worth: 200, 200, 100
    assert api_get(lim, broadcast.id)["waiting"] == {
        "schedule": 0,
        "throughput": 0,
        "messaging_limit": 0,
        "send_window": 0,
        "retry": 0,
    }


def api_get(org, broadcast_id):
    from rest_framework.test import APIClient

    from tests.conftest import KNOWN_SCOPES  # noqa: F401  (the token fixture's scopes)
    from tokens.services import token_create

    issued = token_create(organization=org, name="t", scopes=["messages:bulk"])
    response = APIClient().get(f"/v1/messages/bulk/{broadcast_id}", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 200, response.content
    return response.json()


def test_two_workers_two_channels_share_one_count_and_a_capability_update_lifts_it(setup):
    sandbox = setup
    # Given an organization limited to 250 with two channels on one WABA, each with a broadcast of 300 numbers
    lim, made = make_org("Shared", 250, channels=2)
    sandbox.config(phone_numbers={c.phone_number_id: {"waba_id": c.waba_id} for c, _ in made})
    sandbox.messaging_limits(waba_id=made[0][0].waba_id, limit=250, window_seconds=WINDOW)
    broadcasts = [
        broadcast_make(channel=c, template=t, recipients=numbers(300, start=1000 + 300 * i))
        for i, (c, t) in enumerate(made)
    ]
    for broadcast in broadcasts:
        enqueue_dispatch(broadcast.id)
    phones = {c.phone_number_id for c, _ in made}

    # Then 250 numbers in all go out, across both channels, and the rest wait
    wait_for(lambda: len(posted_numbers(sandbox, phones)) >= 250, timeout=15, message="250 posted")
    time.sleep(2.5)
    assert len(posted_numbers(sandbox, phones)) == 250
    assert sandbox.messaging_limits()["over"] == []

    # When Meta raises the limit (business_capability_update, signed, through the service)
    sandbox.messaging_limits(waba_id=made[0][0].waba_id, limit=2000, window_seconds=WINDOW)
    answer = sandbox.post_webhook(
        "business-capability", waba_id=made[0][0].waba_id, max_daily_conversations_per_business=2000
    )
    assert answer["status"] == 200
    lim.refresh_from_db()
    assert lim.messaging_limit == 2000

    # Then the waiting sends go out when they wake (within a window's wait), all of them at the new limit
    wait_for(lambda: all(broadcast_settled(b.id) for b in broadcasts), timeout=40, message="both completed")
    assert len(posted_numbers(sandbox, phones)) == 600
    assert sandbox.messaging_limits()["over"] == []


def test_five_thousand_against_two_thousand(setup):
    sandbox = setup
    # Given an organization limited to 2,000 unique numbers per 10 s window, and a broadcast of 5,000
    lim, [(channel, template)] = make_org("Big", 2000)
    sandbox.config(phone_numbers={channel.phone_number_id: {"waba_id": channel.waba_id}})
    sandbox.messaging_limits(waba_id=channel.waba_id, limit=2000, window_seconds=WINDOW)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(5000, start=20000))
    enqueue_dispatch(broadcast.id)

    # Then exactly 2,000 go out in the first window, the rest wait for the limit with an eta
    wait_for(lambda: len(posted_numbers(sandbox, {channel.phone_number_id})) >= 2000, timeout=20, message="2000")
    time.sleep(1.5)
    assert len(set(posted_numbers(sandbox, {channel.phone_number_id}))) == 2000
    body = wait_for(
        lambda: (b := api_get(lim, broadcast.id))["waiting"]["messaging_limit"] >= 1000 and b,
        timeout=10,
        message="sends waiting for the limit",
    )
    assert body["eta"] is not None and body["counts"]["failed"] == 0
    assert body["counts"]["pending"] == 3000 == sum(body["waiting"].values())

    # ... and everything goes out as the window frees, never over the tier
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=60, message="completed")
    assert len(set(posted_numbers(sandbox, {channel.phone_number_id}))) == 5000
    assert sandbox.messaging_limits()["over"] == []
