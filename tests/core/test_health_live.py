"""GET /v1/health/live: 200 whenever the process serves requests, touching neither PostgreSQL nor Redis."""

import pytest
from django.db import connection

from tests.delivery_support import redis_kill, redis_start


def _no_query(execute, sql, params, many, context):
    raise AssertionError(f"the liveness probe ran a query: {sql}")


@pytest.mark.django_db
def test_live_answers_200_with_redis_down_and_without_a_query(client):
    redis_kill()
    try:
        # Redis is really gone: readiness says so
        assert client.get("/v1/health").status_code == 503
        # When the liveness probe is asked, with any query failing the test
        with connection.execute_wrapper(_no_query):
            response = client.get("/v1/health/live", HTTP_AUTHORIZATION="Bearer kbai_pk_not-a-token")
        # Then it answers 200 (a token, even a bad one, is not looked at)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response["X-Request-Id"]
    finally:
        redis_start()


def test_live_refuses_other_methods(client, db):
    assert client.post("/v1/health/live").status_code == 405
