"""The request size limit on every JSON endpoint (docs/api.md): a body over ``API_MAX_BODY_BYTES`` is 413
``request_too_large`` in the envelope, before anything parses, authenticates or stores, and without the body
being held in memory.

The endpoints are found by walking the URLconf, so an endpoint added later is covered without touching this file.
"""

import re
import socket
from pathlib import Path
from unittest import mock

import orjson
import pytest
import requests
from django.apps import apps
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.test import APIClient

from core.request_body import DRAIN_LIMIT, READ_CHUNK
from tests.core.hostile import UNKNOWN_ID, assert_envelope
from tests.core.routes import BODY_METHODS, api_routes, handled_methods
from tests.gunicorn_process import gunicorn

LIMIT = 10 * 1024 * 1024


def json_endpoints() -> list[tuple[str, str]]:
    """(METHOD, path) of every route under /v1/ whose view takes a body."""
    return sorted(
        (method, path)
        for path, view_class in api_routes()
        for method in BODY_METHODS
        if method in handled_methods(view_class)
    )


ENDPOINTS = json_endpoints()


def test_the_walk_finds_the_endpoints_the_audit_named():
    assert ("POST", "/v1/suppressions") in ENDPOINTS
    assert ("POST", "/v1/webhooks") in ENDPOINTS
    assert ("POST", "/v1/messages/bulk") in ENDPOINTS
    assert ("POST", f"/v1/messages/bulk/{UNKNOWN_ID}/retry") in ENDPOINTS
    assert ("POST", "/v1/webhooks/whatsapp") in ENDPOINTS
    assert ("DELETE", f"/v1/suppressions/{UNKNOWN_ID}") in ENDPOINTS


