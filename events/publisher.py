"""Outbound customer events (CONTRACT section 9): the one entry point other apps call.

Callers invoke these AFTER their transaction commits (``transaction.on_commit``) or inside the
transaction that made the change (then the events commit atomically with it), with ids only.
Both are cheap when no organization has an endpoint: one cached lookup and no query at all.
"""

from collections.abc import Sequence

from django.db import connection

from events import services
from events.models import EventType

_MESSAGE_STATUSES = ("SENT", "DELIVERED", "READ", "FAILED")
_SEND_FIELDS = (
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
    if status not in _MESSAGE_STATUSES or not send_ids:
        return
    event_type = f"message.{status.lower()}"
    endpoints = [ref for ref in services.endpoints_active() if ref.subscribes_to(event_type)]
    if not endpoints:
        return
    if connection.vendor == "postgresql":
        services.message_events_record_postgresql(send_ids=send_ids, status=status, endpoints=endpoints)
    else:
        message_events_record_portable(send_ids=send_ids, status=status, endpoints=endpoints)


def message_events_record_portable(*, send_ids: Sequence[int], status: str, endpoints) -> int:
    """The same events through the ORM, for the SQLite demo (PostgreSQL builds them in one statement)."""
    from broadcasts.models import Send

    event_type = f"message.{status.lower()}"
    org_ids = {ref.organization_id for ref in endpoints}
    rows = Send.objects.filter(id__in=list(send_ids), broadcast__organization_id__in=org_ids).values(*_SEND_FIELDS)
    events = [
        services.NewEvent(
            organization_id=row["broadcast__organization_id"],
            type=event_type,
            data=services.message_event_data(row=row, status=status),
            ordering_key=f"send:{row['id']}",
            sequence=services.MESSAGE_EVENT_SEQUENCE[status],
        )
        for row in rows.order_by("id")
    ]
    return services.events_record(events=events, endpoints=endpoints)


def broadcast_event_publish(*, broadcast_id: str, event_type: str) -> None:
    """Record ``broadcast.paused`` or ``broadcast.completed`` for a broadcast and queue its delivery."""
    from broadcasts.models import Broadcast

    if event_type not in (EventType.BROADCAST_PAUSED, EventType.BROADCAST_COMPLETED):
        raise ValueError(f"Unknown broadcast event type: {event_type!r}")
    endpoints = [ref for ref in services.endpoints_active() if ref.subscribes_to(event_type)]
    if not endpoints:
        return
    broadcast = Broadcast.objects.filter(id=broadcast_id).first()
    if broadcast is None or broadcast.organization_id not in {ref.organization_id for ref in endpoints}:
        return
    event = services.NewEvent(
        organization_id=broadcast.organization_id,
        type=event_type,
        data=services.broadcast_event_data(broadcast=broadcast),
        ordering_key=f"broadcast:{broadcast.id}",
    )
    services.events_record(events=[event], endpoints=endpoints)
