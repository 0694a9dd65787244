"""The overview's POST rollup kept by the real engine (broadcasts/rollups.py): a worker process delivering over
HTTP to the sandbox leaves, per channel, exactly as many POSTs in ``ChannelMinute`` as the sandbox received, and
the overview reads them."""

import pytest
from django.utils import timezone

from broadcasts.models import ChannelMinute
from broadcasts.overview import overview_read
from broadcasts.queue import enqueue_dispatch
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_every_post_is_counted_once_in_its_channels_minutes(
    org, channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a broadcast of 25 recipients
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(25))
    # When the engine delivers it
    enqueue_dispatch(broadcast.id)
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=30, message="broadcast completed")
    # Then the rollup holds one count per POST the sandbox received, and the overview shows them
    posts = len(delivery_sandbox.requests())
    assert posts == 25
    rows = ChannelMinute.objects.filter(channel=channel)
    assert sum(sum(row.per_second) for row in rows) == posts
    rate = overview_read(organization_id=org.id, now=timezone.now()).channels[0]
    assert rate.posted == posts and 1 <= rate.peak_second <= posts
