"""The customer events of broadcasts (docs/api.md): ``message.*`` and ``broadcast.*`` payloads, built
here and handed to the generic outbox of ``events`` (which knows nothing of sends or broadcasts).

Callers invoke these AFTER their transaction commits (``transaction.on_commit``) or inside the
transaction that made the change (then the events commit atomically with it), with ids only.
Both are cheap when no organization has an endpoint: one cached lookup and no query at all.
"""

from collections.abc import Sequence
from typing import Any

from broadcasts.models import Broadcast, Send
from broadcasts.selectors import counts_of, error_rate
from core.timefmt import iso_utc
from events.endpoints import EndpointRef, endpoints_active
from events.models import EventType
from events.outbox import NewEvent, events_record, events_record_query

# Events of one message are delivered in this order (sent < delivered < read|failed).
MESSAGE_EVENT_SEQUENCE = {"SENT": 1, "DELIVERED": 2, "READ": 3, "FAILED": 4}
MESSAGE_STATUSES = tuple(MESSAGE_EVENT_SEQUENCE)


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
    message_events_record(send_ids=send_ids, status=status, endpoints=endpoints)


def message_events_record(*, send_ids: Sequence[int], status: str, endpoints: Sequence[EndpointRef]) -> int:
    """``message.*`` events for a chunk of sends, built by PostgreSQL itself from the send rows, in ONE
    statement with their deliveries (``events.outbox.events_record_query``). Returns the deliveries created."""
    if not send_ids:
        return 0
    # The ``message.*`` payload (docs/api.md): the send, the status the event is about, and for a FAILED
    # send with an error its code, message (else title) and whether it is retryable.
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
