"""The outbox of customer events (docs/api.md): events recorded with one delivery row per subscribed
endpoint, claimed with a lease, posted, and their outcome and retry state recorded as data.

Delivery state is data: every delivery row carries its attempts and next attempt time, a worker
claims rows with a lease, and the beat sweeper re-finds anything a lost task left behind.

Ordering guarantee: for one endpoint, an event is never POSTed while an earlier event of the
same subject (its ``ordering_key``) is still pending for that endpoint. "Earlier" is the event's
``sequence``, then creation order. A delivery that finally fails (24 h of retries) stops holding back the
later ones.

The outbox knows nothing of what the events are about: their producers (``broadcasts/notifications.py``)
build the payloads and hand them in, as ``NewEvent`` rows or, for bulk, as one SQL query.
"""

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import db
from django.db import connection, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from core.backoff import backoff_seconds as core_backoff
from core.metrics import event_deliveries_add
from events import queue
from events.endpoints import EndpointRef, endpoint_disable, endpoints_active
from events.models import DeliveryAttempt, DeliveryStatus, Event, EventDelivery, WebhookEndpoint
from events.transport import POST_CONCURRENCY, DeliveryConnections, PostOutcome, delivery_post

logger = logging.getLogger(__name__)

# A failing delivery is retried for this long after its event, then marked failed.
DELIVERY_WINDOW = timedelta(hours=24)
# Exponential backoff: 10 s, 20 s, 40 s ... capped at 1 h, so 24 h holds about 30 attempts.
BACKOFF_BASE_SECONDS = 10
BACKOFF_MAX_SECONDS = 3600
DISABLE_AFTER_CONSECUTIVE_FAILURES = 50
# Deliveries claimed per query; the lease outlives a batch's worst case so no two workers post one row.
CLAIM_BATCH = 32
CLAIM_LEASE = timedelta(minutes=5)
# A batch's outcomes that PostgreSQL could not take are written again this often, for at most this long (within
# the task's 120 s soft time limit: a run's 20 s budget and one 10 s attempt come first), and never closer than
# the margin to the batch's lease end (then another worker may claim and post it again anyway).
RECORD_RETRY_SECONDS = 0.5
RECORD_RETRY_MAX_SECONDS = 60.0
RECORD_LEASE_MARGIN_SECONDS = 30.0
# A run stops claiming after this long and requeues itself, so delivery pumps sharing the workers get turns.
RUN_BUDGET_SECONDS = 20.0
# Events (with their deliveries and attempt log) are kept this long, then the sweeper deletes them in batches.
EVENT_RETENTION = timedelta(days=30)
RETENTION_BATCH = 2000


# --- Recording ---------------------------------------------------------------------------------


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
        transaction.on_commit(lambda eid=endpoint_id: queue.delivery_enqueue(eid), robust=True)
    return len(deliveries)


