"""The process's Redis client for our own keys (the delivery engine's pacing, holds, places, marks and journal).

One client per URL, built once per process with fail-fast options; Django's cache and Celery's broker keep their
own (and stay on REDIS_URL: Celery needs a single Redis). The engine's Redis is ``LIMITER_REDIS_URL`` (default
REDIS_URL). A ``redis+cluster://host:port`` (or ``rediss+cluster://``) URL names any node of a Redis Cluster: the
client is then redis-py's ``RedisCluster``, which routes each command and script by its keys' hash slot. Every
multi-key script of ours keeps its keys under one hash tag (``{ch:<channel id>}``), so it runs unchanged there.
"""

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def limiter_url() -> str:
    """The engine's Redis URL."""
    return getattr(settings, "LIMITER_REDIS_URL", "") or settings.REDIS_URL


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


@cache
def _client(url: str):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Fail fast: these calls run on a pump's event loop, which must not sit in redis-py's default 10 retries with
    # backoff (seconds) while Redis is away. One immediate retry reconnects a pooled connection a restarted server
    # closed; beyond that the caller waits and retries on its own schedule (it posts nothing meanwhile).
    options = {"socket_timeout": 2, "socket_connect_timeout": 1, "retry": Retry(NoBackoff(), 1)}
    scheme, rest = url.split("://", 1)
    if scheme in CLUSTER_SCHEMES:
        from redis.cluster import RedisCluster

        # The cluster client learns the slot map from any node given; a moved slot (resharding, failover) is
        # followed by redis-py itself.
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def redis_client():
    """The process's engine Redis client (its pools are fork-safe: redis-py resets them in a child). The engine runs
    on Redis only: without a URL it is a configuration error, not a mode."""
    url = limiter_url()
    if not url:
        raise ImproperlyConfigured("REDIS_URL (or LIMITER_REDIS_URL) is not set: the delivery engine needs Redis")
    return _client(url)
