"""``ping``: one signed test event POSTed to one endpoint at once (docs/api.md), so a customer can check their
receiver and its signature verification without waiting for a real event.

It goes through the same transport as every event (``events.transport.delivery_post``: the host resolved and
checked against the private-address rules, the connection pinned to the checked address), signed the same way
(both schemes, both secrets during a rotation's overlap), but not through the outbox: it is not stored, not
retried, and it neither counts toward nor resets the endpoint's failure streak.

A ping holds the API process serving it, so it is bounded twice: the attempt runs in a thread of its own and the
caller waits for it EVENTS_PING_TIMEOUT_SECONDS (5 s) at most, DNS included (a name lookup cannot be interrupted);
and one organization has at most one ping in flight (a Redis lock), so no endpoint can hold more than one of the
API's workers per organization.
"""

import logging
import math
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from core.errors import RateLimitedError
from core.redis import redis_client
from events.models import Event, EventType, WebhookEndpoint, event_id
from events.transport import DeliveryConnections, PostOutcome, delivery_post

logger = logging.getLogger(__name__)

# The transport's own deadline ends this much before the caller stops waiting, so that a timed-out attempt has
# closed its socket (and released the lock) by the time the answer goes out.
TRANSPORT_MARGIN_SECONDS = 0.25
# The lock outlives the longest ping by far; it only matters if the process dies holding it.
LOCK_TTL_SECONDS = 30
TIMEOUT_ERROR = "timeout"
# Deletes the lock only if it is still ours (it may have expired and been taken by another ping).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True)
class PingResult:
    event_id: str
    ok: bool  # the endpoint answered 2xx
    status: int | None  # the endpoint's HTTP status; None when there was no answer
    error: str | None  # why it failed ("timeout", refused address, connection error, non-2xx); None when ok
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


def ping_lock_key(organization_id: int) -> str:
    return f"events:ping:{organization_id}"


def _lock_acquire(*, organization_id: int, deadline: float) -> str:
    """Takes the organization's ping lock, or raises RateLimitedError (429) while another ping is in flight."""
    token = uuid.uuid4().hex
    client = redis_client()
    key = ping_lock_key(organization_id)
    if client.set(key, token, nx=True, ex=LOCK_TTL_SECONDS):
        return token
    left_ms = client.pttl(key)
    # The ping in flight answers within the deadline from when it took the lock (its TTL tells when that was).
    running_for = LOCK_TTL_SECONDS - left_ms / 1000 if left_ms and left_ms > 0 else 0.0
    wait = max(1.0, deadline - running_for)
    raise RateLimitedError(
        "A ping of this organization is in flight; retry when it has answered.",
        retry_after_seconds=math.ceil(wait),
    )


def _lock_release(*, organization_id: int, token: str) -> None:
    try:
        redis_client().eval(_RELEASE, 1, ping_lock_key(organization_id), token)
    except Exception as exc:  # noqa: BLE001 - the lock expires by itself
        logger.warning("events: could not release the ping lock of organization %s (%s)", organization_id, exc)


# The attempt touches no database (the endpoint and its secrets are loaded already): its thread opens no connection.
def _attempt(*, endpoint: WebhookEndpoint, event: Event, budget: float, result: Future) -> None:
    try:
        with DeliveryConnections() as connections:
            result.set_result(
                delivery_post(connections=connections, endpoint=endpoint, event=event, budget_seconds=budget)
            )
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
        result.set_exception(exc)


def endpoint_ping(*, endpoint: WebhookEndpoint) -> PingResult:
    """POSTs a ping to ``endpoint`` now (a disabled endpoint too: checking it is how it gets fixed) and answers
    within EVENTS_PING_TIMEOUT_SECONDS; RateLimitedError while the organization has a ping in flight."""
    deadline = float(settings.EVENTS_PING_TIMEOUT_SECONDS)
    started = time.monotonic()
    token = _lock_acquire(organization_id=endpoint.organization_id, deadline=deadline)
    event = ping_event(endpoint=endpoint)
    result: Future[PostOutcome] = Future()
    # Released when the attempt ends, not when the caller stops waiting: a lookup that outlives the deadline still
    # counts as this organization's ping in flight.
    result.add_done_callback(lambda _: _lock_release(organization_id=endpoint.organization_id, token=token))
    worker = threading.Thread(
        target=_attempt,
        kwargs={
            "endpoint": endpoint,
            "event": event,
            "budget": max(0.1, deadline - TRANSPORT_MARGIN_SECONDS),
            "result": result,
        },
        name=f"ping-{endpoint.id}",
        daemon=True,
    )
    worker.start()
    try:
        outcome = result.result(timeout=max(0.0, deadline - (time.monotonic() - started)))
    except TimeoutError:
        outcome = PostOutcome(False, None, TIMEOUT_ERROR, int((time.monotonic() - started) * 1000))
    error = outcome.error or None
    if error is not None and error.startswith("Timeout"):
        error = TIMEOUT_ERROR
    return PingResult(
        event_id=event.id, ok=outcome.ok, status=outcome.status_code, error=error, duration_ms=outcome.duration_ms
    )
