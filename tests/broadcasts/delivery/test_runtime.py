"""The per-thread runtime: chunk tasks running at once in threads of one process each get their own loop."""

import pytest

from broadcasts.models import Broadcast, Send
from tests.delivery_support import broadcast_make, numbers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_chunks_running_at_once_in_threads_of_one_process_each_use_their_own_loop(
    channel, template, delivery_sandbox, delivery_settings
):
    # Given two broadcasts on two channels, and a worker whose pool runs tasks in threads (as `make run` does)
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from broadcasts.delivery import runtime as delivery_runtime
    from broadcasts.delivery.pump import send_chunk_deliver
    from templates_registry.models import Channel

    other = Channel.objects.create(
        organization=channel.organization,
        phone_number_id="100000000000002",
        waba_id=channel.waba_id,
        access_token="EAAG-other-channel-token",
        max_mps=80,
    )
    first = broadcast_make(channel=channel, template=template, recipients=numbers(20))
    second = broadcast_make(channel=other, template=template, recipients=numbers(20, start=20))
    for broadcast in (first, second):
        Broadcast.objects.filter(id=broadcast.id).update(status="IN_PROGRESS")

    def deliver(broadcast):
        try:
            ids = list(Send.objects.filter(broadcast=broadcast).order_by("id").values_list("id", flat=True))
            return send_chunk_deliver(broadcast_id=broadcast.id, first_id=ids[0], last_id=ids[-1])
        finally:
            runtime = delivery_runtime.runtime_get()
            runtime.db.submit(connections.close_all).result()
            runtime.db.shutdown()
            connections.close_all()

    # When both chunks run at the same time in two threads
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(deliver, [first, second]))

    # Then all their sends were posted (one loop each: no "event loop is already running"; either may also have
    # served the other's channel, which a pump host does when a channel has work and no pump)
    assert sum(r.sent for chunk_reports in reports for r in chunk_reports) == 40
    assert len(delivery_sandbox.requests()) == 40
    assert set(Broadcast.objects.filter(id__in=[first.id, second.id]).values_list("status", flat=True)) == {"COMPLETED"}


def test_a_process_adds_at_most_delivery_pump_db_lanes_database_threads(settings):
    # Given a runtime allowed two lanes
    from broadcasts.delivery.runtime import Runtime

    settings.DELIVERY_PUMP_DB_LANES = 2
    runtime = Runtime()
    try:
        # When five pumps take a lane
        taken = [runtime.lane_take() for _ in range(5)]

        # Then there are two lanes, shared 3 + 2, none of them the runtime's own thread
        assert len(set(taken)) == 2 and runtime.db not in taken
        assert sorted(runtime.lanes.values()) == [2, 3]
        # and a lane given back is the next one taken
        runtime.lane_give_back(taken[0])
        runtime.lane_give_back(taken[2])
        runtime.lane_give_back(taken[4])
        assert runtime.lane_take() is taken[0]
    finally:
        for lane in runtime.lanes:
            lane.shutdown()
        runtime.db.shutdown()
        runtime.loop.close()
