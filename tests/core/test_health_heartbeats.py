"""GET /v1/health reports whether a worker and beat were seen in the last minute ("ok" | "stale"); a stale one is
still a 200: only PostgreSQL or Redis down makes it a 503."""

from __future__ import annotations

import os
import time

import pytest
from django.core.cache import cache
from django.db import connection

from core.health import HEARTBEAT_KEYS, heartbeat_touch
from tests.delivery_support import FAST_DELIVERY_SETTINGS, CeleryProcess, celery_env, database_url_for, wait_for


def _checks(anon_api) -> tuple[int, dict]:
    response = anon_api.get("/v1/health")
    return response.status_code, response.json()


@pytest.mark.django_db
def test_never_seen_is_stale_and_still_200(anon_api):
    status, body = _checks(anon_api)
    assert status == 200
    assert body["checks"] == {"database": "ok", "broker": "ok", "worker": "stale", "beat": "stale"}


@pytest.mark.django_db
def test_seen_now_is_ok_and_over_a_minute_ago_is_stale(anon_api):
    heartbeat_touch("worker")
    cache.set(HEARTBEAT_KEYS["beat"], time.time() - 61, timeout=None)
    status, body = _checks(anon_api)
    assert status == 200
    assert (body["checks"]["worker"], body["checks"]["beat"]) == ("ok", "stale")
    cache.set(HEARTBEAT_KEYS["worker"], time.time() - 59, timeout=None)
    assert _checks(anon_api)[1]["checks"]["worker"] == "ok"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_and_beat_are_seen_and_go_stale_once_gone(anon_api, settings):
    # Given a worker and a beat on a Redis database of their own (this process reads the same one)
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/12"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
    }
    from django.core.cache import caches

    caches["default"].clear()
    env = celery_env(
        database_url=database_url_for(connection.settings_dict["NAME"]),
        graph_url="http://127.0.0.1:9",
        overrides={**FAST_DELIVERY_SETTINGS, "REDIS_URL": redis_url},
    )
    assert _checks(anon_api)[1]["checks"]["worker"] == "stale"
    worker = CeleryProcess("worker", env=env, concurrency=1).start()
    beat = CeleryProcess("beat", env=env).start()
    try:
        # Then both are ok
        wait_for(
            lambda: (
                {k: v for k, v in _checks(anon_api)[1]["checks"].items() if k in ("worker", "beat")}
                == {"worker": "ok", "beat": "ok"}
            ),
            timeout=60,
            message="worker and beat ok",
        )
        # and beat's ticks keep its heartbeat fresh (written at most every 5 s, at its ~1 s publishes)
        first = cache.get(HEARTBEAT_KEYS["beat"])
        wait_for(lambda: cache.get(HEARTBEAT_KEYS["beat"]) > first, timeout=20, message="a later beat heartbeat")
        # and the worker ran beat's core.heartbeat ping on the maintenance queue
        wait_for(lambda: "core.heartbeat" in worker.log(), timeout=30, message="core.heartbeat in the worker's log")
    finally:
        worker.stop()
        beat.stop()
    # When they are gone for over a minute (their last heartbeats aged by hand), then "stale" with a 200
    for key in HEARTBEAT_KEYS.values():
        cache.set(key, cache.get(key) - 61, timeout=None)
    status, body = _checks(anon_api)
    assert status == 200
    assert (body["checks"]["worker"], body["checks"]["beat"]) == ("stale", "stale")
