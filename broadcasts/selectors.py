"""Reads of the bulk API: one broadcast with its counts, lists by keyset pagination.

Counts are the ones kept on the broadcast row (broadcasts/counts.py moves them with every send status change, in
the same transaction): reading them costs nothing per send, and they survive the purge of the sends (retention).
``counts.counts_from_sends`` is the GROUP BY they must always equal (the tests check it).
"""

from datetime import datetime
from typing import Any, NamedTuple

from django.db.models import Count, Max, Q, Sum

from broadcasts.models import KEPT_COUNT_FIELDS, Broadcast, BroadcastStatus, Send, SendStatus, WaitReason
from core.errors import NotFoundError
from core.ids import is_object_id
from templates_registry.models import Template
from tokens.models import Organization
from whatsapp.numbers import wa_id_e164_forms

COUNT_KEYS = KEPT_COUNT_FIELDS


def broadcast_get(*, broadcast_id: str, organization: Organization | None = None) -> Broadcast:
    """The broadcast, or 404 when it does not exist for this organization (no hint it exists)."""
    return _broadcast_one(Broadcast.objects.select_related("channel"), broadcast_id, organization)


def broadcast_get_for_update(*, broadcast_id: str, organization: Organization | None = None) -> Broadcast:
    """Like ``broadcast_get``, holding the row lock until the caller's transaction ends."""
    return _broadcast_one(Broadcast.objects.select_for_update(), broadcast_id, organization)


def _broadcast_one(queryset, broadcast_id: str, organization: Organization | None) -> Broadcast:
    if not is_object_id(broadcast_id):
        # Not one of our ids (the URL converter refuses those already): no query can find it.
        raise NotFoundError("Broadcast not found.")
    if organization is not None:
        queryset = queryset.filter(organization=organization)
    broadcast = queryset.filter(pk=broadcast_id).first()
    if broadcast is None:
        raise NotFoundError("Broadcast not found.")
    return broadcast


def counts_of(broadcast: Broadcast) -> dict[str, int]:
    """The broadcast's kept counts, every key present: no query."""
    return {key: getattr(broadcast, key) for key in COUNT_KEYS}


def broadcast_counts(*, broadcast_ids: list[str]) -> dict[str, dict[str, int]]:
    """The kept counts of each broadcast, every key present (one primary-key read)."""
    counts = {bid: dict.fromkeys(COUNT_KEYS, 0) for bid in broadcast_ids}
    for row in Broadcast.objects.filter(id__in=broadcast_ids).values("id", *COUNT_KEYS):
        counts[row.pop("id")] = row
    return counts


def error_rate(*, counts: dict[str, int], total: int) -> float:
    """failed / (total - pending - cancelled), 0 when nothing was attempted; 4 decimals."""
    divisor = total - counts["pending"] - counts["cancelled"]
    return round(counts["failed"] / divisor, 4) if divisor > 0 else 0.0


def broadcast_list(
    *,
    organization: Organization,
    limit: int,
    after: tuple[datetime, str] | None = None,
    status: str | None = None,
) -> tuple[list[Broadcast], bool]:
    """The organization's broadcasts newest first, after a (created_at, id) keyset position, optionally of one
    status (a ``BroadcastStatus`` value).

    Returns the page and whether more follow.
    """
    queryset = Broadcast.objects.filter(organization=organization).select_related("channel")
    if status is not None:
        queryset = queryset.filter(status=status)
    if after is not None:
        created_at, broadcast_id = after
        queryset = queryset.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=broadcast_id))
    page = list(queryset.order_by("-created_at", "-id")[: limit + 1])
    return page[:limit], len(page) > limit


