"""Body size limit: up to 10 MiB accepted; beyond, 413 request_too_large that the client can read.

The gunicorn tests run the real server (1 sync worker) on loopback against the test database,
because a reset-instead-of-413 only shows over a real socket.
"""

import socket
import time

import orjson
import pytest
import requests
from django.db import connection

from broadcasts.models import Broadcast
from tests.broadcasts.test_api_create import URL, payload, stored
from tests.gunicorn_process import gunicorn

LIMIT = 10 * 1024 * 1024


def oversized(channel) -> bytes:
    body = payload(channel, n=1)
    body["padding"] = "x" * (LIMIT + 1024)
    return orjson.dumps(body)


def test_a_body_over_10_mib_is_413_in_the_envelope(api, channel, template):
    response = api.post(URL, oversized(channel), content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert stored() == (0, 0, 0)


def test_the_413_does_not_depend_on_the_token(anon_api, channel, template):
    response = anon_api.post(URL, oversized(channel), content_type="application/json")
    assert response.status_code == 413


@pytest.fixture
def server(transactional_db, tmp_path):
    """gunicorn on a free loopback port, on the test database (rows committed by the test)."""
    db = connection.settings_dict
    env = {"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    try:
        with gunicorn(env=env, log_path=tmp_path / "gunicorn.log") as (base, _process):
            yield base
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.mark.slow
def test_gunicorn_clients_read_the_413_for_declared_and_chunked_bodies(server, channel, template, token):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    raw = oversized(channel)

    # a body whose Content-Length says it is too large
    declared = requests.post(f"{server}{URL}", data=raw, headers=headers, timeout=30)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "request_too_large"

    # a chunked body that turns out too large once read
    chunks = (raw[i : i + 65536] for i in range(0, len(raw), 65536))
    chunked = requests.post(f"{server}{URL}", data=chunks, headers=headers, timeout=30)
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    assert Broadcast.objects.count() == 0


@pytest.mark.slow
def test_a_plain_client_that_sends_everything_first_still_reads_the_413(server, channel, template, token):
    # given a client that writes its whole request before reading (no early-response handling)
    raw = oversized(channel)
    host, port = server.removeprefix("http://").split(":")
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # when it sends 10 MiB and more: the server reads (drains) it instead of resetting
        sock.sendall(head + raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    # then it reads our 413 in the envelope
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line
    assert b'"request_too_large"' in rest


@pytest.mark.slow
def test_gunicorn_accepts_a_chunked_body_within_the_limit(server, channel, template, token):
    # scheduled for tomorrow: nothing is handed to the workers from this test
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    data = orjson.dumps(payload(channel, n=3, scheduled_at=tomorrow))
    chunks = (data[i : i + 100] for i in range(0, len(data), 100))
    response = requests.post(
        f"{server}{URL}",
        data=chunks,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert Broadcast.objects.get().total_recipients == 3
