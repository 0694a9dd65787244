"""GET /v1/health: no token; 200 when database and broker answer, else 503 naming what is down (worker and beat
liveness: tests/core/test_health_heartbeats.py)."""

import re
import socket
import tomllib
from pathlib import Path

import pytest
from django.db.utils import OperationalError
from django.test import override_settings

import config

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_health_ok_without_token(anon_api):
    response = anon_api.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: body["checks"][name] for name in ("database", "broker")} == {"database": "ok", "broker": "ok"}
    assert set(body["checks"]) == {"database", "broker", "worker", "beat"}
    assert set(body) == {"status", "version", "checks"}


def test_health_names_the_running_version(anon_api):
    # the version is config/__init__.py's, the same as pyproject.toml's [project] version
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", config.__version__)
    assert pyproject["project"]["version"] == config.__version__
    response = anon_api.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["version"] == config.__version__


def test_health_ignores_a_bad_token(anon_api):
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    assert anon_api.get("/v1/health").status_code == 200


def test_health_503_when_the_redis_broker_is_down(anon_api):
    down = f"redis://127.0.0.1:{_closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=down, REDIS_URL=down):
        response = anon_api.get("/v1/health")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert "broker" in error["message"]
    assert set(error["details"]) == {"broker"}
    assert error["details"]["broker"].startswith("unavailable")


def test_health_503_when_only_the_celery_broker_url_is_down(anon_api):
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{_closed_port()}/0"):
        assert anon_api.get("/v1/health").status_code == 503


def test_health_503_when_the_database_is_down(anon_api, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.cursor", broken_cursor)
    response = anon_api.get("/v1/health")
    assert response.status_code == 503
    assert set(response.json()["error"]["details"]) == {"database"}


def test_health_with_an_in_process_broker_is_ok(anon_api):
    with override_settings(CELERY_BROKER_URL="memory://", REDIS_URL=""):
        assert anon_api.get("/v1/health").status_code == 200
