"""A channel's max_mps changed in the admin while a broadcast is being posted (docs/rules.md): a real worker whose
pumps run for 20 s (the default lease), the sandbox over HTTP timing every POST, the change saved through the
admin's change form. Without a re-read the running pump would keep its starting cap for all of those 20 s."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from broadcasts.queue import enqueue_dispatch
from sandbox.process import start_sandbox
from tests.delivery_support import (
    FAST_DELIVERY_SETTINGS,
    CeleryProcess,
    broadcast_make,
    celery_env,
    database_url_for,
    max_in_any_second,
    numbers,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# The default lease: a pump posts for a third of it (20 s), far longer than the tests' waits.
SETTINGS = {**FAST_DELIVERY_SETTINGS, "DELIVERY_LEASE_SECONDS": 60.0}
# docs/rules.md: every one-second window starting this long after the save holds at most the new cap.
SETTLE_SECONDS = 2.0


@pytest.fixture(scope="module")
def caps_sandbox():
    server = start_sandbox(latency_ms=5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def caps_worker(django_db_setup, django_db_blocker, caps_sandbox):
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    env = celery_env(database_url=database_url_for(name), graph_url=caps_sandbox.graph_url, overrides=SETTINGS)
    worker = CeleryProcess("worker", env=env, concurrency=2).start()
    yield worker
    worker.stop()


@pytest.fixture
def setup(caps_sandbox, caps_worker, settings, client):
    for key, value in SETTINGS.items():
        setattr(settings, key, value)
    settings.WHATSAPP_GRAPH_URL = caps_sandbox.graph_url
    caps_sandbox.reset()
    caps_sandbox.config(latency_ms=5)
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456"))
    return caps_sandbox, client


def cap_save(client, channel, max_mps: int) -> float:
    """Save the channel's cap through the admin's change form; returns when (epoch, the sandbox's clock)."""
    data = {
        "organization": channel.organization_id,
        "name": channel.name,
        "phone_number_id": channel.phone_number_id,
        "waba_id": channel.waba_id,
        "access_token": "",
        "max_mps": str(max_mps),
    }
    response = client.post(f"/admin/templates_registry/channel/{channel.pk}/change/", data)
    assert response.status_code == 302, response.content[:500]
    channel.refresh_from_db()
    assert channel.max_mps == max_mps
    return time.time()


def arrivals(sandbox) -> list[float]:
    return sorted(r["received_at"] for r in sandbox.requests())


def test_a_raised_cap_speeds_up_the_running_broadcast_within_seconds(setup, channel, template):
    sandbox, client = setup
    # Given a broadcast of 600 posting at 20/s (30 s at that pace), 2 s under way
    channel.max_mps = 20
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(600))
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: len(sandbox.requests()) >= 30, timeout=15, message="posting at 20/s")
    assert max_in_any_second(arrivals(sandbox)) <= 20

    # When the cap is raised to 100 in the admin
    saved_at = cap_save(client, channel, 100)

    # Then within a few seconds the same running broadcast goes faster than the old cap (the 2 s from 2 s after
    # the save: more than twice the old cap in them), and never over the new one
    time.sleep(4.5)
    times = arrivals(sandbox)
    later = [t for t in times if saved_at + 2.0 <= t < saved_at + 4.0]
    assert len(later) > 2 * 40, f"{len(later)} POSTs in the 2 s from 2 s after the raise"
    assert max_in_any_second([t for t in times if t >= saved_at]) <= 100


def test_a_lowered_cap_holds_the_running_broadcast_to_it_after_a_short_settle(setup, channel, template):
    sandbox, client = setup
    # Given a broadcast of 1,000 posting at 100/s, 1 s under way
    channel.max_mps = 100
    channel.save()
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1000, start=2000))
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: len(sandbox.requests()) >= 80, timeout=15, message="posting at 100/s")

    # When the cap is lowered to 20 in the admin
    saved_at = cap_save(client, channel, 20)

    # Then every one-second window from SETTLE_SECONDS after the save holds at most 20, and it goes on at that pace
    time.sleep(SETTLE_SECONDS + 4.0)
    settled = [t for t in arrivals(sandbox) if t >= saved_at + SETTLE_SECONDS]
    assert max_in_any_second(settled) <= 20, max_in_any_second(settled)
    assert len(settled) >= 3 * 15, f"{len(settled)} POSTs in the 4 s after the settle: stalled"
