"""Recovery: the database is the truth, the broker only wakes workers.

Beat runs two tasks:
- ``broadcasts_start_due`` (every ~5 s) starts each due scheduled broadcast exactly once, with any number of beat
  or worker processes (row locks with SKIP LOCKED and a conditional UPDATE), and also starts unscheduled ones
  whose on_commit enqueue was lost;
- ``broadcasts_sweep`` (every ~10 s) takes back sends whose lease expired (a killed or hung worker), counting an
  unknown outcome when the POST may have left (Send.posting_at), cancels leftovers of cancelled broadcasts, and
  re-dispatches IN_PROGRESS broadcasts no recent dispatch covers: lost chunk or wake messages, a flushed Redis,
  broadcasts with nothing pending that were never finished.

The sweeper sits beside broadcasts/services.py: it starts and cancels through broadcasts/lifecycle.py, applies
the outcome journal (delivery/outcomes.py) and dispatches through delivery/dispatch.py. Taking back an expired
lease is its own rule (``sends_recover_expired``): only it decides whether an unknown outcome is counted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, PositiveSmallIntegerField, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone
from redis.exceptions import RedisError

from broadcasts import counts, lifecycle
from broadcasts.delivery import dispatch, outcomes
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from broadcasts.notifications import message_events_publish
from broadcasts.queue import enqueue_dispatch
from broadcasts.rollups import activity_add

# An unscheduled broadcast still PENDING this long after creation lost its dispatch message.
LOST_START_SECONDS = 10
# Beat starts at most this many broadcasts per run; the next run takes the rest (5 s later).
START_BATCH = 200


def broadcasts_start_due(*, now: datetime | None = None) -> list[str]:
    """Mark due PENDING broadcasts IN_PROGRESS (never twice, never early) and enqueue their dispatch."""
    now = now or timezone.now()
    due = Q(scheduled_at__lte=now) | Q(
        scheduled_at__isnull=True, created_at__lte=now - timedelta(seconds=LOST_START_SECONDS)
    )
    with transaction.atomic():
        ids = list(
            Broadcast.objects.select_for_update(skip_locked=True)
            .filter(due, status=BroadcastStatus.PENDING)
            .order_by("scheduled_at")
            .values_list("id", flat=True)[:START_BATCH]
        )
        if ids:
            lifecycle.broadcasts_start(broadcast_ids=ids, now=now)
            transaction.on_commit(lambda: [enqueue_dispatch(broadcast_id) for broadcast_id in ids])
    return ids


def sends_recover_expired(*, now: datetime | None = None) -> set[str]:
    """Take back PENDING sends whose lease expired (claims skip them until then); returns their broadcasts.

    With the posting marker set the POST may have reached Meta: one unknown outcome is counted, the attempt
    stays counted (after the last attempt the send fails as a timeout), and the send is not due again before
    max(its backoff, DELIVERY_UNKNOWN_GRACE_SECONDS): a status webhook carrying its callback data settles it
    meanwhile (status_updates.matching.statuses_match_and_settle), and a settled send is never claimed again.
    Without the marker the POST never left: the claim's attempt is given back and the send is due at once.

    Leases are written on the database's clock (claims.sends_claim: statement_timestamp() + lease), so they are
    compared with the database's clock too (Now()), never with this machine's; ``now`` (tests) overrides both.
    """
    cutoff = now if now is not None else Now()
    now = now or timezone.now()
    # On the partial index of leased pending sends (send_leased): O(leased sends), whatever the table holds. No
    # DISTINCT in SQL: right after a bulk load (stale statistics) it made the planner walk send_pending, which yields
    # broadcast_id in order, through every pending send of the table (105 ms at 10 M sends, bench-scale).
    expired = Send.objects.filter(
        status=SendStatus.PENDING, lease_expires_at__isnull=False, lease_expires_at__lt=cutoff
    )
    broadcast_ids = set(expired.values_list("broadcast_id", flat=True))
    if not broadcast_ids:
        return set()
    exhausted_by_broadcast: dict[str, list[int]] = {}
    for send_id, broadcast_id in expired.filter(
        posting_at__isnull=False, attempts__gte=settings.DELIVERY_MAX_ATTEMPTS
    ).values_list("id", "broadcast_id"):
        exhausted_by_broadcast.setdefault(broadcast_id, []).append(send_id)
    for broadcast_id, ids in sorted(exhausted_by_broadcast.items()):
        # The timeout failures and the kept counts in one transaction, the broadcast row locked first.
        with transaction.atomic():
            counts.broadcasts_lock(broadcast_ids=[broadcast_id])
            failed_ids = list(
                Send.objects.filter(id__in=ids, status=SendStatus.PENDING, lease_expires_at__lt=cutoff)
                .order_by("id")
                .select_for_update(no_key=True)
                .values_list("id", flat=True)
            )
            n = Send.objects.filter(id__in=failed_ids).update(
                status=SendStatus.FAILED,
                failed_at=now,
                lease_expires_at=None,
                posting_at=None,
                next_attempt_at=None,
                unknown_outcomes=F("unknown_outcomes") + 1,
                error_code="timeout",
                error_title="Timeout",
                error_message="The worker stopped before the answer to the last attempt was recorded.",
                error_retryable=True,
                updated_at=now,
            )
            counts.counts_move(broadcast_id=broadcast_id, old=SendStatus.PENDING, new=SendStatus.FAILED, n=n)
            if failed_ids:
                message_events_publish(send_ids=failed_ids, status="FAILED")
            activity_add(now=now, failures=[(broadcast_id, "timeout")] * n)
    expired.update(
        unknown_outcomes=Case(
            When(posting_at__isnull=False, then=F("unknown_outcomes") + 1),
            default=F("unknown_outcomes"),
            output_field=PositiveSmallIntegerField(),
        ),
        attempts=Case(
            When(posting_at__isnull=True, attempts__gt=0, then=F("attempts") - 1),
            default=F("attempts"),
            output_field=PositiveSmallIntegerField(),
        ),
        next_attempt_at=Case(
            *(
                When(posting_at__isnull=False, attempts=attempts, then=Value(_unknown_due(now, attempts)))
                for attempts in range(1, settings.DELIVERY_MAX_ATTEMPTS)
            ),
            When(posting_at__isnull=False, then=Value(_unknown_due(now, 1))),
            default=F("next_attempt_at"),
            output_field=DateTimeField(),
        ),
        lease_expires_at=None,
        posting_at=None,
        updated_at=now,
    )
    return broadcast_ids


def _unknown_due(now: datetime, attempts: int) -> datetime:
    """When a send whose attempt had an unknown outcome may be posted again (docs/rules.md)."""
    delay = max(outcomes.retry_delay(attempts=attempts), settings.DELIVERY_UNKNOWN_GRACE_SECONDS)
    return now + timedelta(seconds=delay)


def broadcasts_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """One pass of the sweeper; returns what it did (for logs and tests)."""
    # Expired leases on the database's clock unless a test gives its own now.
    lease_now = now
    now = now or timezone.now()
    # Outcomes a run could not write (PostgreSQL away) first, so no send Meta answered is taken back as unknown.
    try:
        journaled = outcomes.journal_apply()
    except RedisError:
        journaled = 0
    recovered = sends_recover_expired(now=lease_now)
    cancelled = 0
    # Cancelled broadcasts with pending sends left, from their kept counts (partial index broadcast_with_pending).
    for broadcast_id in Broadcast.objects.filter(status=BroadcastStatus.CANCELLED, pending__gt=0).values_list(
        "id", flat=True
    ):
        cancelled += lifecycle.sends_cancel_unleased(broadcast_id=broadcast_id)
    dispatched = 0
    for broadcast_id in list(dispatch.broadcasts_in_progress()):
        # Sends just taken back need a dispatch now; otherwise trust a recent one (its chunk tasks may be queued).
        if broadcast_id not in recovered and dispatch.fanout_recent(broadcast_id=broadcast_id):
            continue
        dispatch.broadcast_dispatch(broadcast_id=broadcast_id)
        dispatched += 1
    return {"recovered": len(recovered), "cancelled": cancelled, "dispatched": dispatched, "journaled": journaled}
