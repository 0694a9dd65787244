"""The engine's Redis for delivery tests: the test Redis, or a real three-node Redis Cluster (LIMITER_REDIS_URL)."""

import pytest

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
