"""Redis or PostgreSQL down (docs/rules.md and docs/api.md): every API endpoint answers 503 ``service_unavailable``
in the envelope, with Retry-After, never a 500; once the server is back the same requests are 2xx.

The servers are the test run's own (scripts/scripts/services.py): stopped for real, then started again
on the same port with the same options, so the tests after these find them as they were.
"""

import os
import shlex
import subprocess
import time
from unittest import mock
from urllib.parse import urlsplit

import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection

from broadcasts.models import Broadcast
from tests.core.hostile import BULK, META_WEBHOOK, WEBHOOKS, assert_envelope, bulk_body, client_for
from tests.delivery_support import redis_server_binary
from tests.events.helpers import meta_envelope, meta_signature, status_entry

pytestmark = pytest.mark.slow

META_SECRET = "meta-app-secret"


def _services_dir() -> str:
    return os.environ["TEST_SERVICES_DIR"]


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class RedisServer:
    """The test Redis, stopped and started again exactly as scripts/services.py started it."""

    def __init__(self) -> None:
        self.port = urlsplit(settings.REDIS_URL).port
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)

    def up(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        try:
            self.client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        _wait(lambda: not self.up(), "Redis to stop")

    def start(self) -> None:
        work = _services_dir()
        subprocess.run(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--pidfile", f"{work}/redis.pid", "--logfile", f"{work}/redis.log", "--dir", work],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=30,
        )  # fmt: skip
        _wait(self.up, "Redis to start")


class PostgresServer:
    """The test PostgreSQL, stopped, then started with the options it was started with."""

    def __init__(self) -> None:
        self.data = os.path.join(_services_dir(), "pg")
        self.pg_ctl = os.path.join(os.environ["TEST_PG_BINDIR"], "pg_ctl")
        # postmaster.opts holds the server's own command line: binary, then its arguments.
        with open(os.path.join(self.data, "postmaster.opts")) as opts:
            args = shlex.split(opts.read())[1:]
        pairs = [args[i : i + 2] for i in range(0, len(args), 2)]
        self.options = " ".join(shlex.join(pair) for pair in pairs if pair[0] != "-D")

    def _ctl(self, *args: str) -> None:
        # Output to the server's log: a pipe held open by postgres would block us forever.
        subprocess.run(
            [*_as_postgres(), self.pg_ctl, "-D", self.data, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "-t", "60", "stop")

    def start(self) -> None:
        self._ctl("-l", os.path.join(_services_dir(), "pg.log"), "-o", self.options, "-w", "-t", "60", "start")


def _wait(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _requests(client, channel_id: str, broadcast_id: str) -> dict[str, object]:
    """One request to every API endpoint, keyed by a readable name."""
    status_body = orjson.dumps(meta_envelope(statuses=[status_entry("wamid.outage", "delivered")]))
    return {
        "POST bulk": lambda: client.post(BULK, orjson.dumps(bulk_body(channel_id)), content_type="application/json"),
        "GET bulk": lambda: client.get(BULK),
        "GET broadcast": lambda: client.get(f"{BULK}/{broadcast_id}"),
        "GET recipients": lambda: client.get(f"{BULK}/{broadcast_id}/recipients"),
        "POST pause": lambda: client.post(f"{BULK}/{broadcast_id}/pause"),
        "POST resume": lambda: client.post(f"{BULK}/{broadcast_id}/resume"),
        "GET webhooks": lambda: client.get(WEBHOOKS),
        "POST webhooks": lambda: client.post(
            WEBHOOKS, orjson.dumps({"url": "http://example.com/hook"}), content_type="application/json"
        ),
        "POST meta webhook": lambda: client_for(None).post(
            META_WEBHOOK,
            status_body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=meta_signature(status_body, META_SECRET),
        ),
        "GET health": lambda: client_for(None).get("/v1/health"),
    }


# Endpoints that do not need Redis to serve (Meta's webhook writes rows only) may still answer 2xx.
NEEDS_ONLY_THE_DATABASE = {"POST meta webhook"}


def _assert_unavailable(response, name: str) -> None:
    error = assert_envelope(response, 503, "service_unavailable", outage=True)
    assert int(response["Retry-After"]) >= 1, name
    assert error["message"], name


def _assert_served(calls, channel_id: str) -> None:
    for name, call in calls.items():
        response = call()
        assert_envelope(response)
        assert response.status_code < 300, (name, response.status_code, response.content[:500])


@pytest.fixture
def setup_api(settings, channel, template, token):
    settings.WHATSAPP_APP_SECRET = META_SECRET
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    settings.API_RATE_LIMITS = "100000/min"
    settings.API_ORG_RATE_LIMITS = "100000/min"
    with mock.patch("broadcasts.services.enqueue_dispatch"), mock.patch("broadcasts.lifecycle.broadcast_event_publish"):
        client = client_for(token)
        created = client.post(BULK, orjson.dumps(bulk_body(channel.id)), content_type="application/json")
        assert created.status_code == 202
        yield client, created.json()["broadcast_id"]


@pytest.mark.django_db(transaction=True)
def test_redis_down_every_endpoint_answers_503_then_2xx_once_it_is_back(setup_api, channel):
    client, broadcast_id = setup_api
    server = RedisServer()
    calls = _requests(client, channel.id, broadcast_id)
    before = Broadcast.objects.count()

    # when Redis stops
    server.stop()
    try:
        # then every endpoint that needs it answers 503 in the envelope, quickly, and nothing is created
        for name, call in calls.items():
            started = time.monotonic()
            response = call()
            assert time.monotonic() - started < 5, name
            if name in NEEDS_ONLY_THE_DATABASE:
                assert_envelope(response, outage=True)
                assert response.status_code in (200, 503), (name, response.content)
            else:
                _assert_unavailable(response, name)
        assert Broadcast.objects.count() == before
    finally:
        server.start()

    # and once it is back (same port), the same requests are served
    _assert_served(calls, channel.id)


@pytest.mark.django_db(transaction=True)
def test_postgresql_down_every_endpoint_answers_503_then_2xx_once_it_is_back(setup_api, channel):
    client, broadcast_id = setup_api
    server = PostgresServer()
    calls = _requests(client, channel.id, broadcast_id)

    # when PostgreSQL stops (every connection cut)
    server.stop()
    try:
        # then every endpoint answers 503 in the envelope (health names the database)
        for name, call in calls.items():
            _assert_unavailable(call(), name)
        health = calls["GET health"]()
        assert "database" in health.json()["error"]["details"]
    finally:
        server.start()
        connection.close()

    # and once it is back, the same requests are served
    _assert_served(calls, channel.id)
    assert Broadcast.objects.count() == 2
