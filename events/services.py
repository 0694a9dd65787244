"""Outbound customer events (CONTRACT section 9): endpoints, recording, signing and delivery.

Delivery state is data: every delivery row carries its attempts and next attempt time, a worker
claims rows with a lease, and the beat sweeper re-finds anything a lost task left behind.

Ordering guarantee: for one endpoint, an event is never POSTed while an earlier event of the
same subject (one message; or one broadcast) is still pending for that endpoint. "Earlier" is the
message's status order (sent < delivered < read|failed), then creation order. A delivery that
finally fails (24 h of retries) stops holding back the later ones.
"""

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone
from requests.adapters import HTTPAdapter

from core.errors import ApplicationError, NotFoundError
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
# requests timeouts: (connect, read). A customer endpoint must not hold a worker longer.
HTTP_TIMEOUT = (3.0, 10.0)
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


def endpoint_url_check_addresses(*, host: str, port: int, allow_unresolvable: bool = False) -> str | None:
    """Resolves ``host``; returns why it is refused (private, loopback, ...) or None when public.

    ``allow_unresolvable`` is for registration: a name that does not resolve yet (new DNS record,
    resolver down) is accepted, because every delivery resolves and checks it again before posting.
    """
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError, OSError):
        addresses = set()
    if not addresses:
        return None if allow_unresolvable else f"The host '{host}' does not resolve."
    # Every address counts: a name with one public and one private address could be steered to either.
    private = sorted(a for a in addresses if not _address_is_public(a))
    if private:
        return f"The URL resolves to a private, loopback, link-local or reserved address ({private[0]})."
    return None


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
    cache.delete(ACTIVE_ENDPOINTS_CACHE_KEY)


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
    """Every active endpoint of every organization: one cached query, shared by all processes (the query alone
    while the cache is unreachable: a Redis blip must not stop outcomes and their events from being recorded)."""
    try:
        cached = cache.get(ACTIVE_ENDPOINTS_CACHE_KEY)
    except Exception:  # noqa: BLE001 - any cache backend's error
        cached = None
    if cached is not None:
        return [EndpointRef(id=i, organization_id=o, events=tuple(e)) for i, o, e in cached]
    rows = list(
        WebhookEndpoint.objects.filter(is_active=True, deleted_at__isnull=True).values_list(
            "id", "organization_id", "events"
        )
    )
    with contextlib.suppress(Exception):
        cache.set(ACTIVE_ENDPOINTS_CACHE_KEY, rows, ACTIVE_ENDPOINTS_CACHE_SECONDS)
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
    many chunks do not flood the broker. The task clears the mark when it starts."""
    from events.tasks import endpoint_deliver_task

    if cache.add(queued_mark_key(endpoint_id), 1, QUEUED_MARK_SECONDS):
        endpoint_deliver_task.delay(endpoint_id)


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


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def broadcast_event_data(*, broadcast: Any) -> dict[str, Any]:
    # The API's own selectors: the event shows exactly what GET /v1/messages/bulk/{id} shows.
    from broadcasts.selectors import broadcast_counts, error_rate

    counts = broadcast_counts(broadcast_ids=[broadcast.id])[broadcast.id]
    data = {
        "broadcast_id": broadcast.id,
        "status": broadcast.status,
        "counts": counts,
        "error_rate": error_rate(counts=counts, total=broadcast.total_recipients),
        "completed_at": _iso(broadcast.completed_at),
    }
    if broadcast.paused_reason:
        data["paused_reason"] = broadcast.paused_reason
    return data


# --- Delivering ------------------------------------------------------------------------------


def event_body(*, event: Event) -> bytes:
    """The exact bytes POSTed: identical on every retry (only the timestamp header changes)."""
    return orjson.dumps({"id": event.id, "type": event.type, "created_at": _iso(event.created_at), "data": event.data})


def signature_make(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(key = secret UTF-8, message = "<timestamp>.<raw body>")>``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def backoff_seconds(*, attempts: int) -> float:
    """Delay before attempt ``attempts + 1``: doubling from 10 s, capped at 1 h, with +-20% jitter."""
    base = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)


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


def delivery_post(*, session: requests.Session, endpoint: WebhookEndpoint, event: Event) -> PostOutcome:
    """One signed POST: a 2xx delivers; anything else, a redirect or a timeout is a failure."""
    body = event_body(event=event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "broadcasts-webhooks/1",
        "X-Webhook-Id": event.id,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": signature_make(secret=endpoint.secret, timestamp=timestamp, body=body),
    }
    started = time.monotonic()
    try:
        response = session.post(
            endpoint.url, data=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False, stream=True
        )
        try:
            # Drain a small answer so the connection goes back to the pool (keep-alive); a huge one
            # is cut off (the connection is then closed instead): its body is never needed.
            read = 0
            for chunk in response.iter_content(8192):
                read += len(chunk)
                if read > MAX_RESPONSE_BYTES:
                    break
        finally:
            response.close()
    except requests.RequestException as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        return PostOutcome(False, None, f"{type(exc).__name__}: {exc}"[:1000], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    ok = 200 <= response.status_code < 300
    return PostOutcome(ok, response.status_code, "" if ok else f"HTTP {response.status_code}", elapsed)


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
    parts = urlsplit(endpoint.url)
    # Checked again at send time: a name that now resolves privately (DNS rebinding) is refused.
    refused = endpoint_url_check_addresses(
        host=parts.hostname or "", port=parts.port or (443 if parts.scheme == "https" else 80)
    )
    started = time.monotonic()
    streak_reset = endpoint.consecutive_failures == 0
    # An endpoint already failing is probed with one delivery at a time (so a dead endpoint gets
    # one request per run and reaches the disabling threshold exactly); a success opens it up again.
    probing = endpoint.consecutive_failures > 0
    with requests.Session() as session, ThreadPoolExecutor(max_workers=POST_CONCURRENCY) as pool:
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POST_CONCURRENCY, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        while time.monotonic() - started < RUN_BUDGET_SECONDS:
            batch = deliveries_claim(endpoint_id=endpoint_id, now=clock(), limit=1 if probing else CLAIM_BATCH)
            if not batch:
                break
            if refused:
                outcomes = [PostOutcome(False, None, f"Refused: {refused}", 0)] * len(batch)
            else:
                outcomes = list(
                    pool.map(lambda d: delivery_post(session=session, endpoint=endpoint, event=d.event), batch)
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
