"""The process's Redis client for our own keys (the delivery engine's pacing, holds, marks and journal).

One client, built once per process with fail-fast options; Django's cache and Celery's broker keep their own.
"""

from functools import cache

from django.conf import settings


@cache
def _client():
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # Fail fast: these calls run on a pump's event loop, which must not sit in redis-py's default 10 retries with
    # backoff (seconds) while Redis is away. One immediate retry reconnects a pooled connection a restarted server
    # closed; beyond that the caller waits and retries on its own schedule (it posts nothing meanwhile).
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def redis_client():
    """The process's Redis client (its pool is fork-safe: redis-py resets it in a child), or None without Redis."""
    return _client() if settings.REDIS_URL else None
