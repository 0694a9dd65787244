"""Fixtures of the delivery tests: the engine's Redis (the test Redis, or a real three-node Redis Cluster as
LIMITER_REDIS_URL) and Meta's signed webhooks from the sandbox to our receiver."""

import pytest

from tests.broadcasts.delivery.support import META_APP_SECRET
from tests.delivery_support import RedisCluster


@pytest.fixture(scope="session")
def redis_cluster():
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def limiter_on_cluster(settings, redis_cluster) -> RedisCluster:
    """This process's engine keys (limiter, holds, places, wakes, journal) on the cluster; the broker stays."""
    settings.LIMITER_REDIS_URL = redis_cluster.url
    return redis_cluster


@pytest.fixture
def meta_webhooks(delivery_sandbox, live_server, settings, channel):
    """The sandbox's webhooks (signed with META_APP_SECRET) pointed at our receiver."""
    settings.WHATSAPP_APP_SECRET = META_APP_SECRET
    delivery_sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=META_APP_SECRET,
        delivered_after_ms=50,
        read_after_ms=100,
        phone_numbers={channel.phone_number_id: {"waba_id": channel.waba_id}},
    )
    return delivery_sandbox