def broadcast_sends_list(
    *, broadcast: Broadcast, limit: int, status: str | None = None, after_index: int | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """A page of the broadcast's sends in request order, optionally of one status."""
    queryset = Send.objects.filter(broadcast_id=broadcast.id)
    if status is not None:
        queryset = queryset.filter(status=status)
    if after_index is not None:
        queryset = queryset.filter(index__gt=after_index)
    rows = list(
        queryset.order_by("index").values(
            "index",
            "to",
            "user_id",
            "status",
            "message_id",
            "attempts",
            "error_code",
            "error_message",
            "error_retryable",
            "variables",
            "meta_data",
            "updated_at",
            "pricing",
            "meta_status",
            "unknown_outcomes",
        )[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def broadcast_error_codes(*, broadcast: Broadcast, limit: int = 10) -> list[tuple[str, str, int]]:
    """The most frequent (error_code, one message, count) of the broadcast's failed sends."""
    rows = (
        Send.objects.filter(broadcast_id=broadcast.id, status=SendStatus.FAILED)
        .exclude(error_code="")
        .values("error_code")
        .annotate(n=Count("id"))
        .order_by("-n", "error_code")[:limit]
    )
    out = []
    for row in rows:
        message = (
            Send.objects.filter(broadcast_id=broadcast.id, error_code=row["error_code"])
            .values_list("error_message", flat=True)
            .first()
        )
        out.append((row["error_code"], message or "", row["n"]))
    return out


WAITING_KEYS = ("schedule", "throughput", "messaging_limit", "send_window", "retry")


class Waiting(NamedTuple):
    """``waiting`` (counts by reason; ``send_window`` left 0 here), when the last retry falls due, and for a broadcast
    with a send window its sends counted under ``throughput`` by zone: api/progress.py asks the rule which zones
    are closed now (one computation per zone) and moves those to ``send_window``."""

    counts: dict[str, int]
    retry_last: datetime | None
    by_zone: dict[str, int]


def broadcast_waiting(*, broadcast: Broadcast, now: datetime) -> Waiting:
    """How many pending sends wait, and why (docs/api.md ``waiting``), and when the last retry falls due. schedule: the
    broadcast has not started because ``scheduled_at`` is ahead; retry: pending after a failed attempt or held by a
    marketing hold (``WaitReason.RETRY`` / ``MARKETING_HOLD``, or an error with a next attempt time);
    messaging_limit: ``WaitReason.MESSAGING_LIMIT``; throughput: every other pending send (of which api/progress.py
    counts those whose window is closed under send_window). ONE aggregate over the broadcast's pending sends (the
    partial index send_pending: at most the broadcast's 5,000), grouped by zone with a window; none when nothing
    is pending."""
    waiting = dict.fromkeys(WAITING_KEYS, 0)
    if broadcast.pending <= 0:
        return Waiting(waiting, None, {})
    if broadcast.status == "PENDING" and broadcast.scheduled_at is not None and broadcast.scheduled_at > now:
        waiting["schedule"] = broadcast.pending
        return Waiting(waiting, None, {})
    limit_q = Q(wait_reason=WaitReason.MESSAGING_LIMIT)
    window_q = Q(wait_reason=WaitReason.SEND_WINDOW)
    timed = Q(wait_reason__in=(WaitReason.RETRY, WaitReason.MARKETING_HOLD))
    retry_q = ~limit_q & ~window_q & (timed | (Q(next_attempt_at__isnull=False) & ~Q(error_code="")))
    pending = Send.objects.filter(broadcast_id=broadcast.id, status=SendStatus.PENDING)
    counts = {
        "total": Count("id"),
        "limit": Count("id", filter=limit_q),
        "retry": Count("id", filter=retry_q),
        "retry_last": Max("next_attempt_at", filter=retry_q),
    }
    by_zone: dict[str, int] = {}
    if broadcast.send_window is None:
        row = pending.aggregate(**counts)
    else:
        # The same aggregate by zone: whether a send waits for its window is the rule's answer for its zone now,
        # not only the engine's last verdict (a send the engine has not looked at yet waits all the same).
        rows = list(pending.values("time_zone").annotate(**counts).order_by())
        row = {key: sum(r[key] for r in rows) for key in ("total", "limit", "retry")}
        row["retry_last"] = max((r["retry_last"] for r in rows if r["retry_last"] is not None), default=None)
        by_zone = {r["time_zone"]: r["total"] - r["limit"] - r["retry"] for r in rows}
    waiting["messaging_limit"] = row["limit"]
    waiting["retry"] = row["retry"]
    waiting["throughput"] = max(0, row["total"] - row["limit"] - row["retry"])
    return Waiting(waiting, row["retry_last"], by_zone)


# --- numbers Meta sends back (docs/rules.md: `wa_id`, `recipient_id`, `messages[].from`) -------------------------
def sends_by_meta_number(*, numbers: list[str], channel_id: str | None = None):
    """The sends a number Meta sent back names: through the wa_id stored from Meta's answer first; a send that has
    no wa_id yet (never answered) by its E.164 number, Meta's rewriting of MX/AR/BR numbers undone.

    Two indexed lookups whatever the table holds (send_wa_id, send_to); `channel_id` narrows to one channel's
    broadcasts. Returns a queryset (add `.values(...)` or filters as needed)."""
    wa_ids = sorted({"".join(ch for ch in str(n) if ch.isdigit()) for n in numbers} - {""})
    e164 = sorted({candidate for n in wa_ids for candidate in wa_id_e164_forms(n)})
    queryset = Send.objects.filter(Q(wa_id__in=wa_ids) | Q(wa_id__isnull=True, to__in=e164))
    if channel_id is not None:
        queryset = queryset.filter(broadcast__channel_id=channel_id)
    return queryset


class LaneUse(NamedTuple):
    """One lane of a channel right now: its running broadcasts and their pending sends (kept counts)."""

    lane: str  # "priority" (AUTHENTICATION and UTILITY) or "marketing"
    broadcasts: int
    pending: int


def channel_lanes(*, channel_id: str) -> list[LaneUse]:
    """The lanes' use of a channel (docs/rules.md, category lanes): its IN_PROGRESS broadcasts grouped by lane, with
    their kept pending counts. One grouped query over the channel's running broadcasts, never over the sends."""
    rows = (
        Broadcast.objects.filter(channel_id=channel_id, status=BroadcastStatus.IN_PROGRESS)
        .values("template__category")
        .annotate(n=Count("id"), waiting=Sum("pending"))
    )
    use = {"priority": [0, 0], "marketing": [0, 0]}
    for row in rows:
        lane = "marketing" if row["template__category"] == Template.Category.MARKETING else "priority"
        use[lane][0] += row["n"]
        use[lane][1] += row["waiting"] or 0
    return [LaneUse(lane, n, pending) for lane, (n, pending) in use.items()]
