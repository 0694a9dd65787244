"""The life of a broadcast: every change of its status, and the bulk send transitions that go with it.

    PENDING --start--> IN_PROGRESS --finalize--> COMPLETED | FAILED
    PENDING | IN_PROGRESS --pause--> PAUSED --resume--> IN_PROGRESS (PENDING when it never started)
    anything not final --cancel--> CANCELLED (its pending sends no worker holds: CANCELLED)

Each transition is written once, here, and guarded by the row: a conditional UPDATE (start, finalize) or the
caller's row lock (pause, resume, cancel: ``broadcast_get_for_update`` in broadcasts/services.py, which turns a
refused transition into a ConflictError for the API and the admin). What Meta answered for one attempt is not a
lifecycle change: delivery/outcomes.py records it (SENT, FAILED, retry later) and broadcasts/status_updates.py
records the webhooks' statuses. Every bulk send transition here moves the broadcast's kept counts in the same
transaction, the broadcast row locked first (broadcasts/counts.py).
"""

import time
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from broadcasts.counts import broadcasts_lock, counts_move
from broadcasts.models import FINAL_BROADCAST_STATUSES, Broadcast, BroadcastStatus, Send, SendStatus
from broadcasts.notifications import broadcast_event_publish

# The gate of cancel and pause (CONTRACT 5: no POST leaves after their 200). Every POST's send is marked posting
# by a conditional UPDATE that passes only while the broadcast is IN_PROGRESS, and a POST may leave only within
# POST_PERMIT_SECONDS (0.3 s, delivery/claims.py) of the moment that UPDATE was sent. Cancel and pause commit the
# new status, then wait FENCE_SECONDS before answering: any mark that passed was taken before their commit, so
# every POST it allowed left before the answer. Causal order only: no clock is compared across machines.
FENCE_SECONDS = 0.4
PAUSABLE_STATUSES = (BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS)


def broadcasts_start(*, broadcast_ids: Iterable[str], now: datetime) -> int:
    """PENDING -> IN_PROGRESS exactly once, and only when due: the UPDATE's WHERE is the guard, so any number of
    dispatches and beat processes start each broadcast once. Returns how many started."""
    return (
        Broadcast.objects.filter(id__in=list(broadcast_ids), status=BroadcastStatus.PENDING)
        .filter(Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now))
        .update(status=BroadcastStatus.IN_PROGRESS, started_at=now, updated_at=now)
    )


def broadcast_finalize(*, broadcast_id: str) -> str | None:
    """IN_PROGRESS -> COMPLETED (or FAILED when Meta accepted no send) once nothing is pending; exactly once,
    by a conditional UPDATE on the kept counts (``pending = 0`` in its WHERE). Returns the new status, or None when
    it was not (or no longer) to be finished."""
    counts = (
        Broadcast.objects.filter(id=broadcast_id, status=BroadcastStatus.IN_PROGRESS)
        .values("pending", "sent", "delivered", "read", "failed")
        .first()
    )
    if counts is None or counts["pending"] > 0:
        return None
    # Accepted by Meta: a send with a wamid. SENT, DELIVERED and READ ones have one; a FAILED one may (Meta's
    # webhook failed it after accepting it): only then are the broadcast's failed sends looked at.
    accepted = counts["sent"] + counts["delivered"] + counts["read"] > 0 or (
        counts["failed"] > 0
        and Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.FAILED, message_id__isnull=False).exists()
    )
    status = BroadcastStatus.COMPLETED if accepted else BroadcastStatus.FAILED
    now = timezone.now()
    updated = Broadcast.objects.filter(id=broadcast_id, status=BroadcastStatus.IN_PROGRESS, pending=0).update(
        status=status, completed_at=now, updated_at=now
    )
    if not updated:
        return None
    broadcast_event_publish(broadcast_id=broadcast_id, event_type="broadcast.completed")
    return status


