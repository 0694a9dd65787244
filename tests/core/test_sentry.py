"""Optional error reporting (docs/operations.md): sentry-sdk only when SENTRY_DSN is set, events without secrets.

The reporting test points SENTRY_DSN at an HTTP server of its own and reads the envelopes the SDK POSTs there.
"""

import gzip
import subprocess
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sentry_sdk
from django.conf import settings

from tests.core.error_urls import LEAKS
from tests.core.logs_support import ROOT, base_env

SCRIPT = """
import django
django.setup()
import sentry_sdk
from django.test import Client, override_settings

assert sentry_sdk.get_client().is_active()
with override_settings(ROOT_URLCONF="tests.core.error_urls"):
    client = Client(raise_request_exception=False)
    assert client.get("/v1/test/boom-django").status_code == 500
    assert client.get("/v1/test/boom-drf").status_code == 500
sentry_sdk.flush(timeout=10)
print("flushed")
"""


def test_nothing_is_initialised_without_a_dsn():
    assert settings.SENTRY_DSN == ""
    assert not sentry_sdk.get_client().is_active()


def test_a_dsn_that_is_set_initialises_it_in_a_fresh_process():
    code = "import django; django.setup(); import sentry_sdk; print(sentry_sdk.get_client().is_active())"
    for dsn, expected in (("", "False"), ("http://public@127.0.0.1:9/1", "True")):
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=base_env(SENTRY_DSN=dsn, DJANGO_SETTINGS_MODULE="config.settings"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        type(self).received.append((self.path, raw))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector():
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_exception_in_a_view_is_reported_without_its_secrets(collector):
    dsn = f"http://public@127.0.0.1:{collector.server_address[1]}/1"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=base_env(SENTRY_DSN=dsn, DJANGO_SETTINGS_MODULE="config.settings"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0 and "flushed" in done.stdout, done.stderr[-3000:]

    envelopes = [body for path, body in _Collector.received if path == "/api/1/envelope/"]
    events = [body for body in envelopes if b'"type":"event"' in body or b'"type": "event"' in body]
    everything = b"\n".join(body for _path, body in _Collector.received)
    # both failures were reported: the plain view's (Django) and the API view's (logged by the exception handler)
    assert any(b"boom-django" in body for body in events), everything[:3000]
    assert any(b"boom-drf" in body for body in events), everything[:3000]
    assert b"RuntimeError" in everything
    # and not one secret went with them
    for leak in LEAKS:
        assert leak.encode() not in everything, leak
        assert leak[8:32].encode() not in everything, leak
    assert b"[REDACTED]" in everything
