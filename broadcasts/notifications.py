"""The customer events of broadcasts (CONTRACT section 9): ``message.*`` and ``broadcast.*`` payloads, built
here and handed to the generic outbox of ``events`` (which knows nothing of sends or broadcasts).

Callers invoke these AFTER their transaction commits (``transaction.on_commit``) or inside the
transaction that made the change (then the events commit atomically with it), with ids only.
Both are cheap when no organization has an endpoint: one cached lookup and no query at all.
"""

from collections.abc import Sequence
from typing import Any

from django.db import connection

from broadcasts.models import Broadcast, Send
from broadcasts.selectors import counts_of, error_rate
from core.timefmt import iso_utc
from events.endpoints import EndpointRef, endpoints_active
from events.models import EventType
from events.outbox import NewEvent, events_record, events_record_query

# Events of one message are delivered in this order (sent < delivered < read|failed).
MESSAGE_EVENT_SEQUENCE = {"SENT": 1, "DELIVERED": 2, "READ": 3, "FAILED": 4}
MESSAGE_STATUSES = tuple(MESSAGE_EVENT_SEQUENCE)
SEND_FIELDS = (
    "id",
    "broadcast_id",
    "index",
    "to",
    "message_id",
    "error_code",
    "error_title",
    "error_message",
    "error_retryable",
    "meta_data",
    "broadcast__organization_id",
)


def message_events_publish(*, send_ids: Sequence[int], status: str) -> None:
    """Record ``message.<status>`` events (status: SENT, DELIVERED, READ, FAILED) for sends that
    just moved to ``status``, and queue their delivery to the organization's endpoints."""
    status = str(status).upper()
    if status not in MESSAGE_STATUSES or not send_ids:
        return
    event_type = f"message.{status.lower()}"
    endpoints = [ref for ref in endpoints_active() if ref.subscribes_to(event_type)]
    if not endpoints:
        return
    if connection.vendor == "postgresql":
        message_events_record_postgresql(send_ids=send_ids, status=status, endpoints=endpoints)
    else:
        message_events_record_portable(send_ids=send_ids, status=status, endpoints=endpoints)


def message_events_record_postgresql(*, send_ids: Sequence[int], status: str, endpoints: Sequence[EndpointRef]) -> int:
    """``message.*`` events for a chunk of sends, built by PostgreSQL itself from the send rows, in ONE
    statement with their deliveries (``events.outbox.events_record_query``). Returns the deliveries created."""
    if not send_ids:
        return 0
    # The payload of message_event_data, in SQL.
    source_sql = f"""
        SELECT
            b.organization_id,
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
            'send:' || s.id
        -- One primary-key probe per id of the chunk (LIMIT 1 keeps the planner from flattening the
        -- LATERAL into a join that reads every send of the organization): O(chunk), not O(table).
        FROM unnest(%(send_ids)s::bigint[]) AS chunk(id)
        CROSS JOIN LATERAL (SELECT * FROM {Send._meta.db_table} WHERE id = chunk.id LIMIT 1) s
        CROSS JOIN LATERAL (SELECT * FROM {Broadcast._meta.db_table} WHERE id = s.broadcast_id LIMIT 1) b
        WHERE b.organization_id IN (SELECT organization_id FROM ep)
        ORDER BY s.id
    """
    return events_record_query(
        source_sql=source_sql,
        params={"status": status, "send_ids": list(send_ids)},
        event_type=f"message.{status.lower()}",
        sequence=MESSAGE_EVENT_SEQUENCE[status],
        endpoints=endpoints,
    )


def message_events_record_portable(*, send_ids: Sequence[int], status: str, endpoints) -> int:
    """The same events through the ORM, for the SQLite demo (PostgreSQL builds them in one statement)."""
    event_type = f"message.{status.lower()}"
    org_ids = {ref.organization_id for ref in endpoints}
    rows = Send.objects.filter(id__in=list(send_ids), broadcast__organization_id__in=org_ids).values(*SEND_FIELDS)
    events = [
        NewEvent(
            organization_id=row["broadcast__organization_id"],
            type=event_type,
            data=message_event_data(row=row, status=status),
            ordering_key=f"send:{row['id']}",
            sequence=MESSAGE_EVENT_SEQUENCE[status],
        )
        for row in rows.order_by("id")
    ]
    return events_record(events=events, endpoints=endpoints)


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


def broadcast_event_publish(*, broadcast_id: str, event_type: str) -> None:
    """Record ``broadcast.paused``, ``broadcast.completed`` or ``broadcast.cancelled`` for a broadcast and queue
    its delivery."""
    if event_type not in (EventType.BROADCAST_PAUSED, EventType.BROADCAST_COMPLETED, EventType.BROADCAST_CANCELLED):
        raise ValueError(f"Unknown broadcast event type: {event_type!r}")
    endpoints = [ref for ref in endpoints_active() if ref.subscribes_to(event_type)]
    if not endpoints:
        return
    broadcast = Broadcast.objects.filter(id=broadcast_id).first()
    if broadcast is None or broadcast.organization_id not in {ref.organization_id for ref in endpoints}:
        return
    event = NewEvent(
        organization_id=broadcast.organization_id,
        type=event_type,
        data=broadcast_event_data(broadcast=broadcast),
        ordering_key=f"broadcast:{broadcast.id}",
    )
    events_record(events=[event], endpoints=endpoints)


def broadcast_event_data(*, broadcast: Broadcast) -> dict[str, Any]:
    # The API's own selectors: the event shows exactly what GET /v1/messages/bulk/{id} shows (the kept counts).
    counts = counts_of(broadcast)
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
