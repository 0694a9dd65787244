"""How one delivery attempt reaches the endpoint: the address that was checked (no DNS-rebinding window),
the URL's host name in Host / SNI / certificate checks, and a total time bound whatever the server does."""

import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from broadcasts.notifications import message_events_publish
from events import endpoints, outbox, transport
from events.models import DeliveryAttempt, DeliveryStatus, EventDelivery
from tests.events.helpers import broadcast_with_sends

NAME = "hooks.customer.test"


@pytest.fixture
def broadcast(org, channel, template):
    return broadcast_with_sends(org=org, channel=channel, template=template, count=3)


def publish_sent(broadcast, index: int) -> None:
    message_events_publish(send_ids=[broadcast.sends.get(index=index).id], status="SENT")


@pytest.fixture
def dns(monkeypatch):
    """A resolver stub for NAME: answers the queued addresses in turn (the last one from then on) and counts
    the lookups; every other name goes to the real resolver."""
    real = socket.getaddrinfo

    class Stub:
        answers: list[str] = []
        lookups = 0

        def __call__(self, host, port, *args, **kwargs):
            if host != NAME:
                return real(host, port, *args, **kwargs)
            self.lookups += 1
            address = self.answers[min(self.lookups, len(self.answers)) - 1]
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    stub = Stub()
    monkeypatch.setattr(socket, "getaddrinfo", stub)
    return stub


def test_the_connection_goes_to_the_address_that_was_checked(
    org, broadcast, receiver, endpoint_for, enqueued, dns, settings, monkeypatch
):
    # Given an endpoint whose name first resolves to a "public" address (where the receiver listens) and
    # then, rebound, to a "private" one (another loopback address, where nothing listens)
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    endpoint, _ = endpoint_for(org, f"http://{NAME}:{port}/hooks?x=1")
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    monkeypatch.setattr(endpoints, "_address_is_public", lambda address: address == "127.0.0.1")
    dns.answers = ["127.0.0.1", "127.0.0.2"]
    publish_sent(broadcast, 0)
    # When the event is delivered
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id) == {"delivered": 1, "failed_attempts": 0}
    # Then the attempt looked the name up once and posted to the checked address, with the name as Host
    assert dns.lookups == 1
    [request] = receiver.requests
    assert request["path"] == "/hooks?x=1"
    assert request["headers"]["Host"] == f"{NAME}:{port}"
    # And the next attempt looks it up again: the rebound (private) answer is refused without connecting
    publish_sent(broadcast, 1)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id) == {"delivered": 0, "failed_attempts": 1}
    assert dns.lookups == 2 and len(receiver.requests) == 1
    assert "private" in EventDelivery.objects.get(status=DeliveryStatus.PENDING).last_error


def test_with_private_addresses_allowed_each_attempt_resolves_once_and_posts_there(
    org, broadcast, receiver, endpoint_for, enqueued, dns
):
    # Given WEBHOOKS_ALLOW_PRIVATE on and a name answering 127.0.0.1 once, then 127.0.0.2 (nothing listens)
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    endpoint, _ = endpoint_for(org, f"http://{NAME}:{port}/hooks")
    dns.answers = ["127.0.0.1", "127.0.0.2"]
    # When two events are delivered one attempt at a time
    publish_sent(broadcast, 0)
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["delivered"] == 1
    assert dns.lookups == 1 and len(receiver.requests) == 1
    publish_sent(broadcast, 1)
    # Then the second attempt used its own (new) answer and nothing else: connection refused at 127.0.0.2
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    assert dns.lookups == 2 and len(receiver.requests) == 1
    assert "ConnectionError" in EventDelivery.objects.get(status=DeliveryStatus.PENDING).last_error


