"""A worker process's POSTs in flight are bounded by one count shared by every run on its loop (Runtime.post_places,
DELIVERY_MAX_IN_FLIGHT), taken before a slot is: a POST never waits in the Graph client's connection pool after its
slot. A queue there would drain all at once when Meta's answers turn quick (a slow Meta turning to 5xx), and that
burst would put more than a channel's cap into one second at Meta."""

import asyncio
import threading

import pytest

from templates_registry.models import Channel
from tests.delivery_support import broadcast_make, max_in_any_second, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CAP = 10
PLACES = 30


@pytest.fixture
def few_places(delivery_settings):
    """30 POSTs in flight per process (requested before `host`, whose Graph client is made with it)."""
    delivery_settings.DELIVERY_MAX_IN_FLIGHT = PLACES
    delivery_settings.DELIVERY_READ_TIMEOUT_SECONDS = 10.0  # a slow answer is an answer, not an unknown outcome
    delivery_settings.DELIVERY_PUMP_SMALL_WORK = 1000  # both channels taken on by the one host at once
    delivery_settings.DELIVERY_LEASE_SECONDS = 30.0  # the host posts for longer than the fault lasts
    return delivery_settings


def test_a_slow_meta_turning_to_quick_5xx_puts_no_burst_over_a_channels_cap(
    few_places, channel, template, delivery_sandbox, host
):
    # Given two channels capped at 10/s served by one process, and Meta answering after 4 s
    other = Channel.objects.create(
        organization=channel.organization,
        phone_number_id="100000000000002",
        waba_id=channel.waba_id,
        access_token="EAAG-other-channel-token",
        max_mps=CAP,
    )
    channel.max_mps = CAP
    channel.save()
    broadcast_make(channel=channel, template=template, recipients=numbers(60))
    broadcast_make(channel=other, template=template, recipients=numbers(60, start=100))
    delivery_sandbox.config(default_outcome="slow:4000")

    # When, after 2.5 s (while 30 POSTs are still waiting for their answers), Meta answers every POST at once
    # with a 500 for three seconds, then accepts again
    timers = [
        threading.Timer(2.5, delivery_sandbox.config, kwargs={"default_outcome": "http500"}),
        threading.Timer(5.5, delivery_sandbox.config, kwargs={"default_outcome": "ok"}),
    ]
    for timer in timers:
        timer.start()
    try:
        assert host.runtime.loop.run_until_complete(host._adopt_one()) is True
        assert host.runtime.loop.run_until_complete(host._adopt_one()) is True
        host.runtime.loop.run_until_complete(asyncio.gather(*host.tasks))
    finally:
        for timer in timers:
            timer.join()

    # Then each channel's POSTs, 500s included, stayed within its cap in every sliding second at Meta
    for phone_number_id in (channel.phone_number_id, other.phone_number_id):
        arrivals = [r["received_at"] for r in delivery_sandbox.requests(phone_number_id=phone_number_id)]
        assert arrivals, phone_number_id
        assert max_in_any_second(arrivals) <= CAP, (phone_number_id, max_in_any_second(arrivals))
    # and the 500s were among them (the fault happened while POSTs waited)
    requests = delivery_sandbox.requests()
    assert any(r["outcome"] == "http500" for r in requests)
