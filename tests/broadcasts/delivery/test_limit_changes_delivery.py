"""A change of the messaging limit on the real path (docs/rules.md): worker processes and beat, Redis, PostgreSQL,
the sandbox over HTTP counting unique numbers per portfolio, and its signed webhooks into the service. The window is
long (5 min) so that nothing waiting for the limit could go out by the old window freeing room during a test: only
the change can release it."""

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from core.redis import redis_client
from sandbox.process import start_sandbox
from tests.broadcasts.delivery.test_messaging_limit_delivery import make_org, posted_numbers
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

WINDOW = 300.0
SECRET = "limit-changes-app-secret"
SETTINGS = {
    **FAST_DELIVERY_SETTINGS,
    "MESSAGING_LIMIT_WINDOW_SECONDS": WINDOW,
    "CUSTOMER_SERVICE_WINDOW_SECONDS": 120,
    "WHATSAPP_APP_SECRET": SECRET,
}


@pytest.fixture(scope="module")
def changes_sandbox():
    server = start_sandbox(latency_ms=5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def changes_workers(django_db_setup, django_db_blocker, changes_sandbox):
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    with workers_with_beat(database_name=name, graph_url=changes_sandbox.graph_url, overrides=SETTINGS) as workers:
        yield workers


@pytest.fixture
def setup(changes_sandbox, changes_workers, settings, live_server):
    for key, value in SETTINGS.items():
        setattr(settings, key, value)
    settings.WHATSAPP_GRAPH_URL = changes_sandbox.graph_url
    redis_client().flushdb()
    changes_sandbox.reset()
    changes_sandbox.config(latency_ms=5, webhook_url=f"{live_server.url}/v1/webhooks/whatsapp", app_secret=SECRET)
    yield changes_sandbox
    changes_sandbox.config(webhook_url=None)
    broadcasts_stop_all()
    changes_sandbox.reset()


def limit_waiting(broadcast_id) -> int:
    return Send.objects.filter(broadcast_id=broadcast_id, status="PENDING", wait_reason="messaging_limit").count()


def raise_by_capability(sandbox, channel, org):
    answer = sandbox.post_webhook(
        "business-capability", waba_id=channel.waba_id, max_daily_conversations_per_business="TIER_2K"
    )
    assert answer["status"] == 200


def raise_by_quality(sandbox, channel, org):
    answer = sandbox.post_webhook(
        "phone-number-quality",
        phone_number_id=channel.phone_number_id,
        event="UPGRADE",
        max_daily_conversations_per_business="TIER_2K",
    )
    assert answer["status"] == 200


def raise_by_command(sandbox, channel, org):
    call_command("update_organization", "--org", org.name, "--messaging-limit", "TIER_2K", stdout=StringIO())


@pytest.mark.parametrize("raise_limit", [raise_by_capability, raise_by_quality, raise_by_command])
def test_a_raised_tier_releases_the_waiting_sends_within_five_seconds(setup, raise_limit):
    sandbox = setup
    # Given an organization at TIER_250 whose broadcast of 550 numbers posted 250 and parks 300 for the limit
    # (their wait: until the 5 min window frees room)
    org, [(channel, template)] = make_org(f"Raised {raise_limit.__name__}", 250)
    sandbox.config(phone_numbers={channel.phone_number_id: {"waba_id": channel.waba_id}})
    sandbox.messaging_limits(waba_id=channel.waba_id, limit=250, window_seconds=WINDOW)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(550, start=3000))
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: limit_waiting(broadcast.id) == 300, timeout=20, message="300 waiting for the limit")
    time.sleep(1.0)
    assert len(posted_numbers(sandbox, {channel.phone_number_id})) == 250
    assert Send.objects.filter(broadcast=broadcast, status="PENDING", next_attempt_at__isnull=False).count() == 300

    # When Meta (or a person) raises it to TIER_2K
    sandbox.messaging_limits(waba_id=channel.waba_id, limit=2000, window_seconds=WINDOW)
    raised_at = time.monotonic()
    raise_limit(sandbox, channel, org)
    org.refresh_from_db()
    assert org.messaging_limit == 2000

    # Then the 300 go out within 5 s, each number once, never over the tier
    wait_for(lambda: len(posted_numbers(sandbox, {channel.phone_number_id})) >= 550, timeout=5, message="300 released")
    assert time.monotonic() - raised_at <= 5.0
    every = posted_numbers(sandbox, {channel.phone_number_id})
    assert len(every) == len(set(every)) == 550
    assert sandbox.messaging_limits()["over"] == []
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=10, message="completed")


def test_a_lowered_tier_holds_new_sends_at_once(setup):
    sandbox = setup
    # Given an organization at TIER_2K that reached 300 numbers in the window
    org, [(channel, template)] = make_org("Lowered", 2000)
    sandbox.config(phone_numbers={channel.phone_number_id: {"waba_id": channel.waba_id}})
    sandbox.messaging_limits(waba_id=channel.waba_id, limit=2000, window_seconds=WINDOW)
    first = broadcast_make(channel=channel, template=template, recipients=numbers(300, start=6000))
    enqueue_dispatch(first.id)
    wait_for(lambda: broadcast_settled(first.id), timeout=20, message="first completed")

    # When Meta lowers it to TIER_250 (signed webhook through the service)
    answer = sandbox.post_webhook(
        "business-capability", waba_id=channel.waba_id, max_daily_conversations_per_business="TIER_250"
    )
    assert answer["status"] == 200
    assert Organization.objects.get(id=org.id).messaging_limit == 250
    # Then a new broadcast to other numbers posts nothing: the window already holds more than 250; its sends wait
    # for the limit, none failed; numbers counted already still pass
    second = broadcast_make(
        channel=channel, template=template, recipients=numbers(100, start=7000) + numbers(5, start=6000)
    )
    enqueue_dispatch(second.id)
    wait_for(lambda: limit_waiting(second.id) == 100, timeout=15, message="100 held for the limit")
    time.sleep(1.5)
    posted = posted_numbers(sandbox, {channel.phone_number_id})
    assert not set(posted) & {n.lstrip("+") for n in numbers(100, start=7000)}
    assert Send.objects.filter(broadcast=second, status="FAILED").count() == 0
    # (the 5 counted ones after the same-number spacing: they were posted to moments ago)
    wait_for(
        lambda: Send.objects.filter(broadcast=second, status__in=("SENT", "DELIVERED", "READ")).count() == 5,
        timeout=12,
        message="the 5 counted numbers sent",
    )
    assert limit_waiting(second.id) == 100
    posted = posted_numbers(sandbox, {channel.phone_number_id})
    assert not set(posted) & {n.lstrip("+") for n in numbers(100, start=7000)}
