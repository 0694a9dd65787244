"""``ping``: one signed test event POSTed to one endpoint at once (docs/api.md), so a customer can check their
receiver and its signature verification without waiting for a real event.

It goes through the same transport as every event (``events.transport.delivery_post``: the host resolved and
checked against the private-address rules, the connection pinned to the checked address, 10 s from connect to the
last byte), signed the same way (both schemes, both secrets during a rotation's overlap), but not through the outbox:
it is not stored, not retried, and it neither counts toward nor resets the endpoint's failure streak.
"""

from dataclasses import dataclass

from django.utils import timezone

from events.models import Event, EventType, WebhookEndpoint, event_id
from events.transport import DeliveryConnections, delivery_post


@dataclass(frozen=True)
class PingResult:
    event_id: str
    ok: bool  # the endpoint answered 2xx
    status: int | None  # the endpoint's HTTP status; None when there was no answer
    error: str | None  # why it failed (refused address, timeout, connection error, non-2xx); None when ok
    duration_ms: int


def ping_event(*, endpoint: WebhookEndpoint) -> Event:
    """The (unsaved) ping event: ``{"endpoint_id", "message": "ping"}``, with a fresh event id."""
    return Event(
        id=event_id(),
        organization_id=endpoint.organization_id,
        type=EventType.PING,
        data={"endpoint_id": endpoint.id, "message": "ping"},
        ordering_key=f"ping:{endpoint.id}",
        created_at=timezone.now(),
    )


def endpoint_ping(*, endpoint: WebhookEndpoint) -> PingResult:
    """POSTs a ping to ``endpoint`` now (a disabled endpoint too: checking it is how it gets fixed); at most
    EVENTS_DELIVERY_TIMEOUT_SECONDS."""
    event = ping_event(endpoint=endpoint)
    with DeliveryConnections() as connections:
        outcome = delivery_post(connections=connections, endpoint=endpoint, event=event)
    return PingResult(
        event_id=event.id,
        ok=outcome.ok,
        status=outcome.status_code,
        error=outcome.error or None,
        duration_ms=outcome.duration_ms,
    )
