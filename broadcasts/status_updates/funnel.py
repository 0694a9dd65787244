"""What one body of Meta's statuses moved, counted for the metrics (msg_meta_statuses_total, and the failures in
msg_sends_total) and logged as one aggregated line: per body, never per send."""

from __future__ import annotations

import logging
from collections import Counter

from django.db import transaction

from broadcasts.models import SendStatus
from broadcasts.status_updates.folding import Fold
from core.metrics import statuses_add

logger = logging.getLogger(__name__)

_FUNNEL = {SendStatus.DELIVERED: "delivered", SendStatus.READ: "read", SendStatus.FAILED: "failed"}


def moves_count(
    *,
    moved: dict[str, list[int]],
    jumped: list[int],
    failed: list[tuple[int, Fold]],
    channel_of: dict[int, str],
) -> None:
    """Count the sends a body moved, by channel, once the transaction commits (a body retried after a deadlock
    counts once). ``jumped``: sends that went from SENT straight to READ, counted as delivered too (a read message
    was delivered). ``failed``: the failed moves' folds, for their error codes."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for target, ids in moved.items():
        label = _FUNNEL.get(target)
        if label is None or label == "failed":
            continue
        for send_id in ids:
            counts[(channel_of.get(send_id, ""), label, "")] += 1
    for send_id in jumped:
        counts[(channel_of.get(send_id, ""), "delivered", "")] += 1
    failed_ids = set(moved.get(SendStatus.FAILED, ()))
    codes: Counter[str] = Counter()
    for send_id, fold in failed:
        if send_id in failed_ids:
            counts[(channel_of.get(send_id, ""), "failed", fold.error_code)] += 1
            codes[fold.error_code] += 1
    if not counts:
        return

    def record() -> None:
        statuses_add(counts=counts)
        if codes:
            # Per-send failures are no page: one INFO line per body, by code (an account-level problem pauses
            # broadcasts, which logs its own WARNING).
            logger.info(
                "whatsapp statuses: %d sends failed (%s)",
                sum(codes.values()),
                ", ".join(f"{code}: {n}" for code, n in codes.most_common()),
            )

    transaction.on_commit(record)
