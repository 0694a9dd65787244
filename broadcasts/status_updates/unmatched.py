"""Statuses of wamids no send carries yet (the engine records wamids a fraction of a second after Meta's answer,
and a fast webhook can arrive first): kept as ``UnmatchedStatus`` and re-applied by beat for ``UNMATCHED_KEEP``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from broadcasts.models import UnmatchedStatus
from broadcasts.status_updates.apply import sends_apply_statuses
from broadcasts.status_updates.folding import META_STATUSES
from whatsapp.inbound.statuses import StatusUpdate, status_update_parse

# A status for a wamid no send carries yet is retried this long (the delivery engine records wamids
# within ~0.5 s; minutes cover a slow database too), then dropped as belonging to no broadcast of ours.
UNMATCHED_KEEP = timedelta(minutes=10)
# Statuses re-applied per sweep: one SELECT and a few UPDATEs whatever the number.
UNMATCHED_BATCH = 5000
# The change's phone_number_id, stored beside Meta's own keys of a kept status, so the retry checks the channel too.
KEPT_PHONE_NUMBER_ID = "_phone_number_id"


def _kept_phone_number_id(entry: Any) -> str:
    value = entry.get(KEPT_PHONE_NUMBER_ID) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else ""


def unmatched_statuses_keep(*, statuses: Sequence[StatusUpdate], wamids: set[str]) -> int:
    """Stores the statuses of wamids no send carries yet (Meta's own entries), for the beat task to re-apply."""
    if not wamids:
        return 0
    rows = [
        # The change's phone_number_id rides along (not Meta's own key), so the retry checks the channel too.
        UnmatchedStatus(message_id=update.wamid, entry={**update.raw, KEPT_PHONE_NUMBER_ID: update.phone_number_id})
        for update in statuses
        if update.wamid in wamids and update.status in META_STATUSES
    ]
    UnmatchedStatus.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def unmatched_statuses_retry(*, now: datetime | None = None) -> int:
    """Beat: re-applies kept statuses whose send now has its wamid; drops those kept too long.
    Returns the number of statuses that found their send."""
    now = now or timezone.now()
    UnmatchedStatus.objects.filter(received_at__lt=now - UNMATCHED_KEEP).delete()
    rows = list(UnmatchedStatus.objects.order_by("id").values_list("id", "message_id", "entry")[:UNMATCHED_BATCH])
    if not rows:
        return 0
    updates = [
        update
        for _, _, entry in rows
        if (update := status_update_parse(entry, phone_number_id=_kept_phone_number_id(entry))) is not None
    ]
    with transaction.atomic():
        moved = sends_apply_statuses(statuses=updates)
        still_unmatched = set(moved.unmatched)
        matched = [row_id for row_id, wamid, _ in rows if wamid not in still_unmatched]
        UnmatchedStatus.objects.filter(id__in=matched).delete()
    return len(matched)
