"""Category lanes (docs/rules.md): on one channel, AUTHENTICATION and UTILITY sends go before MARKETING sends that
wait for throughput.

A channel's pump runs its broadcasts one after another (channel_pump.ChannelPump's ``follow``); alone, that would
make a one-time password wait behind a 5,000-recipient promotion until the promotion had nothing left to claim or
the pump's turn ended. So while a pump host serves channels, it asks here every DELIVERY_PUMP_ADOPT_INTERVAL
(one indexed query for all its channels, ``priority_due``) whether one of them has a due broadcast of a
non-MARKETING template that none of its runs serves, and the channel's pump starts a run for it beside the
current one (ChannelPump.add_lane). That run shares the channel's GCRA schedule, PostLog, number holds and posting
gate, so the cap holds as before; while it has sends waiting for slots, the pump's MARKETING runs plan no new
slots (ChannelPump.priority_waiting), so its first slot comes right after the few the MARKETING run had already
reserved (at most the limiter's horizon and lead ahead, ~0.12 s).

A broadcast's own chunk task, on another process, finds the channel's running place held and goes back to the
queue; the pump that holds the place is the one that picks the broadcast up, here.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from broadcasts import lifecycle
from broadcasts.models import Broadcast, BroadcastStatus

# The category whose sends wait for the others' (templates_registry.models.Template.Category).
MARKETING = "MARKETING"

# Due, unleased PENDING sends of a running (or due PENDING) broadcast of a non-MARKETING template on one of the
# given channels, not served by the given runs. Broadcasts by status (index) first: O(running broadcasts).
_PRIORITY_DUE_SQL = """
    SELECT b.id, b.status FROM broadcasts_broadcast b
    JOIN templates_registry_template t ON t.id = b.template_id
    WHERE b.channel_id = ANY(%s::varchar[]) AND NOT (b.id = ANY(%s::varchar[]))
      AND (b.status = 'IN_PROGRESS' OR (b.status = 'PENDING' AND (b.scheduled_at IS NULL OR b.scheduled_at <= %s)))
      AND t.category <> %s
      AND EXISTS (
        SELECT 1 FROM broadcasts_send s
        WHERE s.broadcast_id = b.id AND s.status = 'PENDING' AND s.lease_expires_at IS NULL
          AND (s.next_attempt_at IS NULL OR s.next_attempt_at <= %s)
      )
    ORDER BY b.created_at, b.id
    LIMIT 10
"""


def is_priority(broadcast: Broadcast) -> bool:
    """True for a broadcast whose sends go before MARKETING sends on its channel (AUTHENTICATION, UTILITY)."""
    return broadcast.template.category != MARKETING


def priority_due(*, channel_ids: list[str], serving: list[str]) -> list[Broadcast]:
    """The channels' due non-MARKETING broadcasts with due, unleased sends that no run in ``serving`` (broadcast
    ids) serves, oldest first, started if they were due PENDING (their dispatch may still wait for a free worker
    process; starting is exactly once whoever does it). DB thread."""
    if not channel_ids:
        return []
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_PRIORITY_DUE_SQL, [channel_ids, serving, now, MARKETING, now])
        rows = cursor.fetchall()
    if not rows:
        return []
    pending = [broadcast_id for broadcast_id, status in rows if status == BroadcastStatus.PENDING]
    if pending:
        lifecycle.broadcasts_start(broadcast_ids=pending, now=now)
    return list(
        Broadcast.objects.select_related("channel", "template")
        .filter(id__in=[broadcast_id for broadcast_id, _ in rows], status=BroadcastStatus.IN_PROGRESS)
        .order_by("created_at", "id")
    )
