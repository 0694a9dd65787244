"""Outbound customer events (CONTRACT section 9): endpoints, recording, signing and delivery.

Delivery state is data: every delivery row carries its attempts and next attempt time, a worker
claims rows with a lease, and the beat sweeper re-finds anything a lost task left behind.

Ordering guarantee: for one endpoint, an event is never POSTed while an earlier event of the
same subject (one message; or one broadcast) is still pending for that endpoint. "Earlier" is the
message's status order (sent < delivered < read|failed), then creation order. A delivery that
finally fails (24 h of retries) stops holding back the later ones.
"""

import hashlib
import hmac
import http.client
import ipaddress
import logging
import secrets
import select
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from requests.certs import where as ca_bundle_path

from core.backoff import backoff_seconds as core_backoff
from core.errors import ApplicationError, NotFoundError
from core.timefmt import iso_utc
from events.models import (
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    EventDelivery,
    EventType,
    WebhookEndpoint,
)
from tokens.models import Organization

logger = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = tuple(EventType.values)
# A failing delivery is retried for this long after its event, then marked failed.
DELIVERY_WINDOW = timedelta(hours=24)
# Exponential backoff: 10 s, 20 s, 40 s ... capped at 1 h, so 24 h holds about 30 attempts.
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
DISABLE_AFTER_CONSECUTIVE_FAILURES = 50
# Connecting may take this long at most; the whole attempt is bounded by EVENTS_DELIVERY_TIMEOUT_SECONDS (10 s).
CONNECT_TIMEOUT_SECONDS = 3.0
# Deliveries claimed per query; the lease outlives a batch's worst case so no two workers post one row.
CLAIM_BATCH = 32
# POSTs of one batch in flight at once: a batch holds at most one event per subject, so posting it
# concurrently keeps the per-subject order.
POST_CONCURRENCY = 8
MAX_RESPONSE_BYTES = 64 * 1024
CLAIM_LEASE = timedelta(minutes=5)
# A run stops claiming after this long and requeues itself, so delivery pumps sharing the workers get turns.
RUN_BUDGET_SECONDS = 20.0
# A queued task's mark outlives a lost broker message by this much at most; the sweeper covers the rest.
QUEUED_MARK_SECONDS = 30
# Events (with their deliveries and attempt log) are kept this long, then the sweeper deletes them in batches.
EVENT_RETENTION = timedelta(days=30)
RETENTION_BATCH = 2000
ACTIVE_ENDPOINTS_CACHE_KEY = "events:active-endpoints:v1"
ACTIVE_ENDPOINTS_CACHE_SECONDS = 60

MESSAGE_EVENT_SEQUENCE = {"SENT": 1, "DELIVERED": 2, "READ": 3, "FAILED": 4}


@dataclass(frozen=True)
class IssuedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once, in the 201 answer