def events_record_query(
    *,
    source_sql: str,
    params: Mapping[str, Any],
    event_type: str,
    sequence: int,
    endpoints: Sequence[EndpointRef],
) -> int:
    """PostgreSQL only: events built by the database itself, for a producer's bulk path. ONE statement
    inserts the events and their deliveries (Python-side model instances cost ~100 ms per 1,000 events;
    this costs a few ms). Returns the deliveries created; queues one task per endpoint after commit.

    ``source_sql`` is a SELECT of ``organization_id, data (jsonb), ordering_key`` rows, one per event, in the
    order to record them. It may use ``params`` (``%(name)s``; the names ``ep_ids``, ``ep_orgs``, ``now``,
    ``type`` and ``sequence`` are the outbox's own) and the relation ``ep(endpoint_id, organization_id)`` of
    the subscribed endpoints, to keep only rows an endpoint wants (``WHERE ... IN (SELECT organization_id
    FROM ep)``): events no endpoint wants are never stored, and only the subscribed endpoints get deliveries.
    """
    targets = [ref for ref in endpoints if ref.subscribes_to(event_type)]
    if not targets:
        return 0
    sql = f"""
        WITH ep(endpoint_id, organization_id) AS (SELECT * FROM unnest(%(ep_ids)s::text[], %(ep_orgs)s::bigint[])),
        ev AS (
            INSERT INTO {Event._meta.db_table} (id, organization_id, type, data, ordering_key, sequence, created_at)
            SELECT
                'evt_' || lpad(to_hex(extract(epoch FROM %(now)s::timestamptz)::bigint), 8, '0')
                       || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16),
                src.organization_id, %(type)s, src.data, src.ordering_key, %(sequence)s, %(now)s
            FROM ({source_sql}) AS src(organization_id, data, ordering_key)
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
    query_params = {
        **params,
        "ep_ids": [ref.id for ref in targets],
        "ep_orgs": [ref.organization_id for ref in targets],
        "now": timezone.now(),
        "type": event_type,
        "sequence": sequence,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, query_params)
        per_endpoint = cursor.fetchall()
    for endpoint_id, _ in sorted(per_endpoint):
        transaction.on_commit(lambda eid=endpoint_id: queue.delivery_enqueue(eid), robust=True)
    return sum(n for _, n in per_endpoint)


# --- Delivering ------------------------------------------------------------------------------


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
        EventDelivery.objects.filter(id__in=ids).update(locked_until=now + CLAIM_LEASE)
    return list(EventDelivery.objects.filter(id__in=ids).select_related("event").order_by("next_attempt_at", "id"))


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


def _attempts_count(outcomes: list[PostOutcome], *, disabled: int) -> None:
    """msg_event_deliveries_total: attempts by outcome, and the endpoints this batch disabled."""
    timeouts = sum(1 for o in outcomes if not o.ok and o.error.startswith("Timeout"))
    delivered = sum(1 for o in outcomes if o.ok)
    failed = len(outcomes) - delivered - timeouts
    event_deliveries_add({"delivered": delivered, "failed": failed, "timeout": timeouts, "disabled": disabled})


@dataclass(frozen=True)
class _Recorded:
    delivered: int
    disabled: int


def _outcomes_record(
    *, endpoint_id: str, batch: list[EventDelivery], outcomes: list[PostOutcome], at: datetime, streak_reset: bool
) -> _Recorded:
    """A batch's outcomes, its endpoint's failure streak and its attempt log, in one transaction (all or nothing:
    it can be written again whole)."""
    delivered_by_code: dict[int | None, list[int]] = defaultdict(list)
    for delivery, outcome in zip(batch, outcomes, strict=True):
        if outcome.ok:
            delivered_by_code[outcome.status_code].append(delivery.id)
    delivered, disabled = 0, 0
    with transaction.atomic():
        for code, ids in delivered_by_code.items():
            # Only rows still pending: a write whose COMMIT reached the database but whose answer did not is
            # written again without counting an attempt twice.
            EventDelivery.objects.filter(id__in=ids, status=DeliveryStatus.PENDING).update(
                status=DeliveryStatus.DELIVERED,
                delivered_at=at,
                attempts=F("attempts") + 1,
                locked_until=None,
                last_status_code=code,
                last_error="",
            )
            delivered += len(ids)
        if delivered_by_code and not streak_reset:
            WebhookEndpoint.objects.filter(id=endpoint_id).update(consecutive_failures=0)
        for delivery, outcome in zip(batch, outcomes, strict=True):
            if not outcome.ok:
                disabled += _failure_record(delivery=delivery, outcome=outcome, now=at)
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                delivery=d, attempted_at=at, status_code=o.status_code, error=o.error, duration_ms=o.duration_ms
            )
            for d, o in zip(batch, outcomes, strict=True)
        )
    return _Recorded(delivered=delivered, disabled=disabled)


def _outcomes_record_retrying(*, lease_ends: float, **batch: Any) -> _Recorded:
    """_outcomes_record, written again while PostgreSQL is away (a restart, a failover): the POSTs have been made,
    and a delivery not marked delivered is posted again once its lease ends (a duplicate the endpoint has to drop).
    Bounded by the lease (``lease_ends``, time.monotonic()) and by the task's soft time limit."""
    give_up_at = min(lease_ends - RECORD_LEASE_MARGIN_SECONDS, time.monotonic() + RECORD_RETRY_MAX_SECONDS)
    while True:
        try:
            return _outcomes_record(**batch)
        except (db.OperationalError, db.InterfaceError) as exc:
            with contextlib.suppress(Exception):
                connection.close()  # a new connection on the next try
            if time.monotonic() + RECORD_RETRY_SECONDS >= give_up_at:
                logger.error("events: gave up writing a batch's outcomes of endpoint %s (%s): posted again once "
                             "its lease ends", batch["endpoint_id"], exc)  # fmt: skip
                raise
            logger.warning("events: writing a batch's outcomes of endpoint %s failed (%s); retrying every %.1f s",
                           batch["endpoint_id"], exc.__class__.__name__, RECORD_RETRY_SECONDS)  # fmt: skip
            time.sleep(RECORD_RETRY_SECONDS)


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
    # A run's first batch is one round of concurrent POSTs: an endpoint that starts hanging now holds the run (and
    # its lane's slot, events/lanes.py) for one attempt's 10 s, not four rounds of them. A batch all delivered
    # opens it up to CLAIM_BATCH.
    opened = False
    with DeliveryConnections() as connections, ThreadPoolExecutor(max_workers=POST_CONCURRENCY) as pool:
        while time.monotonic() - started < RUN_BUDGET_SECONDS:
            limit = 1 if probing else (CLAIM_BATCH if opened else POST_CONCURRENCY)
            claimed = time.monotonic()
            batch = deliveries_claim(endpoint_id=endpoint_id, now=clock(), limit=limit)
            if not batch:
                break
            # Each attempt resolves and checks the host itself (no DNS-rebinding window between check and connect).
            outcomes = list(
                pool.map(lambda d: delivery_post(connections=connections, endpoint=endpoint, event=d.event), batch)
            )
            at = clock()
            recorded = _outcomes_record_retrying(
                endpoint_id=endpoint_id,
                batch=batch,
                outcomes=outcomes,
                at=at,
                streak_reset=streak_reset,
                lease_ends=claimed + CLAIM_LEASE.total_seconds(),
            )
            stats["delivered"] += recorded.delivered
            if recorded.delivered and not streak_reset:
                streak_reset = True
                probing = False
            failures = [o for o in outcomes if not o.ok]
            stats["failed_attempts"] += len(failures)
            _attempts_count(outcomes, disabled=recorded.disabled)
            if failures:
                # The endpoint is failing: stop hammering it; the next run (retry time or sweep) goes on.
                break
            opened = True
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
