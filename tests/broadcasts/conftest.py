"""Fixtures for delivery tests: the sandbox Graph API and a real Celery worker on the test database."""

import pytest
from django.db import connection

from sandbox.process import SandboxProcess, start_sandbox
from tests.delivery_support import FAST_DELIVERY_SETTINGS, CeleryProcess, celery_env, database_url_for


@pytest.fixture(scope="session")
def delivery_sandbox_server() -> SandboxProcess:
    server = start_sandbox(latency_ms=5)
    yield server
    server.stop()


@pytest.fixture
def delivery_sandbox(delivery_sandbox_server) -> SandboxProcess:
    """The sandbox, emptied, at 5 ms latency (no webhooks)."""
    if not delivery_sandbox_server.alive():
        pytest.fail(f"the sandbox process died:\n{delivery_sandbox_server.log()}")
    delivery_sandbox_server.reset()
    delivery_sandbox_server.config(latency_ms=5)
    return delivery_sandbox_server


@pytest.fixture(scope="session")
def worker_env(django_db_setup, django_db_blocker, delivery_sandbox_server) -> dict[str, str]:
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    return celery_env(
        database_url=database_url_for(name),
        graph_url=delivery_sandbox_server.graph_url,
        overrides=FAST_DELIVERY_SETTINGS,
    )


@pytest.fixture(scope="session")
def _session_worker(worker_env):
    holder = {"worker": CeleryProcess("worker", env=worker_env, concurrency=2).start()}
    yield holder
    holder["worker"].stop()


@pytest.fixture
def worker(_session_worker, worker_env) -> CeleryProcess:
    """A running Celery worker (2 prefork processes); restarted when a test killed it."""
    if not _session_worker["worker"].alive():
        _session_worker["worker"].stop()
        _session_worker["worker"] = CeleryProcess("worker", env=worker_env, concurrency=2).start()
    return _session_worker["worker"]


@pytest.fixture
def delivery_settings(settings, delivery_sandbox_server):
    """This process's settings as the worker's: in-process calls (sweeper, beat tasks) behave the same."""
    for name, value in FAST_DELIVERY_SETTINGS.items():
        setattr(settings, name, value)
    settings.WHATSAPP_GRAPH_URL = delivery_sandbox_server.graph_url
    return settings