class CountingStream:
    """A ``wsgi.input`` that makes up ``size`` bytes as they are read, counting what was asked of it."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.consumed = 0
        self.largest_read = 0

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        self.largest_read = max(self.largest_read, size)
        self.left -= size
        self.consumed += size
        return b"[" * size

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def _stored() -> dict[str, int]:
    """Rows of every model of ours: nothing may be written by a refused request."""
    ours = ("tokens", "templates_registry", "broadcasts", "events")
    return {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.app_label in ours}


@pytest.fixture
def client(token) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.API_RATE_LIMITS = "100000/min"
    settings.API_ORG_RATE_LIMITS = "100000/min"
    settings.WHATSAPP_APP_SECRET = "meta-app-secret"


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_declared_body_over_the_limit_is_413_unread(client, channel, template, method, path):
    before = _stored()
    stream = CountingStream(LIMIT + 1)
    with mock.patch("orjson.loads", side_effect=AssertionError("a refused body was parsed")):
        response = client.generic(
            method, path, b"", content_type="application/json", CONTENT_LENGTH=str(LIMIT + 1), **{"wsgi.input": stream}
        )
    error = assert_envelope(response, 413, "request_too_large")
    assert error["request_id"] == response["X-Request-Id"]
    assert error["details"] == {"body": [f"At most {LIMIT} bytes."]}
    # drained (so the client reads the 413 rather than a reset), in small reads thrown away
    assert stream.consumed == LIMIT + 1
    assert stream.largest_read <= READ_CHUNK
    assert _stored() == before


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_chunked_body_over_the_limit_is_413_after_limit_plus_one_bytes(client, method, path):
    before = _stored()
    stream = CountingStream(DRAIN_LIMIT * 2)
    with mock.patch("orjson.loads", side_effect=AssertionError("a refused body was parsed")):
        response = client.generic(
            method, path, b"", HTTP_TRANSFER_ENCODING="chunked", content_type="application/json",
            **{"wsgi.input": stream},
        )  # fmt: skip
    assert_envelope(response, 413, "request_too_large")
    assert stream.largest_read <= READ_CHUNK
    # limit + 1 bytes decided it; then at most DRAIN_LIMIT more were thrown away, and no more
    assert stream.consumed == LIMIT + 1 + DRAIN_LIMIT
    assert _stored() == before


@pytest.mark.django_db
def test_the_413_comes_before_authentication(anon_api):
    for method, path in [("POST", "/v1/suppressions"), ("POST", "/v1/webhooks")]:
        response = anon_api.generic(
            method, path, b"", content_type="application/json", CONTENT_LENGTH=str(LIMIT + 1),
            **{"wsgi.input": CountingStream(LIMIT + 1)},
        )  # fmt: skip
        assert_envelope(response, 413, "request_too_large")


@pytest.mark.django_db
def test_a_bad_content_length_is_400_in_the_envelope(client):
    response = client.generic("POST", "/v1/suppressions", b"{}", content_type="application/json", CONTENT_LENGTH="12x")
    assert_envelope(response, 400, "bad_request")


@pytest.mark.django_db
def test_a_body_at_the_limit_is_read_and_parsed(client):
    body = orjson.dumps({"to": "+34612345678", "reason": None})
    body += b" " * (LIMIT - len(body))
    response = client.generic("POST", "/v1/suppressions", body, content_type="application/json")
    assert response.status_code == 201, response.content


@pytest.mark.django_db
def test_a_chunked_body_within_the_limit_reaches_every_kind_of_view(client, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True

    class Chunked(CountingStream):
        def __init__(self, data: bytes) -> None:
            super().__init__(len(data))
            self.data = data

        def read(self, size: int = -1) -> bytes:
            start = self.consumed
            super().read(size)
            return self.data[start : self.consumed]

    def chunked(path: str, body: dict):
        return client.generic(
            "POST", path, b"", HTTP_TRANSFER_ENCODING="chunked", content_type="application/json",
            **{"wsgi.input": Chunked(orjson.dumps(body))},
        )  # fmt: skip

    # a DRF parser (suppressions, customer webhooks) reads it
    assert chunked("/v1/suppressions", {"to": "+34612345678"}).status_code == 201
    created = chunked("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["broadcast.completed"]})
    assert created.status_code == 201, created.content


def _worker_pid(master_pid: int) -> int:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.M).group(1))


@pytest.fixture
def server(transactional_db, tmp_path):
    db = connection.settings_dict
    env = {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    try:
        with gunicorn(env=env, log_path=tmp_path / "gunicorn.log") as started:
            yield started
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.mark.slow
def test_a_real_server_refuses_streamed_bodies_without_holding_them(server, token):
    base, process = server
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    worker = _worker_pid(process.pid)
    # warm every endpoint up with a small body, so that the peak measured next is the big bodies' alone
    for path in ("/v1/suppressions", "/v1/webhooks"):
        requests.post(f"{base}{path}", data=b"{}", headers=headers, timeout=30)
    peak_before = _peak_rss_kib(worker)

    def generated(size: int):
        sent = 0
        while sent < size:
            chunk = min(1024 * 1024, size - sent)
            sent += chunk
            yield b" " * chunk

    host, port = base.removeprefix("http://").split(":")
    size = 48 * 1024 * 1024
    for path in ("/v1/suppressions", "/v1/webhooks"):
        # declared: a plain client that writes its whole body before reading the answer
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(head)
            for chunk in generated(size):
                sock.sendall(chunk)
            answer = b""
            while part := sock.recv(65536):
                answer += part
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 413 " in status_line, (path, answer[:500])
        assert b'"request_too_large"' in rest
        # chunked (a generator): no Content-Length to refuse it by
        response = requests.post(f"{base}{path}", data=generated(size), headers=headers, timeout=60)
        assert response.status_code == 413, (path, response.content[:500])
        assert response.json()["error"]["code"] == "request_too_large"
    # The chunked read holds at most the limit; the rest is drained and dropped. Reading the 48 MiB whole (as
    # these endpoints did) raises the peak by far more than that.
    grown_mib = (_peak_rss_kib(worker) - peak_before) / 1024
    assert grown_mib < LIMIT / (1024 * 1024) + 8, grown_mib
    assert django_settings.API_MAX_BODY_BYTES == LIMIT
