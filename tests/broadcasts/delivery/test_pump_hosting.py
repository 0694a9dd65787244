"""A pump host takes on a small broadcast at its next look (docs/rules.md, fairness), even on a channel it looked at
a moment ago: one broadcast a second on one idle channel comes while the pump that served the one before holds the
channel's place or just gave it back, and a host that skipped the channel then must not skip the new one."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from broadcasts.models import Broadcast, Send
from tests.delivery_support import broadcast_make, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def look(host) -> bool:
    return host.runtime.loop.run_until_complete(host._adopt_one())


def served(host) -> None:
    host.runtime.loop.run_until_complete(asyncio.gather(*host.tasks))


def test_a_new_broadcast_ends_the_skip_of_a_channel_seen_without_work(channel, template, delivery_sandbox, host):
    # Given a channel whose running broadcast's one send another pump has claimed: the host looks, finds no work
    earlier = broadcast_make(channel=channel, template=template, recipients=numbers(1), status="IN_PROGRESS")
    Send.objects.filter(broadcast=earlier).update(lease_expires_at=timezone.now() + timedelta(seconds=30), attempts=1)
    assert look(host) is False
    assert host.skip_until[channel.id][1] == earlier.id

    # When a one-recipient broadcast comes on the channel right after
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1, start=1))

    # Then the host's next look takes it on (not a second later), and its send goes out
    assert look(host) is True
    served(host)
    assert Send.objects.get(broadcast=broadcast).status == "SENT"
    assert [r["to"].lstrip("+") for r in delivery_sandbox.requests()] == [numbers(1, start=1)[0].lstrip("+")]


def test_a_channel_whose_place_is_held_is_taken_on_at_the_look_after_it_is_given_back(
    channel, template, delivery_sandbox, host
):
    from broadcasts.delivery import limiter

    # Given a small broadcast on a channel whose place another pump holds (it served the channel's last broadcast)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1))
    assert limiter.channel_slot_acquire(channel_id=channel.id, holder="other", limit=1, hold_seconds=30)
    assert limiter.channels_slots_taken(channel_ids=[channel.id, "nochannel"]) == {channel.id: 1, "nochannel": 0}
    assert look(host) is False

    # When that pump gives the place back
    limiter.channel_slot_release(channel_id=channel.id, holder="other")

    # Then the host's next look takes the broadcast on, and it is sent
    assert look(host) is True
    served(host)
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
    assert len(delivery_sandbox.requests()) == 1


def test_a_small_jobs_pump_goes_on_with_the_channels_next_small_broadcasts(
    channel, template, delivery_sandbox, delivery_settings, host
):
    # Given a host with no room for big work (its small pumps do not follow onto the channel's next work) and three
    # one-recipient broadcasts on one channel, none started (their dispatch waits for a free process)
    delivery_settings.DELIVERY_PUMP_RATE = 0
    broadcasts = [broadcast_make(channel=channel, template=template, recipients=numbers(1, start=i)) for i in range(3)]

    # When the host takes the channel on
    assert look(host) is True
    served(host)

    # Then its one pump sent all three, one after another
    assert len(host.pumps) == 1 and host.pumps[0].follow is False
    assert set(Broadcast.objects.filter(id__in=[b.id for b in broadcasts]).values_list("status", flat=True)) == {
        "COMPLETED"
    }
    assert len(delivery_sandbox.requests()) == 3


def test_a_small_jobs_pump_leaves_big_work_to_a_process_of_its_own(
    channel, template, delivery_sandbox, delivery_settings, host
):
    # Given the same host, one small broadcast and a big one after it on the channel
    delivery_settings.DELIVERY_PUMP_RATE = 0
    small = broadcast_make(channel=channel, template=template, recipients=numbers(1))
    big = broadcast_make(channel=channel, template=template, recipients=numbers(60, start=1))

    # When the host takes the channel on (for the small one: the channel's due work counts the big one's sends too,
    # so it is taken as small only while the big one is not due)
    Send.objects.filter(broadcast=big).update(next_attempt_at=timezone.now() + timedelta(seconds=30))
    assert look(host) is True
    Send.objects.filter(broadcast=big).update(next_attempt_at=None)
    served(host)

    # Then its pump sent the small one and stopped: the big one is left to its own chunk task
    assert Broadcast.objects.get(id=small.id).status == "COMPLETED"
    assert Send.objects.filter(broadcast=big, status="PENDING").count() == 60
    assert len(delivery_sandbox.requests()) == 1
