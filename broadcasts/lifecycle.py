"""The life of a broadcast: every change of its status, and the bulk send transitions that go with it.

    PENDING --start--> IN_PROGRESS --finalize--> COMPLETED | FAILED
    PENDING | IN_PROGRESS --pause--> PAUSED --resume--> IN_PROGRESS (PENDING when it never started)
    anything not final --cancel--> CANCELLED (its pending sends no worker holds: CANCELLED)
    COMPLETED | FAILED --retry (failed sends re-queued)--> IN_PROGRESS; PENDING, IN_PROGRESS, PAUSED keep theirs
    a number's erasure: its pending sends not being posted --> CANCELLED, in any broadcast (its status kept)

Each transition is written once, here, and guarded by the row: a conditional UPDATE (start, finalize) or the
caller's row lock (pause, resume, cancel: ``broadcast_get_for_update`` in broadcasts/services.py, which turns a
refused transition into a ConflictError for the API and the admin). What Meta answered for one attempt is not a
lifecycle change: delivery/outcomes.py records it (SENT, FAILED, retry later) and broadcasts/status_updates/
records the webhooks' statuses. Every bulk send transition here moves the broadcast's kept counts in the same
transaction, the broadcast row locked first (broadcasts/counts.py).
"""

import logging
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from broadcasts.counts import broadcasts_lock, counts_move
from broadcasts.models import FINAL_BROADCAST_STATUSES, Broadcast, BroadcastStatus, Send, SendStatus, WaitReason
from broadcasts.notifications import broadcast_event_publish
from core.metrics import broadcast_pause_count
from whatsapp.errors import ErrorClass, classify

logger = logging.getLogger(__name__)

# The gate of cancel and pause (docs/api.md: no POST leaves after their 200). Every POST's send is marked posting
# by a conditional UPDATE that passes only while the broadcast is IN_PROGRESS, and a POST may leave only within
# POST_PERMIT_SECONDS (0.3 s, delivery/claims.py) of the moment that UPDATE was sent. Cancel and pause commit the
# new status, then wait FENCE_SECONDS before answering: any mark that passed was taken before their commit, so
# every POST it allowed left before the answer. Causal order only: no clock is compared across machines.
FENCE_SECONDS = 0.4

# The statuses each manual action leaves from (the diagram above): the transitions below refuse any other, and the
# admin offers an action's button only where it is listed here.
CANCELLABLE_STATUSES = tuple(s for s in BroadcastStatus if s not in FINAL_BROADCAST_STATUSES)
PAUSABLE_STATUSES = (BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS)
RESUMABLE_STATUSES = (BroadcastStatus.PAUSED,)
ACTIONS_FROM: dict[str, tuple[str, ...]] = {
    "cancel": CANCELLABLE_STATUSES,
    "pause": PAUSABLE_STATUSES,
    "resume": RESUMABLE_STATUSES,
}


def actions_allowed(status: str) -> list[str]:
    """The manual actions (cancel, pause, resume) a broadcast in ``status`` may take, in that order."""
    return [action for action, statuses in ACTIONS_FROM.items() if status in statuses]


def broadcasts_start(*, broadcast_ids: Iterable[str], now: datetime) -> int:
    """PENDING -> IN_PROGRESS exactly once, and only when due: the UPDATE's WHERE is the guard, so any number of
    dispatches and beat processes start each broadcast once. Returns how many started.

    One whose template is not APPROVED when it falls due is held PAUSED instead, without a POST (docs/api.md:
    ``template_paused``, or ``template_disabled`` for a DISABLED template; broadcast.paused is published)."""
    ids = list(broadcast_ids)
    due = Q(status=BroadcastStatus.PENDING) & (Q(scheduled_at__isnull=True) | Q(scheduled_at__lte=now))
    started = Broadcast.objects.filter(due, id__in=ids, template__status="APPROVED").update(
        status=BroadcastStatus.IN_PROGRESS, started_at=now, updated_at=now
    )
    if started < len(ids):
        _broadcasts_hold_unapproved(ids=ids, due=due, now=now)
    return started


