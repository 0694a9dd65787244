"""What the admin overview shows (docs/operations.md), read from kept data only: per channel the last hour's POSTs
per minute and its busiest second against ``max_mps`` (``ChannelMinute``), the messaging limit's use (the Redis
ledger, rules/messaging_limit.py), the running, paused and scheduled broadcasts (a partial index), the last day's
failures by code (``FailureHour``) and this month's cost (the broadcasts' kept sums). A fixed number of statements,
each bounded by what it returns (channels, minutes, hours, a page of broadcasts): never a read of the sends.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Sum

from broadcasts.models import Broadcast, BroadcastStatus, ChannelMinute, FailureHour
from broadcasts.rollups import hour_of, minute_of
from broadcasts.rules.messaging_limit import ledger_use
from templates_registry.models import Channel
from whatsapp.errors import classify

MINUTES = 60
FAILURE_HOURS = 24
# Rows per list: an overview, not a report (the broadcast list has the rest).
MAX_CHANNELS = 50
MAX_BROADCASTS = 20
ACTIVE = {
    "running": BroadcastStatus.IN_PROGRESS,
    "paused": BroadcastStatus.PAUSED,
    "scheduled": BroadcastStatus.PENDING,
}


@dataclass
class ChannelRate:
    channel: Channel
    per_minute: list[int]  # POSTs in each of the last MINUTES minutes, oldest first (the current one last)
    posted: int
    peak_second: int  # the busiest second's POSTs in that hour
    peak_at: datetime | None
    limit: int | None  # the organization's messaging limit (None: unlimited)
    limit_used: int | None  # numbers counted in its window now (None: unknown or unlimited)

    @property
    def peak_share(self) -> float:
        """The busiest second against the cap (1.0 = at the cap)."""
        return self.peak_second / self.channel.max_mps if self.channel.max_mps else 0.0


@dataclass
class Failure:
    code: str
    count: int
    error_class: str  # transient, permanent, template or account (whatsapp/errors.py), "ours" for our own codes


@dataclass
class Cost:
    currency: str
    estimated: Decimal
    billed: Decimal
    broadcasts: int


@dataclass
class Overview:
    now: datetime
    minutes: list[datetime]  # the start of each minute of ``ChannelRate.per_minute``
    channels: list[ChannelRate]
    channels_more: bool
    broadcasts: dict[str, list[Broadcast]]  # by ACTIVE's keys, newest first
    broadcasts_more: dict[str, bool]
    failures: list[Failure]
    cost: list[Cost]
    month_start: datetime
    failures_total: int = field(init=False)

    def __post_init__(self) -> None:
        self.failures_total = sum(f.count for f in self.failures)


def overview_read(*, organization_id: int | None, now: datetime) -> Overview:
    """The overview of one organization, or of all of them (``None``: the operator's whole service)."""
    now = now.astimezone(UTC)
    channels_q = Channel.objects.select_related("organization").order_by("organization__name", "id")
    if organization_id is not None:
        channels_q = channels_q.filter(organization_id=organization_id)
    channels = list(channels_q[: MAX_CHANNELS + 1])
    more = len(channels) > MAX_CHANNELS
    channels = channels[:MAX_CHANNELS]
    minutes = [minute_of(now) - timedelta(minutes=MINUTES - 1 - i) for i in range(MINUTES)]
    rates = _rates(channels=channels, minutes=minutes)
    broadcasts, broadcasts_more = _active(organization_id=organization_id)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return Overview(
        now=now,
        minutes=minutes,
        channels=rates,
        channels_more=more,
        broadcasts=broadcasts,
        broadcasts_more=broadcasts_more,
        failures=_failures(organization_id=organization_id, since=hour_of(now) - timedelta(hours=FAILURE_HOURS - 1)),
        cost=_cost(organization_id=organization_id, since=month_start),
        month_start=month_start,
    )


# Each minute's total and busiest second summed in PostgreSQL: three numbers a row, not sixty.
_MINUTES_SQL = f"""
SELECT m.channel_id, m.minute, s.total, s.peak, array_position(m.per_second, s.peak) - 1
FROM {ChannelMinute._meta.db_table} AS m,
     LATERAL (SELECT COALESCE(SUM(x), 0)::int AS total, COALESCE(MAX(x), 0) AS peak FROM unnest(m.per_second) AS x) AS s
WHERE m.channel_id = ANY(%s) AND m.minute >= %s
"""


def _rates(*, channels: list[Channel], minutes: list[datetime]) -> list[ChannelRate]:
    """One range read of the rollup (unique index channelminute_unique: channel, minute) and one ledger peek per
    limited organization (Redis; the organization came with its channel)."""
    index = {minute: i for i, minute in enumerate(minutes)}
    per_channel: dict[str, list[int]] = {c.id: [0] * len(minutes) for c in channels}
    peaks: dict[str, tuple[int, datetime | None]] = {c.id: (0, None) for c in channels}
    with connection.cursor() as cursor:
        cursor.execute(_MINUTES_SQL, [list(per_channel), minutes[0]])
        rows = cursor.fetchall()
    for channel_id, minute, total, busiest, second in rows:
        minute = minute.astimezone(UTC)
        if minute not in index:
            continue  # a clock ahead of ours: not in the chart's hour
        per_channel[channel_id][index[minute]] += total
        if busiest > peaks[channel_id][0]:
            peaks[channel_id] = (busiest, minute + timedelta(seconds=second))
    limits: dict[int, tuple[int | None, int | None]] = {}
    out = []
    for channel in channels:
        org_id = channel.organization_id
        if org_id not in limits:
            limits[org_id] = ledger_use(organization=channel.organization)
        counts = per_channel[channel.id]
        out.append(
            ChannelRate(
                channel=channel,
                per_minute=counts,
                posted=sum(counts),
                peak_second=peaks[channel.id][0],
                peak_at=peaks[channel.id][1],
                limit=limits[org_id][0],
                limit_used=limits[org_id][1],
            )
        )
    return out


def _active(*, organization_id: int | None) -> tuple[dict[str, list[Broadcast]], dict[str, bool]]:
    """The newest MAX_BROADCASTS of each non-final state (partial index broadcast_org_active)."""
    lists, more = {}, {}
    for key, status in ACTIVE.items():
        queryset = Broadcast.objects.filter(status=status).select_related("channel", "organization")
        if organization_id is not None:
            queryset = queryset.filter(organization_id=organization_id)
        found = list(queryset.order_by("-created_at", "-id")[: MAX_BROADCASTS + 1])
        lists[key], more[key] = found[:MAX_BROADCASTS], len(found) > MAX_BROADCASTS
    return lists, more


def _error_class(code: str) -> str:
    if not code.lstrip("-").isdigit():
        return "ours"
    return str(classify(code=code, http_status=None))


def _failures(*, organization_id: int | None, since: datetime) -> list[Failure]:
    """Failures by code in the last FAILURE_HOURS hours (the current one included), most frequent first."""
    queryset = FailureHour.objects.filter(hour__gte=since)
    if organization_id is not None:
        queryset = queryset.filter(channel__organization_id=organization_id)
    totals: dict[str, int] = defaultdict(int)
    for code, n in queryset.values("code").annotate(n=Sum("failed")).values_list("code", "n"):
        totals[code] += n
    return [
        Failure(code=code or "-", count=n, error_class=_error_class(code))
        for code, n in sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    ]


def _cost(*, organization_id: int | None, since: datetime) -> list[Cost]:
    """This month's broadcasts' kept estimates and bills, per currency (index broadcast_org_created)."""
    queryset = Broadcast.objects.filter(created_at__gte=since)
    if organization_id is not None:
        queryset = queryset.filter(organization_id=organization_id)
    rows = (
        queryset.exclude(cost_currency="")
        .values("cost_currency")
        .annotate(estimated=Sum("cost_estimated"), billed=Sum("billed"), n=Count("id"))
        .order_by("cost_currency")
    )
    return [
        Cost(
            currency=row["cost_currency"],
            estimated=row["estimated"] or Decimal(0),
            billed=row["billed"] or Decimal(0),
            broadcasts=row["n"],
        )
        for row in rows
    ]
