"""Waits that end on a change, not on the clock (docs/rules.md): a send waiting for the messaging limit may be
parked up to a whole window (24 h) ahead, until the window frees room. When the organization's limit changes
(tokens/limits.py sends ``messaging_limit_changed`` on commit: the command, the admin, Meta's webhooks) and the new
limit is higher, those sends are made due now and their running broadcasts dispatched at once: they go out as far as
the new limit lets them (the ledger's count starts afresh from PostgreSQL at each change: rules/messaging_limit.py),
and the rest wait again, for the new window. A lower limit wakes nothing: the fresh count holds new sends back at
once."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from broadcasts import queue
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus, WaitReason

# The second wake: after the outcome writes of batches admitted under the old limit (a pump writes them within ~1 s).
REWAKE_SECONDS = 3.0


def limit_raised(*, limit: int | None, previous: int | None) -> bool:
    """Whether a change lets more numbers through (None = unlimited)."""
    if limit is None:
        return previous is not None
    return previous is not None and limit > previous


def limit_waiters_wake(*, organization_id: int, now: datetime | None = None) -> list[str]:
    """Make the organization's sends that wait for the messaging limit due now (one conditional UPDATE per
    broadcast: only PENDING, unleased sends still waiting for the limit and due later), and dispatch its running
    broadcasts that had any. A paused broadcast's sends are made due too: its resume dispatches them. Returns the
    broadcasts dispatched."""
    now = now or timezone.now()
    broadcasts = list(
        Broadcast.objects.filter(
            organization_id=organization_id,
            status__in=(BroadcastStatus.IN_PROGRESS, BroadcastStatus.PAUSED),
        ).values_list("id", "status")
    )
    woken: list[str] = []
    for broadcast_id, status in broadcasts:
        moved = Send.objects.filter(
            broadcast_id=broadcast_id,
            status=SendStatus.PENDING,
            wait_reason=WaitReason.MESSAGING_LIMIT,
            lease_expires_at__isnull=True,
            next_attempt_at__gt=now,
        ).update(next_attempt_at=now, updated_at=now)
        if moved and status == BroadcastStatus.IN_PROGRESS:
            woken.append(broadcast_id)
    for broadcast_id in woken:
        queue.enqueue_dispatch(broadcast_id)
    return woken


def on_messaging_limit_changed(
    sender: object, *, organization_id: int, limit: int | None, previous: int | None, **kwargs: object
) -> None:
    """The receiver of tokens.limits.messaging_limit_changed (connected in broadcasts/apps.py)."""
    if limit_raised(limit=limit, previous=previous):
        limit_waiters_wake(organization_id=organization_id)
        # A batch a pump admitted under the old limit may park its sends just after this wake: once more, later.
        queue.limit_waiters_wake_later(organization_id, countdown=REWAKE_SECONDS)
