"""Fixtures shared by every test module. Apps keep their own in tests/<app>/conftest.py."""

import time

import pytest
from django.core.cache import cache
from django.db.backends.postgresql.operations import DatabaseOperations
from rest_framework.test import APIClient

from templates_registry.models import Channel, Template
from tokens.models import Organization
from tokens.scopes import KNOWN_SCOPES
from tokens.services import token_create


def _flush_retrying_a_deadlock(execute_sql_flush):
    """The flush between transactional tests TRUNCATEs every table while a test's live processes (a worker winding
    down, a webhook the sandbox posted last) may still write: PostgreSQL then picks one side as a deadlock's victim.
    When it picks the flush, the flush is simply tried again (the writer has committed or rolled back by then)."""
    import psycopg

    def flush(self, sql_list):
        for attempt in range(5):
            try:
                return execute_sql_flush(self, sql_list)
            except Exception as exc:
                if attempt == 4 or not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
                    raise
                time.sleep(0.2 * (attempt + 1))
        return None

    return flush


DatabaseOperations.execute_sql_flush = _flush_retrying_a_deadlock(DatabaseOperations.execute_sql_flush)


@pytest.fixture(autouse=True)
def _clean_cache():
    """Each test starts with an empty Redis cache (throttles, token touch marks, rate buckets)."""
    cache.clear()
    yield


@pytest.fixture
def org(db) -> Organization:
    return Organization.objects.create(name="Acme")


@pytest.fixture
def other_org(db) -> Organization:
    return Organization.objects.create(name="Globex")


@pytest.fixture
def channel(org) -> Channel:
    return Channel.objects.create(
        organization=org,
        phone_number_id="100000000000001",
        waba_id="200000000000001",
        access_token="EAAG-test-channel-token",
        max_mps=80,
    )


@pytest.fixture
def template(channel) -> Template:
    return Template.objects.create(
        waba_id=channel.waba_id,
        name="welcome_v2",
        language="es",
        status=Template.Status.APPROVED,
        category="MARKETING",
        parameter_format=Template.ParameterFormat.NAMED,
        components=[{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}],
        body_variables=["nombre", "monto"],
    )


@pytest.fixture
def make_token(org):
    def _make(scopes=KNOWN_SCOPES, organization=None, **kwargs) -> str:
        return token_create(organization=organization or org, scopes=list(scopes), **kwargs).secret

    return _make


@pytest.fixture
def token(make_token) -> str:
    return make_token()


@pytest.fixture
def api(token) -> APIClient:
    """An API client authenticated with a token holding every scope."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()
