"""The suite runs against real servers: PostgreSQL and Redis that `make test` starts."""

import redis
from django.conf import settings
from django.db import connection


def test_database_is_postgresql(db):
    with connection.cursor() as cur:
        cur.execute("select version()")
        assert "PostgreSQL" in cur.fetchone()[0]


def test_redis_answers():
    assert settings.REDIS_URL.startswith("redis://127.0.0.1:")
    assert redis.Redis.from_url(settings.REDIS_URL).ping() is True


def test_unknown_api_path_answers_in_the_error_envelope(client):
    response = client.get("/v1/does-not-exist")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"
