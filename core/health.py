"""Liveness of what the service cannot work without (the database and the Celery broker), and of the worker and
beat processes, which write heartbeats into the cache (Redis in production) that the web reads."""

import logging
import time

import redis
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

# A health probe must answer quickly even when a server is down: never wait on it for long.
REDIS_TIMEOUT_SECONDS = 1.0


# A worker or beat whose last heartbeat is older than this is "stale" (docs/operations.md: seen in the last minute).
HEARTBEAT_STALE_SECONDS = 60.0
HEARTBEAT_KEYS = {"worker": "health:heartbeat:worker", "beat": "health:heartbeat:beat"}
# What decides the answer's status code: only these down is a 503; a stale worker or beat is reported, with a 200.
REQUIRED_CHECKS = ("database", "broker")


def health_check() -> dict[str, str]:
    """``{"database": "ok" | <why not>, "broker": "ok" | <why not>, "worker": "ok" | "stale", "beat": ...}``."""
    checks = {"database": _database(), "broker": _broker()}
    for kind in HEARTBEAT_KEYS:
        # With the broker (Redis) down the heartbeats cannot be read either: do not wait on it twice.
        age = heartbeat_age(kind) if checks["broker"] == "ok" else None
        checks[kind] = "ok" if age is not None and age <= HEARTBEAT_STALE_SECONDS else "stale"
    return checks


def heartbeat_touch(kind: str) -> None:
    """Record that a worker (or beat) is alive now; never raises (a heartbeat must not break its process)."""
    from django.core.cache import cache

    try:
        cache.set(HEARTBEAT_KEYS[kind], time.time(), timeout=None)
    except Exception as exc:  # noqa: BLE001 - Redis away: the heartbeat goes stale, which is the truth
        logger.debug("health: %s heartbeat not written (%s)", kind, exc.__class__.__name__)


def heartbeat_age(kind: str) -> float | None:
    """Seconds since the last heartbeat of ``kind`` ("worker" or "beat"), or None when none is known."""
    from django.core.cache import cache

    try:
        seen = cache.get(HEARTBEAT_KEYS[kind])
    except Exception as exc:  # noqa: BLE001
        logger.debug("health: %s heartbeat not read (%s)", kind, exc.__class__.__name__)
        return None
    return max(0.0, time.time() - float(seen)) if seen is not None else None


def _database() -> str:
    try:
        connection = connections["default"]
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:  # any failure means "down"; the probe itself must not fail
        logger.warning("health: database check failed: %s", exc)
        try:  # a broken connection is not reused by the next request
            connections["default"].close_if_unusable_or_obsolete()
        except Exception:
            logger.debug("health: closing the broken connection failed", exc_info=True)
        return f"unavailable: {exc.__class__.__name__}"


def _broker() -> str:
    broker_url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    # Redis is the broker and also holds the rate-limit buckets and caches: both URLs must answer.
    redis_urls = [url for url in dict.fromkeys([broker_url, settings.REDIS_URL]) if url.startswith(("redis", "rediss"))]
    for url in redis_urls:
        problem = _redis_ping(url)
        if problem:
            return problem
    if broker_url.startswith("memory"):
        return "ok"  # in-process transport (a test configuration): nothing to reach
    if not redis_urls:
        return f"unavailable: unsupported broker {broker_url.split(':', 1)[0]!r}"
    return "ok"


def _redis_ping(url: str) -> str | None:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
        return None
    except Exception as exc:
        logger.warning("health: broker check failed: %s", exc.__class__.__name__)
        return f"unavailable: {exc.__class__.__name__}"
    finally:
        client.close()
