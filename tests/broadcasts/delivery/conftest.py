"""Fixtures of the delivery tests: the engine's Redis (the test Redis, or a real three-node Redis Cluster as
LIMITER_REDIS_URL), Meta's signed webhooks from the sandbox to our receiver, and a pump host run in this process."""

import asyncio

import pytest
from django.db import connections

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


@pytest.fixture
def host(delivery_settings):
    """A pump host serving nothing yet, on a runtime of its own (its adopted pumps run when the test runs them)."""
    from broadcasts.delivery.pump import PumpHost
    from broadcasts.delivery.runtime import Runtime

    runtime = Runtime()
    runtime.graph_client()  # made before its loop runs, as the chunk task's own pump does
    pump_host = PumpHost(runtime=runtime)
    try:
        yield pump_host
    finally:
        if pump_host.tasks:
            runtime.loop.run_until_complete(asyncio.gather(*pump_host.tasks, return_exceptions=True))
        pump_host.close()
        for executor in (runtime.db, *runtime.lanes):
            executor.submit(connections.close_all).result()
        runtime.close()