def _broadcasts_hold_unapproved(*, ids: list[str], due: Q, now: datetime) -> None:
    """Due broadcasts whose template is not APPROVED: PENDING -> PAUSED by a conditional UPDATE per template status
    (a concurrent start or pause wins), each publishing broadcast.paused after commit."""
    held = list(
        Broadcast.objects.filter(due, id__in=ids)
        .exclude(template__status="APPROVED")
        .values_list("id", "template__status")
    )
    for broadcast_id, template_status in held:
        disabled = template_status == "DISABLED"
        reason = {
            "code": "template_disabled" if disabled else "template_paused",
            "message": f"The template is {template_status}, not APPROVED: resume once Meta approves it again.",
        }
        if Broadcast.objects.filter(due, id=broadcast_id).update(
            status=BroadcastStatus.PAUSED, paused_reason=reason, updated_at=now
        ):
            _pause_log(broadcast_id=broadcast_id, reason=reason)
            transaction.on_commit(
                lambda bid=broadcast_id: broadcast_event_publish(broadcast_id=bid, event_type="broadcast.paused")
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


def _sends_cancelled(sends: QuerySet[Send], *, now: datetime) -> int:
    """These (pending) sends -> CANCELLED, with no retry time, lease or posting marker left on them; the caller
    moves the kept counts."""
    return sends.update(
        status=SendStatus.CANCELLED, next_attempt_at=None, lease_expires_at=None, posting_at=None, updated_at=now
    )


def sends_cancel_unleased(*, broadcast_id: str, now: datetime | None = None) -> int:
    """A cancelled broadcast's pending sends that no live worker holds become CANCELLED, never sent: with no
    retry time, lease or posting marker left on them. A send a worker holds (live lease) is left to that
    worker, which finds the broadcast CANCELLED and cancels it when it has not posted it. The kept counts move
    in the same transaction (the broadcast row locked first)."""
    now = now or timezone.now()
    with transaction.atomic():
        broadcasts_lock(broadcast_ids=[broadcast_id])
        n = _sends_cancelled(
            Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.PENDING).filter(
                Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
            ),
            now=now,
        )
        counts_move(broadcast_id=broadcast_id, old=SendStatus.PENDING, new=SendStatus.CANCELLED, n=n)
    return n


def number_sends_cancel(*, sends: Iterable[tuple[int, str]], now: datetime | None = None) -> int:
    """The erasure of a number (``DELETE /v1/contacts/{to}``): of these sends, given as (send id, broadcast id),
    those still PENDING and not being posted become CANCELLED, never sent (nothing can be sent to a number we no
    longer store), with no retry time, lease or posting marker left on them; a send being posted is left to its
    POST. The kept counts move in the same transaction, the broadcast rows locked first. Returns how many."""
    sends = list(sends)
    now = now or timezone.now()
    with transaction.atomic():
        broadcasts_lock(broadcast_ids={broadcast_id for _, broadcast_id in sends})
        # Locked (FOR UPDATE) before the move: the counts move by exactly what is cancelled.
        cancel = list(
            Send.objects.filter(id__in=[send_id for send_id, _ in sends], status=SendStatus.PENDING)
            .filter(posting_at__isnull=True)
            .select_for_update()
            .values_list("id", "broadcast_id")
        )
        if cancel:
            _sends_cancelled(Send.objects.filter(id__in=[send_id for send_id, _ in cancel]), now=now)
        for broadcast_id, n in sorted(Counter(broadcast_id for _, broadcast_id in cancel).items()):
            counts_move(broadcast_id=broadcast_id, old=SendStatus.PENDING, new=SendStatus.CANCELLED, n=n)
    return len(cancel)