def sends_cancel_unleased(*, broadcast_id: str, now: datetime | None = None) -> int:
    """A cancelled broadcast's pending sends that no live worker holds become CANCELLED, never sent: with no
    retry time, lease or posting marker left on them. A send a worker holds (live lease) is left to that
    worker, which finds the broadcast CANCELLED and cancels it when it has not posted it. The kept counts move
    in the same transaction (the broadcast row locked first)."""
    now = now or timezone.now()
    with transaction.atomic():
        broadcasts_lock(broadcast_ids=[broadcast_id])
        n = (
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .update(
                status=SendStatus.CANCELLED,
                next_attempt_at=None,
                lease_expires_at=None,
                posting_at=None,
                updated_at=now,
            )
        )
        counts_move(broadcast_id=broadcast_id, old=SendStatus.PENDING, new=SendStatus.CANCELLED, n=n)
    return n


def _posting_fence(*, was: str) -> None:
    """Return only once no POST of this broadcast can leave any more (CONTRACT 5: none after the 200).

    Every POST passes the delivery engine's gate, a conditional UPDATE that marks its send only while the
    broadcast is IN_PROGRESS, and leaves within POST_PERMIT_SECONDS of it. After the new status commits, no mark
    passes; waiting FENCE_SECONDS outlasts every permit given before. Runs after the outermost commit (an admin
    action inside a larger transaction included). Nothing can be posting for a broadcast that was not running.
    """
    if was == BroadcastStatus.IN_PROGRESS:
        transaction.on_commit(lambda: time.sleep(FENCE_SECONDS))


def broadcast_cancel(*, broadcast: Broadcast) -> bool:
    """Not final -> CANCELLED, with its pending sends no worker holds (see sends_cancel_unleased); the caller
    holds the row lock. Once the transaction commits, returns only when no POST can leave any more. False (and
    nothing changed) when the broadcast had already ended."""
    if broadcast.status in FINAL_BROADCAST_STATUSES:
        return False
    _posting_fence(was=broadcast.status)
    now = timezone.now()
    broadcast.status = BroadcastStatus.CANCELLED
    broadcast.completed_at = now
    broadcast.save(update_fields=["status", "completed_at", "updated_at"])
    sends_cancel_unleased(broadcast_id=broadcast.id, now=now)
    # The customer's CRM learns of the cancellation (CONTRACT 9), with the counts as they stand at that moment.
    transaction.on_commit(lambda: broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.cancelled"))
    return True


def broadcast_pause(*, broadcast: Broadcast, reason: dict[str, str] | None = None, fence: bool = True) -> bool:
    """PENDING or IN_PROGRESS -> PAUSED, ``reason`` defaulting to a manual pause, and ``broadcast.paused``
    published after commit; the caller holds the row lock. With ``fence`` it returns, once committed, only when
    no POST can leave any more (the engine, pausing itself, passes False). False when it cannot be paused."""
    if broadcast.status not in PAUSABLE_STATUSES:
        return False
    if fence:
        _posting_fence(was=broadcast.status)
    broadcast.status = BroadcastStatus.PAUSED
    broadcast.paused_reason = reason or {"code": "manual", "message": "Paused on request."}
    broadcast.save(update_fields=["status", "paused_reason", "updated_at"])
    transaction.on_commit(lambda: broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.paused"))
    return True


def broadcast_pause_for_account_error(*, broadcast_id: str, reason: dict[str, str]) -> bool:
    """The engine's own pause on Meta's account-level error (``reason`` = its code and message), in its own
    transaction. False when someone else paused, cancelled or finished the broadcast first."""
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().filter(pk=broadcast_id).first()
        return broadcast is not None and broadcast_pause(broadcast=broadcast, reason=reason, fence=False)


def broadcast_resume(*, broadcast: Broadcast) -> bool:
    """PAUSED -> IN_PROGRESS (or PENDING when it never started); the caller holds the row lock and wakes the
    workers after commit. False when it was not PAUSED."""
    if broadcast.status != BroadcastStatus.PAUSED:
        return False
    broadcast.status = BroadcastStatus.IN_PROGRESS if broadcast.started_at else BroadcastStatus.PENDING
    broadcast.paused_reason = None
    broadcast.save(update_fields=["status", "paused_reason", "updated_at"])
    return True


# Retrying failed sends (FAILED -> PENDING for a new round of attempts) is a lifecycle transition too: it lands
# here, beside cancel, and the API/admin action that asks for it in broadcasts/services.py.
