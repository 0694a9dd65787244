"""Customer-service windows: a customer who wrote to a channel less than CUSTOMER_SERVICE_WINDOW_SECONDS (24 h) ago
has an open window on it. Sends inside it are not counted by the messaging limit (rules/messaging_limit.py) and are
priced at the in-window price. Rows (``CustomerWindow``), upserted from Meta's incoming ``messages`` webhooks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from broadcasts.models import CustomerWindow


def customer_windows_open(*, channel_id: str, numbers: list[str], now: datetime) -> set[str]:
    """The numbers among ``numbers`` whose customer wrote to the channel within CUSTOMER_SERVICE_WINDOW_SECONDS
    (one indexed query; a channel nobody ever wrote to costs one probe of the index instead)."""
    if not numbers:
        return set()
    if len(numbers) > 1 and not CustomerWindow.objects.filter(channel_id=channel_id).exists():
        return set()
    since = now - timedelta(seconds=settings.CUSTOMER_SERVICE_WINDOW_SECONDS)
    return set(
        CustomerWindow.objects.filter(
            channel_id=channel_id, number__in=set(numbers), last_inbound_at__gt=since
        ).values_list("number", flat=True)
    )


def customer_windows_record(*, channel_id: str, inbound: Iterable[tuple[str, datetime]]) -> int:
    """Upsert (number, wrote at) of incoming messages to the channel; a time older than the stored one changes
    nothing (Meta may deliver webhooks out of order). Returns the rows written."""
    latest: dict[str, datetime] = {}
    for number, at in inbound:
        if number and (number not in latest or at > latest[number]):
            latest[number] = at
    if not latest:
        return 0
    values = ", ".join(["(%s, %s, %s)"] * len(latest))
    params: list = []
    for number, at in latest.items():
        params += [channel_id, number, at]
    newer = "EXCLUDED.last_inbound_at > broadcasts_customerwindow.last_inbound_at"
    sql = (
        f"INSERT INTO broadcasts_customerwindow (channel_id, number, last_inbound_at) VALUES {values} "
        f"ON CONFLICT (channel_id, number) DO UPDATE SET last_inbound_at = EXCLUDED.last_inbound_at WHERE {newer}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return len(latest)