def _posting_fence(*, was: str) -> None:
    """Return only once no POST of this broadcast can leave any more (docs/api.md: none after the 200).

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
    if broadcast.status not in CANCELLABLE_STATUSES:
        return False
    _posting_fence(was=broadcast.status)
    now = timezone.now()
    broadcast.status = BroadcastStatus.CANCELLED
    broadcast.completed_at = now
    broadcast.save(update_fields=["status", "completed_at", "updated_at"])
    sends_cancel_unleased(broadcast_id=broadcast.id, now=now)
    # The customer's CRM learns of the cancellation (docs/api.md), with the counts as they stand at that moment.
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
    _pause_log(broadcast_id=broadcast.id, reason=broadcast.paused_reason)
    transaction.on_commit(lambda: broadcast_event_publish(broadcast_id=broadcast.id, event_type="broadcast.paused"))
    return True


def _pause_log(*, broadcast_id: str, reason: dict[str, str]) -> None:
    """Once the pause commits: one log line at the level an operator acts on (docs/operations.md): a pause on
    request is INFO; Meta's account-level error ERROR (every broadcast of the account will stop the same way); any
    other (template paused by Meta, budget reached, ...) WARNING. And msg_broadcast_pauses_total{code}."""
    code, message = str(reason.get("code", "")), str(reason.get("message", ""))
    if code == "manual":
        level = logging.INFO
    elif classify(code=code, http_status=None) is ErrorClass.ACCOUNT:
        level = logging.ERROR
    else:
        level = logging.WARNING

    def record() -> None:
        logger.log(level, "broadcast %s paused: code %s: %s", broadcast_id, code, message)
        broadcast_pause_count(code=code)

    transaction.on_commit(record)


def broadcast_pause_for_account_error(*, broadcast_id: str, reason: dict[str, str]) -> bool:
    """The engine's own pause on Meta's account-level error (``reason`` = its code and message), in its own
    transaction. False when someone else paused, cancelled or finished the broadcast first."""
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().filter(pk=broadcast_id).first()
        return broadcast is not None and broadcast_pause(broadcast=broadcast, reason=reason, fence=False)


def broadcast_resume(*, broadcast: Broadcast) -> bool:
    """PAUSED -> IN_PROGRESS (or PENDING when it never started); the caller holds the row lock and wakes the
    workers after commit. False when it was not PAUSED."""
    if broadcast.status not in RESUMABLE_STATUSES:
        return False
    broadcast.status = BroadcastStatus.IN_PROGRESS if broadcast.started_at else BroadcastStatus.PENDING
    broadcast.paused_reason = None
    broadcast.save(update_fields=["status", "paused_reason", "updated_at"])
    return True


# Where retry may re-queue: a PAUSED broadcast re-queues but stays PAUSED; a CANCELLED one never sends again.
RETRYABLE_FROM = (
    BroadcastStatus.PENDING,
    BroadcastStatus.IN_PROGRESS,
    BroadcastStatus.PAUSED,
    BroadcastStatus.COMPLETED,
    BroadcastStatus.FAILED,
)


def sends_retry(
    *,
    broadcast_id: str,
    error_codes: Iterable[str] | None = None,
    now: datetime | None = None,
    not_before: datetime | None = None,
) -> int:
    """FAILED sends with ``retryable: true`` (and one of ``error_codes``, when given) -> PENDING for a new round
    of attempts: attempts start over, error, wamid and status times cleared (``unknown_outcomes`` stays, a record
    of re-posts). The kept counts move in the same transaction, the broadcast row locked first. Returns how many.
    Only this re-posts a FAILED send; posting-time rules still apply (a 131049 number waits out its hold). With
    ``not_before`` they wait until then (``next_attempt_at``, shown under ``waiting.retry``)."""
    now = now or timezone.now()
    with transaction.atomic():
        broadcasts_lock(broadcast_ids=[broadcast_id])
        queryset = Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.FAILED, error_retryable=True)
        if error_codes is not None:
            queryset = queryset.filter(error_code__in=list(error_codes))
        n = queryset.update(
            status=SendStatus.PENDING,
            attempts=0,
            next_attempt_at=not_before,
            wait_reason=WaitReason.RETRY if not_before is not None else "",
            lease_expires_at=None,
            posting_at=None,
            message_id=None,
            error_code="",
            error_title="",
            error_message="",
            error_retryable=None,
            sent_at=None,
            delivered_at=None,
            read_at=None,
            failed_at=None,
            updated_at=now,
        )
        counts_move(broadcast_id=broadcast_id, old=SendStatus.FAILED, new=SendStatus.PENDING, n=n)
    return n


def broadcast_retry(
    *, broadcast: Broadcast, error_codes: Iterable[str] | None = None, not_before: datetime | None = None
) -> int | None:
    """Re-queue the broadcast's retryable failures (``sends_retry``); the caller holds the row lock and wakes the
    workers after commit. A COMPLETED or FAILED broadcast with sends re-queued runs again (IN_PROGRESS, its
    ``completed_at`` cleared: finalize ends it again and publishes a new ``broadcast.completed``); any other state
    keeps its status. None (and nothing changed) when it cannot be retried: CANCELLED, or its sends purged."""
    if broadcast.status not in RETRYABLE_FROM or broadcast.purged_at is not None:
        return None
    n = sends_retry(broadcast_id=broadcast.id, error_codes=error_codes, not_before=not_before)
    if n and broadcast.status in (BroadcastStatus.COMPLETED, BroadcastStatus.FAILED):
        broadcast.status = BroadcastStatus.IN_PROGRESS
        broadcast.completed_at = None
        broadcast.save(update_fields=["status", "completed_at", "updated_at"])
    return n