@dataclass(frozen=True)
class EndpointRef:
    """What the publisher needs of an active endpoint; small enough to cache for every org."""

    id: str
    organization_id: int
    events: tuple[str, ...]

    def subscribes_to(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


# --- Endpoints ---------------------------------------------------------------------------


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def endpoint_url_resolve(*, host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order, without repeats; [] when it does not."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return list(dict.fromkeys(info[4][0] for info in infos))


def addresses_refusal(*, host: str, addresses: Sequence[str]) -> str | None:
    """Why these resolved addresses may not be posted to, or None (always None with WEBHOOKS_ALLOW_PRIVATE)."""
    if not addresses:
        return f"The host '{host}' does not resolve."
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    # Every address counts: a name with one public and one private address could be steered to either.
    private = sorted(a for a in addresses if not _address_is_public(a))
    if private:
        return f"The URL resolves to a private, loopback, link-local or reserved address ({private[0]})."
    return None


def endpoint_url_check_addresses(*, host: str, port: int, allow_unresolvable: bool = False) -> str | None:
    """Resolves ``host``; returns why it is refused (private, loopback, ...) or None when public.

    ``allow_unresolvable`` is for registration: a name that does not resolve yet (new DNS record,
    resolver down) is accepted, because every delivery attempt resolves and checks it again, and then
    connects to exactly the address it checked (see delivery_post).
    """
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    addresses = endpoint_url_resolve(host=host, port=port)
    if not addresses and allow_unresolvable:
        return None
    return addresses_refusal(host=host, addresses=addresses)


def endpoint_url_validate(*, url: Any) -> str:
    """An http(s) URL with a host, whose every address is public unless WEBHOOKS_ALLOW_PRIVATE."""

    def invalid(message: str) -> ApplicationError:
        return ApplicationError("The webhook URL is not acceptable.", details={"url": [message]})

    if not isinstance(url, str) or not url.strip():
        raise invalid("A URL is required.")
    url = url.strip()
    if len(url) > 2048:
        raise invalid("The URL is longer than 2048 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise invalid("The URL must use http or https.")
    if not parts.hostname:
        raise invalid("The URL must have a host.")
    reason = endpoint_url_check_addresses(
        host=parts.hostname, port=port or (443 if parts.scheme == "https" else 80), allow_unresolvable=True
    )
    if reason:
        raise invalid(reason)
    return url


def endpoint_events_validate(*, events: Any) -> list[str]:
    """A list of known event types, without repeats; empty or omitted means every type."""
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ApplicationError("Invalid events.", details={"events": ["Must be a list of event type strings."]})
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ApplicationError(
            "Invalid events.",
            details={"events": [f"Unknown event type '{e}'. Known: {', '.join(EVENT_TYPES)}." for e in unknown]},
        )
    return list(dict.fromkeys(events))


def _active_endpoints_invalidate() -> None:
    try:
        cache.delete(ACTIVE_ENDPOINTS_CACHE_KEY)
    except Exception as exc:  # noqa: BLE001 - Redis down: the cached list expires by itself within its TTL
        logger.warning("events: could not invalidate the active-endpoints cache (%s)", exc)


def _active_endpoints_changed() -> None:
    # Now (this process sees its own change at once) and again after commit, so that a reader
    # that re-cached the old list before our commit does not keep it for a whole TTL.
    _active_endpoints_invalidate()
    transaction.on_commit(_active_endpoints_invalidate)


def endpoint_create(*, organization: Organization, url: Any, events: Any = None) -> IssuedEndpoint:
    clean_url = endpoint_url_validate(url=url)
    clean_events = endpoint_events_validate(events=events)
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    endpoint = WebhookEndpoint.objects.create(
        organization=organization, url=clean_url, events=clean_events, secret=secret
    )
    _active_endpoints_changed()
    return IssuedEndpoint(endpoint=endpoint, secret=secret)


def endpoint_delete(*, organization: Organization, endpoint_id: str) -> None:
    """Soft delete: the endpoint disappears for the customer and its pending deliveries are dropped."""
    now = timezone.now()
    changed = WebhookEndpoint.objects.filter(id=endpoint_id, organization=organization, deleted_at__isnull=True).update(
        deleted_at=now, is_active=False
    )
    if not changed:
        raise NotFoundError("Webhook endpoint not found.")
    EventDelivery.objects.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, last_error="Endpoint deleted.", locked_until=None
    )
    _active_endpoints_changed()


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Re-enables a disabled endpoint (admin action): its failure streak starts again from zero."""
    WebhookEndpoint.objects.filter(id=endpoint.id, deleted_at__isnull=True).update(
        is_active=True, disabled_at=None, disabled_reason="", consecutive_failures=0
    )
    _active_endpoints_changed()
    transaction.on_commit(lambda: _enqueue_delivery(endpoint.id), robust=True)


def endpoint_disable(*, endpoint_id: str, reason: str) -> None:
    WebhookEndpoint.objects.filter(id=endpoint_id, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:255]
    )
    _active_endpoints_changed()


def endpoints_active() -> list[EndpointRef]:
    """Every active endpoint of every organization: one cached query, shared by all processes.

    The cache is only a shortcut: with Redis down the list comes from the database, so events are still
    recorded (an outcome's events must never be lost to a Redis blip)."""
    try:
        cached = cache.get(ACTIVE_ENDPOINTS_CACHE_KEY)
    except Exception as exc:  # noqa: BLE001
        logger.warning("events: active-endpoints cache unavailable, reading the database (%s)", exc)
        cached, cache_up = None, False
    else:
        cache_up = True
    if cached is not None:
        return [EndpointRef(id=i, organization_id=o, events=tuple(e)) for i, o, e in cached]
    rows = list(
        WebhookEndpoint.objects.filter(is_active=True, deleted_at__isnull=True).values_list(
            "id", "organization_id", "events"
        )
    )
    if cache_up:
        try:
            cache.set(ACTIVE_ENDPOINTS_CACHE_KEY, rows, ACTIVE_ENDPOINTS_CACHE_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("events: could not cache the active endpoints (%s)", exc)
    return [EndpointRef(id=i, organization_id=o, events=tuple(e or ())) for i, o, e in rows]


# --- Recording events ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    organization_id: int
    type: str
    data: dict[str, Any]
    ordering_key: str
    sequence: int = 0


def events_record(*, events: Sequence[NewEvent], endpoints: Iterable[EndpointRef] | None = None) -> int:
    """Writes events and one delivery per subscribed endpoint (bulk), then queues ONE task per
    endpoint after commit. Events no endpoint wants are not stored. Returns deliveries created."""
    refs = list(endpoints_active() if endpoints is None else endpoints)
    by_org: dict[int, list[EndpointRef]] = defaultdict(list)
    for ref in refs:
        by_org[ref.organization_id].append(ref)
    now = timezone.now()
    rows: list[Event] = []
    deliveries: list[EventDelivery] = []
    for new in events:
        targets = [ref for ref in by_org.get(new.organization_id, ()) if ref.subscribes_to(new.type)]
        if not targets:
            continue
        event = Event(
            organization_id=new.organization_id,
            type=new.type,
            data=new.data,
            ordering_key=new.ordering_key,
            sequence=new.sequence,
            created_at=now,
        )
        rows.append(event)
        deliveries.extend(
            EventDelivery(
                event=event,
                endpoint_id=ref.id,
                ordering_key=new.ordering_key,
                sequence=new.sequence,
                next_attempt_at=now,
                created_at=now,
            )
            for ref in targets
        )
    if not rows:
        return 0
    with transaction.atomic(savepoint=False):
        Event.objects.bulk_create(rows, batch_size=1000)
        EventDelivery.objects.bulk_create(deliveries, batch_size=1000)
    for endpoint_id in sorted({d.endpoint_id for d in deliveries}):
        transaction.on_commit(lambda eid=endpoint_id: _enqueue_delivery(eid), robust=True)
    return len(deliveries)


def message_events_record_postgresql(*, send_ids: Sequence[int], status: str, endpoints: Sequence[EndpointRef]) -> int:
    """``message.*`` events for a chunk of sends, built by PostgreSQL itself: ONE statement inserts
    the events (payload from the send rows) and their deliveries. Python-side model instances cost
    ~100 ms per 1,000 events; this costs a few ms. Returns the deliveries created."""
    from broadcasts.models import Broadcast, Send

    event_type = f"message.{status.lower()}"
    sql = f"""
        WITH ep(endpoint_id, organization_id) AS (SELECT * FROM unnest(%(ep_ids)s::text[], %(ep_orgs)s::bigint[])),
        ev AS (
            INSERT INTO {Event._meta.db_table} (id, organization_id, type, data, ordering_key, sequence, created_at)
            SELECT
                'evt_' || lpad(to_hex(extract(epoch FROM %(now)s::timestamptz)::bigint), 8, '0')
                       || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16),
                b.organization_id, %(type)s,
                jsonb_build_object(
                    'broadcast_id', s.broadcast_id, 'index', s.index, 'to', s.to, 'message_id', s.message_id,
                    'status', %(status)s,
                    'error', CASE WHEN %(status)s = 'FAILED' AND (s.error_code <> '' OR s.error_message <> '')
                        THEN jsonb_build_object(
                            'code', s.error_code,
                            'message', COALESCE(NULLIF(s.error_message, ''), s.error_title),
                            'retryable', COALESCE(s.error_retryable, false))
                        END,
                    'meta_data', s.meta_data),
                'send:' || s.id, %(sequence)s, %(now)s
            -- One primary-key probe per id of the chunk (LIMIT 1 keeps the planner from flattening the
            -- LATERAL into a join that reads every send of the organization): O(chunk), not O(table).
            FROM unnest(%(send_ids)s::bigint[]) AS chunk(id)
            CROSS JOIN LATERAL (SELECT * FROM {Send._meta.db_table} WHERE id = chunk.id LIMIT 1) s
            CROSS JOIN LATERAL (SELECT * FROM {Broadcast._meta.db_table} WHERE id = s.broadcast_id LIMIT 1) b
            WHERE b.organization_id IN (SELECT organization_id FROM ep)
            ORDER BY s.id
            RETURNING id, organization_id, ordering_key, sequence
        ),
        dl AS (
            INSERT INTO {EventDelivery._meta.db_table} (event_id, endpoint_id, ordering_key, sequence, status,
                                                        attempts, next_attempt_at, last_error, created_at)
            SELECT ev.id, ep.endpoint_id, ev.ordering_key, ev.sequence, 'pending', 0, %(now)s, '', %(now)s
            FROM ev JOIN ep ON ep.organization_id = ev.organization_id
            ORDER BY ev.ordering_key, ep.endpoint_id
            RETURNING endpoint_id
        )
        SELECT endpoint_id, count(*) FROM dl GROUP BY endpoint_id
    """
    targets = [ref for ref in endpoints if ref.subscribes_to(event_type)]
    if not targets or not send_ids:
        return 0
    params = {
        "ep_ids": [ref.id for ref in targets],
        "ep_orgs": [ref.organization_id for ref in targets],
        "now": timezone.now(),
        "type": event_type,
        "status": status,
        "sequence": MESSAGE_EVENT_SEQUENCE[status],
        "send_ids": list(send_ids),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        per_endpoint = cursor.fetchall()
    for endpoint_id, _ in sorted(per_endpoint):
        transaction.on_commit(lambda eid=endpoint_id: _enqueue_delivery(eid), robust=True)
    return sum(n for _, n in per_endpoint)


def queued_mark_key(endpoint_id: str) -> str:
    return f"events:queued:{endpoint_id}"


def _enqueue_delivery(endpoint_id: str) -> None:
    """Queues a delivery task for the endpoint unless one is already queued and not started yet:
    that one will see these rows (they are committed before this runs), so the publisher's
    many chunks do not flood the broker. The task clears the mark when it starts.

    Never raises: the committed delivery rows are the outbox, and the broker only wakes a worker. With Redis
    (cache or broker) down, the rows stay pending and the beat sweeper (events.sweep) queues them later."""
    from events.tasks import endpoint_deliver_task

    key = queued_mark_key(endpoint_id)
    marked = False
    try:
        marked = cache.add(key, 1, QUEUED_MARK_SECONDS)
        if marked:
            endpoint_deliver_task.delay(endpoint_id)
    except Exception as exc:  # noqa: BLE001
        logger.warning("events: could not queue delivery of endpoint %s, the sweeper will (%s)", endpoint_id, exc)
        if marked:
            try:
                cache.delete(key)  # so the sweeper's next wake-up is not skipped for the mark's lifetime
            except Exception:  # noqa: BLE001, S110
                pass


def message_event_data(*, row: dict[str, Any], status: str) -> dict[str, Any]:
    """The ``message.*`` payload (CONTRACT section 9), with the status the event is about."""
    error = None
    if status == "FAILED" and (row.get("error_code") or row.get("error_message")):
        error = {
            "code": row.get("error_code") or "",
            "message": row.get("error_message") or row.get("error_title") or "",
            "retryable": bool(row.get("error_retryable")),
        }
    return {
        "broadcast_id": row["broadcast_id"],
        "index": row["index"],
        "to": row["to"],
        "message_id": row.get("message_id"),
        "status": status,
        "error": error,
        "meta_data": row.get("meta_data"),
    }


def broadcast_event_data(*, broadcast: Any) -> dict[str, Any]:
    # The API's own selectors: the event shows exactly what GET /v1/messages/bulk/{id} shows.
    from broadcasts.selectors import broadcast_counts, error_rate

    counts = broadcast_counts(broadcast_ids=[broadcast.id])[broadcast.id]
    data = {
        "broadcast_id": broadcast.id,
        "status": broadcast.status,
        "counts": counts,
        "error_rate": error_rate(counts=counts, total=broadcast.total_recipients),
        "completed_at": iso_utc(broadcast.completed_at),
    }
    if broadcast.paused_reason:
        data["paused_reason"] = broadcast.paused_reason
    return data


# --- Delivering ------------------------------------------------------------------------------


def event_body(*, event: Event) -> bytes:
    """The exact bytes POSTed: identical on every retry (only the timestamp header changes)."""
    return orjson.dumps(
        {"id": event.id, "type": event.type, "created_at": iso_utc(event.created_at), "data": event.data}
    )


def signature_make(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(key = secret UTF-8, message = "<timestamp>.<raw body>")>``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def backoff_seconds(*, attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: doubling from 10 s with +-20% jitter, capped at 1 h."""
    return core_backoff(attempts=attempts, base=BACKOFF_BASE_SECONDS, cap=BACKOFF_MAX_SECONDS, jitter=0.2)


def deliveries_claim(*, endpoint_id: str, now: datetime, limit: int = CLAIM_BATCH) -> list[EventDelivery]:
    """Takes up to ``limit`` due deliveries of one endpoint, each the head (earliest pending) of its subject.

    The outer scan walks the (endpoint, next_attempt_at) index in order and stops at ``limit``; the
    head check is one index probe per candidate. (An anti-join here degrades to O(pending^2) when
    the planner misjudges fresh tables.)
    """
    head = (
        EventDelivery.objects.filter(
            endpoint_id=OuterRef("endpoint_id"), ordering_key=OuterRef("ordering_key"), status=DeliveryStatus.PENDING
        )
        .order_by("sequence", "id")
        .values("id")[:1]
    )
    with transaction.atomic():
        ids = list(
            EventDelivery.objects.filter(
                endpoint_id=endpoint_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lte=now,
            )
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .filter(id=Subquery(head))
            .order_by("next_attempt_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        if connection.vendor == "postgresql":
            EventDelivery.objects.filter(id__in=ids).update(locked_until=now + CLAIM_LEASE)
        else:
            # No row locks (SQLite demo): each lease is a conditional UPDATE, and only the won rows count.
            free = Q(locked_until__isnull=True) | Q(locked_until__lt=now)
            ids = [i for i in ids if EventDelivery.objects.filter(free, id=i).update(locked_until=now + CLAIM_LEASE)]
    return list(EventDelivery.objects.filter(id__in=ids).select_related("event").order_by("next_attempt_at", "id"))


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


def delivery_post(*, connections: DeliveryConnections, endpoint: WebhookEndpoint, event: Event) -> PostOutcome:
    """One signed POST: a 2xx delivers; anything else, a redirect or a timeout is a failure.

    The host name is resolved once per attempt and every address checked (private ones refused unless
    WEBHOOKS_ALLOW_PRIVATE); the connection then goes to the first checked address, never to a fresh lookup.
    The attempt, from connecting to the last byte read, ends after EVENTS_DELIVERY_TIMEOUT_SECONDS whatever
    the server does (a timer shuts the socket down: a server that drips bytes cannot hold a worker).
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
        "X-Webhook-Id": event.id,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": signature_make(secret=endpoint.secret, timestamp=timestamp, body=body),
    }
    budget = float(settings.EVENTS_DELIVERY_TIMEOUT_SECONDS)
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


def _failure_record(*, delivery: EventDelivery, outcome: PostOutcome, now: datetime) -> bool:
    """Records a failed attempt; returns True when the endpoint got disabled by it."""
    attempts = delivery.attempts + 1
    next_at = now + timedelta(seconds=backoff_seconds(attempts=attempts))
    final = next_at > delivery.created_at + DELIVERY_WINDOW
    EventDelivery.objects.filter(id=delivery.id).update(
        attempts=attempts,
        status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
        next_attempt_at=next_at,
        locked_until=None,
        last_status_code=outcome.status_code,
        last_error=outcome.error,
    )
    WebhookEndpoint.objects.filter(id=delivery.endpoint_id).update(consecutive_failures=F("consecutive_failures") + 1)
    failures = WebhookEndpoint.objects.filter(id=delivery.endpoint_id).values_list("consecutive_failures", flat=True)
    if failures and failures[0] >= DISABLE_AFTER_CONSECUTIVE_FAILURES:
        endpoint_disable(
            endpoint_id=delivery.endpoint_id,
            reason=f"{DISABLE_AFTER_CONSECUTIVE_FAILURES} consecutive failed deliveries; last: {outcome.error}",
        )
        return True
    return False


def endpoint_deliver_due(*, endpoint_id: str, now: datetime | None = None) -> dict[str, int]:
    """Delivers an endpoint's due events, in order per subject, until none is due, a batch has a
    failure, or the run's time budget is spent. Returns {"delivered": n, "failed_attempts": n}."""
    clock = (lambda: now) if now is not None else timezone.now
    stats = {"delivered": 0, "failed_attempts": 0}
    endpoint = WebhookEndpoint.objects.filter(id=endpoint_id, is_active=True, deleted_at__isnull=True).first()
    if endpoint is None:
        return stats
    started = time.monotonic()
    streak_reset = endpoint.consecutive_failures == 0
    # An endpoint already failing is probed with one delivery at a time (so a dead endpoint gets
    # one request per run and reaches the disabling threshold exactly); a success opens it up again.
    probing = endpoint.consecutive_failures > 0
    with DeliveryConnections() as connections, ThreadPoolExecutor(max_workers=POST_CONCURRENCY) as pool:
        while time.monotonic() - started < RUN_BUDGET_SECONDS:
            batch = deliveries_claim(endpoint_id=endpoint_id, now=clock(), limit=1 if probing else CLAIM_BATCH)
            if not batch:
                break
            # Each attempt resolves and checks the host itself (no DNS-rebinding window between check and connect).
            outcomes = list(
                pool.map(lambda d: delivery_post(connections=connections, endpoint=endpoint, event=d.event), batch)
            )
            at = clock()
            delivered_by_code: dict[int | None, list[int]] = defaultdict(list)
            for delivery, outcome in zip(batch, outcomes, strict=True):
                if outcome.ok:
                    delivered_by_code[outcome.status_code].append(delivery.id)
            for code, ids in delivered_by_code.items():
                EventDelivery.objects.filter(id__in=ids).update(
                    status=DeliveryStatus.DELIVERED,
                    delivered_at=at,
                    attempts=F("attempts") + 1,
                    locked_until=None,
                    last_status_code=code,
                    last_error="",
                )
                stats["delivered"] += len(ids)
            if delivered_by_code and not streak_reset:
                WebhookEndpoint.objects.filter(id=endpoint_id).update(consecutive_failures=0)
                streak_reset = True
                probing = False
            failures = [(d, o) for d, o in zip(batch, outcomes, strict=True) if not o.ok]
            for delivery, outcome in failures:
                _failure_record(delivery=delivery, outcome=outcome, now=at)
            stats["failed_attempts"] += len(failures)
            DeliveryAttempt.objects.bulk_create(
                DeliveryAttempt(
                    delivery=d,
                    attempted_at=at,
                    status_code=o.status_code,
                    error=o.error,
                    duration_ms=o.duration_ms,
                )
                for d, o in zip(batch, outcomes, strict=True)
            )
            if failures:
                # The endpoint is failing: stop hammering it; the next run (retry time or sweep) goes on.
                break
        else:
            stats["budget_spent"] = 1
    return stats


def deliveries_sweep(*, now: datetime | None = None) -> list[str]:
    """Beat: fails deliveries past their 24 h window, drops events past retention, and returns the
    endpoints with due work (the task wakes one worker per endpoint): nothing relies on the broker alone."""
    now = now or timezone.now()
    EventDelivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=now - DELIVERY_WINDOW).update(
        status=DeliveryStatus.FAILED, locked_until=None, last_error="Not delivered within 24 hours."
    )
    # Rows a publisher wrote from a stale endpoint cache after the endpoint was deleted.
    EventDelivery.objects.filter(status=DeliveryStatus.PENDING, endpoint__deleted_at__isnull=False).update(
        status=DeliveryStatus.FAILED, locked_until=None, last_error="Endpoint deleted."
    )
    expired = list(
        Event.objects.filter(created_at__lt=now - EVENT_RETENTION).values_list("id", flat=True)[:RETENTION_BATCH]
    )
    if expired:
        Event.objects.filter(id__in=expired).delete()
    due = (
        EventDelivery.objects.filter(
            status=DeliveryStatus.PENDING,
            next_attempt_at__lte=now,
            endpoint__is_active=True,
            endpoint__deleted_at__isnull=True,
        )
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .values_list("endpoint_id", flat=True)
        .distinct()
    )
    return list(due)