def test_a_name_resolving_to_loopback_is_refused_without_connecting(
    org, broadcast, endpoint_for, enqueued, dns, settings
):
    # Given a listening socket at 127.0.0.1 that counts the connections it is offered
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    endpoint, _ = endpoint_for(org, f"http://{NAME}:{port}/hooks")
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    dns.answers = ["127.0.0.1"]
    publish_sent(broadcast, 0)
    try:
        # When the delivery runs, then it is a refused attempt, and no connection reached the socket
        assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert dns.lookups == 1
    delivery = EventDelivery.objects.get()
    assert delivery.last_error.startswith("Refused:") and "127.0.0.1" not in delivery.last_error


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for NAME only (the openssl command line)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={NAME}"]
        + ["-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_receiver(tls_files):
    """An HTTPS server on 127.0.0.1 with NAME's certificate; records the SNI name of each handshake."""
    cert, key = tls_files
    seen: dict[str, list] = {"sni": [], "hosts": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["hosts"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def test_https_sends_sni_and_verifies_the_certificate_for_the_host_name(
    org, broadcast, endpoint_for, enqueued, dns, tls_receiver, tls_files, monkeypatch
):
    # Given an https endpoint NAME -> 127.0.0.1 whose certificate (for NAME) the client trusts
    port, seen = tls_receiver
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    monkeypatch.setattr(transport, "_tls_context", lambda: trusted)
    endpoint, _ = endpoint_for(org, f"https://{NAME}:{port}/hooks")
    dns.answers = ["127.0.0.1"]
    publish_sent(broadcast, 0)
    # When delivered, then the handshake named NAME (SNI), its certificate verified, and Host is NAME
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["delivered"] == 1
    assert seen["sni"] == [NAME] and seen["hosts"] == [f"{NAME}:{port}"]


def test_https_refuses_a_certificate_for_another_name(
    org, broadcast, endpoint_for, enqueued, tls_receiver, tls_files, monkeypatch
):
    # Given the same server reached as 127.0.0.1 (its certificate names NAME only)
    port, seen = tls_receiver
    trusted = ssl.create_default_context(cafile=str(tls_files[0]))
    monkeypatch.setattr(transport, "_tls_context", lambda: trusted)
    endpoint, _ = endpoint_for(org, f"https://127.0.0.1:{port}/hooks")
    publish_sent(broadcast, 0)
    # Then the attempt fails certificate verification and posts nothing
    assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["failed_attempts"] == 1
    assert "certificate" in EventDelivery.objects.get().last_error.lower()
    assert seen["hosts"] == []


class DripServer:
    """A raw TCP server on 127.0.0.1 that reads a request and then answers ``answer`` one byte at a time
    every ``interval`` seconds (for up to 30 s), after sending ``prefix`` at once."""

    def __init__(self, *, prefix: bytes, answer: bytes, interval: float = 0.5) -> None:
        self.prefix, self.answer, self.interval = prefix, answer, interval
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.closed_after: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            conn.recv(65536)
            try:
                conn.sendall(self.prefix)
                for byte in self.answer * 100:
                    if self.stopped.is_set() or time.monotonic() - started > 30:
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.interval)
            except OSError:
                self.closed_after.append(time.monotonic() - started)

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.mark.parametrize(
    ("prefix", "answer"),
    [
        pytest.param(b"", b"HTTP/1.1 200 OK\r\nX-Drip: ", id="status-line-dripped"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"x", id="headers-then-body-dripped"),
    ],
)
def test_an_attempt_ends_at_the_total_bound_whatever_the_server_drips(
    org, broadcast, endpoint_for, enqueued, settings, prefix, answer
):
    # Given an endpoint that drips its answer, a byte every 0.5 s (each read is quick: no per-read timeout fires)
    settings.EVENTS_DELIVERY_TIMEOUT_SECONDS = 2
    server = DripServer(prefix=prefix, answer=answer)
    try:
        endpoint, _ = endpoint_for(org, f"http://127.0.0.1:{server.port}/hooks")
        publish_sent(broadcast, 0)
        # When delivered
        started = time.monotonic()
        stats = outbox.endpoint_deliver_due(endpoint_id=endpoint.id)
        took = time.monotonic() - started
    finally:
        server.close()
    # Then the attempt ended at the 2 s bound and is a failed attempt, to be retried later
    assert stats == {"delivered": 0, "failed_attempts": 1}
    assert 1.9 <= took <= 2.6, took
    delivery = EventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_error.startswith("Timeout") and delivery.next_attempt_at > delivery.created_at
    [attempt] = DeliveryAttempt.objects.all()
    assert 1900 <= attempt.duration_ms <= 2600 and attempt.status_code is None


def test_the_default_bound_is_ten_seconds():
    from django.conf import settings

    assert settings.EVENTS_DELIVERY_TIMEOUT_SECONDS == 10


def test_keep_alive_connections_are_reused_within_a_run(org, broadcast, endpoint_for, enqueued):
    # Given a keep-alive HTTP/1.1 receiver that counts connections
    connections: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint, _ = endpoint_for(org, f"http://127.0.0.1:{server.server_address[1]}/hooks")
        send_id = broadcast.sends.get(index=0).id
        for status in ("SENT", "DELIVERED", "READ"):
            message_events_publish(send_ids=[send_id], status=status)
        # When one run delivers one message's three events (in order: one batch after the other)
        assert outbox.endpoint_deliver_due(endpoint_id=endpoint.id)["delivered"] == 3
    finally:
        server.shutdown()
        server.server_close()
    # Then the three POSTs shared one kept-alive connection
    assert len(connections) == 1
