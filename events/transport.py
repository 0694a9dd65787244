"""The signed POST of one event to one endpoint: a pinned-address HTTP(S) connection, bounded in time.

Each attempt resolves the endpoint's host and checks every address (``events.endpoints``), then connects to
exactly a checked address (no DNS-rebinding window). From connecting to the last byte read an attempt takes at
most EVENTS_DELIVERY_TIMEOUT_SECONDS (10 s): a watchdog shuts the socket down, whatever the server does.
"""

import http.client
import select
import socket
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from requests.certs import where as ca_bundle_path

from events.endpoints import addresses_refusal, endpoint_url_resolve
from events.models import Event, WebhookEndpoint
from events.signing import event_body, signature_headers, signing_secrets

# Connecting may take this long at most; the whole attempt is bounded by EVENTS_DELIVERY_TIMEOUT_SECONDS (10 s).
CONNECT_TIMEOUT_SECONDS = 3.0
# POSTs of one batch in flight at once: a batch holds at most one event per subject, so posting it
# concurrently keeps the per-subject order. Also the idle keep-alive connections kept per address.
POST_CONCURRENCY = 8
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass
class PostOutcome:
    ok: bool
    status_code: int | None
    error: str
    duration_ms: int


class _DeadlineExceeded(Exception):
    pass


class _PinnedConnectionMixin:
    """An http.client connection to ONE already-checked IP address, while the Host header (and, for https, SNI
    and certificate verification) use the URL's host name: nothing resolves the name again after the check.

    ``abort()`` (from the attempt's watchdog timer) shuts the raw socket down, which ends any blocked connect
    handshake, send or read at once: the attempt's total time is bounded whatever the server does.
    """

    address: str
    _raw: socket.socket | None
    _aborted: bool

    def _pinned_socket(self, timeout: float) -> socket.socket:
        # A socket of the address's own family, connected to the address itself: no name lookup here.
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        self._raw = sock
        try:
            if self._aborted:  # the timer fired already (it sets the flag, then reads _raw)
                raise _DeadlineExceeded()
            sock.settimeout(timeout)
            sock.connect((self.address, self.port))  # type: ignore[attr-defined]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    def abort(self) -> None:
        self._aborted = True
        raw = self._raw
        if raw is not None:
            try:
                # socket.socket's own shutdown (not SSLSocket's): the fd, under whatever TLS state.
                socket.socket.shutdown(raw, socket.SHUT_RDWR)
            except OSError:
                pass

    def reusable(self) -> bool:
        """Idle and still open: an idle keep-alive socket that is readable has been closed by the server."""
        sock = self.sock  # type: ignore[attr-defined]
        if sock is None or self._aborted:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable


