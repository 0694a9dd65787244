"""The engine on a real Redis Cluster (LIMITER_REDIS_URL=redis+cluster://...): three masters on loopback.

test_limiter.py runs every limiter test (pace, holds, places, skewed clocks) on the cluster too; here: the keys
really spread over the nodes and need their hash tag, and one real delivery through a worker whose engine keys
live on the cluster while its broker stays the single test Redis.
"""

import pytest
import redis as redis_lib

from broadcasts.delivery import limiter
from broadcasts.models import Send
from broadcasts.queue import enqueue_dispatch
from core.redis import redis_client
from tests.broadcasts.delivery.support import settle
from tests.delivery_support import CeleryProcess, broadcast_make, numbers

pytestmark = [pytest.mark.slow]


@pytest.mark.django_db
def test_a_channels_keys_live_in_one_slot_and_channels_spread_over_the_nodes(limiter_on_cluster):
    # Given the engine's client on the cluster
    client = redis_client()
    assert isinstance(client, redis_lib.RedisCluster)

    # When 30 channels each reserve slots and hold two numbers (one multi-key script each)
    for i in range(30):
        assert limiter.channel_reserve(channel_id=f"k{i}", max_mps=100, want=2).count == 2
        assert limiter.numbers_claim(channel_id=f"k{i}", numbers=["+1", "+2"], hold_seconds=5, tokens=["a", "b"]) == [
            0.0,
            0.0,
        ]

    # Then every node holds some of them, and each channel's keys sit on one slot
    per_node = [
        len(limiter_on_cluster._cli(port, "--scan", "--pattern", "delivery:*").split())
        for port in limiter_on_cluster.ports
    ]
    assert all(count > 0 for count in per_node), per_node
    for i in range(3):
        keys = [limiter.channel_key(f"k{i}", part) for part in ("rate", "number:+1", "number:+2")]
        assert len({client.keyslot(key) for key in keys}) == 1

    # And the same script over keys without a shared tag is refused by the cluster: the tag is what makes it run
    script = client.register_script(limiter._CLAIM_NUMBERS_LUA)
    untagged = [f"delivery:number:k{i}:+1" for i in range(10)]
    assert len({client.keyslot(key) for key in untagged}) > 1
    with pytest.raises((redis_lib.RedisError, redis_lib.exceptions.RedisClusterException), match="slot"):
        script(keys=untagged, args=[5000, *["t"] * len(untagged)])


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_goes_out_through_a_worker_whose_limiter_is_the_cluster(
    channel, template, delivery_sandbox, worker_env, delivery_settings, limiter_on_cluster
):
    # Given a worker whose engine keys (limiter, holds, places, wakes, journal) live on the cluster
    worker = CeleryProcess(
        "worker", env={**worker_env, "LIMITER_REDIS_URL": limiter_on_cluster.url}, concurrency=1
    ).start()
    try:
        channel.max_mps = 20
        channel.save()
        recipients = numbers(30, start=500)
        broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)

        # When it is dispatched (through the single-Redis broker)
        enqueue_dispatch(broadcast.id)

        # Then it completes, one POST per number, at the channel's cap, paced and held on the cluster
        assert settle(broadcast, timeout=30).status == "COMPLETED"
        requests = delivery_sandbox.requests()
        assert sorted(r["to"] for r in requests) == sorted(n.lstrip("+") for n in recipients)
        assert set(Send.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {"SENT"}
        from tests.delivery_support import max_in_any_second

        assert max_in_any_second([r["received_at"] for r in requests]) <= 20
        tag = "{ch:" + channel.id + "}"
        held = limiter_on_cluster.keys(f"delivery:{tag}:number:*")
        assert len(held) == 30
    finally:
        worker.stop()