class _PinnedHTTPConnection(_PinnedConnectionMixin, http.client.HTTPConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address, self._raw, self._aborted = address, None, False

    def connect(self) -> None:
        self.sock = self._pinned_socket(self.timeout)


class _PinnedHTTPSConnection(_PinnedConnectionMixin, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address, self._raw, self._aborted = address, None, False

    def connect(self) -> None:
        sock = self._pinned_socket(self.timeout)
        # SNI and hostname verification against the URL's name, on the socket to the checked address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


_TLS_CONTEXT: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        context = ssl.create_default_context(cafile=ca_bundle_path())  # verifies the chain and the host name
        _TLS_CONTEXT = context
    return _TLS_CONTEXT


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme=parts.scheme, host=parts.hostname or "", port=port, path=path)


class DeliveryConnections:
    """Keep-alive connections of one delivery run, per (checked address, host, port): an attempt resolves the
    name again and reuses a connection only if it goes to an address that attempt resolved and checked."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, str, int], list[_PinnedConnectionMixin]] = defaultdict(list)
        self._lock = threading.Lock()

    def take(self, *, target: _Target, address: str, timeout: float) -> _PinnedConnectionMixin:
        key = (target.scheme, address, target.host, target.port)
        with self._lock:
            idle = self._idle[key]
            while idle:
                conn = idle.pop()
                if conn.reusable():
                    conn.sock.settimeout(timeout)  # type: ignore[attr-defined]
                    return conn
                conn.close()  # type: ignore[attr-defined]
        if target.scheme == "https":
            return _PinnedHTTPSConnection(
                target.host, target.port, address=address, timeout=timeout, context=_tls_context()
            )
        return _PinnedHTTPConnection(target.host, target.port, address=address, timeout=timeout)

    def give_back(self, conn: _PinnedConnectionMixin, *, target: _Target) -> None:
        key = (target.scheme, conn.address, target.host, target.port)
        with self._lock:
            if len(self._idle[key]) < POST_CONCURRENCY:
                self._idle[key].append(conn)
                return
        conn.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()  # type: ignore[attr-defined]
            self._idle.clear()

    def __enter__(self) -> "DeliveryConnections":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def delivery_post(
    *, connections: DeliveryConnections, endpoint: WebhookEndpoint, event: Event, budget_seconds: float | None = None
) -> PostOutcome:
    """One signed POST: a 2xx delivers; anything else, a redirect or a timeout is a failure.

    The host name is resolved once per attempt and every address checked (private ones refused unless
    WEBHOOKS_ALLOW_PRIVATE); the connection then goes to the first checked address, never to a fresh lookup.
    The attempt, from connecting to the last byte read, ends after EVENTS_DELIVERY_TIMEOUT_SECONDS (or the
    shorter ``budget_seconds``, counted from this call) whatever the server does (a timer shuts the socket down:
    a server that drips bytes cannot hold a worker).
    """
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    target = _target(endpoint.url)
    addresses = endpoint_url_resolve(host=target.host, port=target.port)
    refused = addresses_refusal(host=target.host, addresses=addresses)
    if refused:
        return PostOutcome(False, None, f"Refused: {refused}", elapsed_ms())
    body = event_body(event=event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "broadcasts-webhooks/1",
        # Ours and the Standard Webhooks ones, signed with the current secret (and the previous one in an overlap).
        **signature_headers(
            secrets=signing_secrets(endpoint=endpoint, now=timezone.now()),
            message_id=event.id,
            timestamp=timestamp,
            body=body,
        ),
    }
    budget = float(settings.EVENTS_DELIVERY_TIMEOUT_SECONDS)
    if budget_seconds is not None:
        budget = min(budget, budget_seconds)
    conn = connections.take(target=target, address=addresses[0], timeout=min(CONNECT_TIMEOUT_SECONDS, budget))
    watchdog = threading.Timer(max(0.0, budget - (time.monotonic() - started)), conn.abort)
    watchdog.daemon = True
    watchdog.start()
    reuse = False
    try:
        if conn.sock is None:  # type: ignore[attr-defined]
            conn.connect()  # type: ignore[attr-defined]
        conn.sock.settimeout(max(0.05, budget - (time.monotonic() - started)))  # type: ignore[attr-defined]
        conn.request("POST", target.path, body=body, headers=headers)  # type: ignore[attr-defined]
        response = conn.getresponse()  # type: ignore[attr-defined]
        # Drain a small answer so the connection can be reused (keep-alive); a huge one is cut off (the
        # connection is then closed instead): its body is never needed.
        read = 0
        while chunk := response.read(8192):
            read += len(chunk)
            if read > MAX_RESPONSE_BYTES:
                break
        if conn._aborted:  # the deadline cut the body short (http.client then reads b"" without an error)
            raise _DeadlineExceeded()
        status = response.status
        reuse = response.isclosed() and not response.will_close
    except Exception as exc:  # noqa: BLE001 - whatever the endpoint does is a failed attempt, never a crash
        if conn._aborted:
            error = f"Timeout: no complete answer within {budget:g} s"
        elif isinstance(exc, TimeoutError | socket.timeout):
            error = f"Timeout: {exc}"
        elif isinstance(exc, ssl.SSLError | ssl.CertificateError):
            error = f"SSLError: {exc}"
        else:
            error = f"ConnectionError: {type(exc).__name__}: {exc}"
        return PostOutcome(False, None, error[:1000], elapsed_ms())
    finally:
        watchdog.cancel()
        if reuse and not conn._aborted:
            connections.give_back(conn, target=target)
        else:
            conn.close()  # type: ignore[attr-defined]
    ok = 200 <= status < 300
    return PostOutcome(ok, status, "" if ok else f"HTTP {status}", elapsed_ms())
