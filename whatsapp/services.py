"""Meta's webhooks, inbound (CONTRACT section 8): the envelope walked once, each change routed.

Only two kinds of change do anything: ``messages`` changes carrying ``statuses[]`` (delivery
receipts) and ``message_template_status_update``. Everything else Meta sends (incoming messages,
account, user-preference and call updates, ...) is acknowledged and ignored.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError, transaction
from django.utils import timezone

from broadcasts.status_updates import META_STATUSES, sends_apply_statuses
from events.models import UnmatchedStatus
from templates_registry.models import Template

logger = logging.getLogger(__name__)

DEADLOCK_SQLSTATE = "40P01"
DEADLOCK_ATTEMPTS = 3

# A status for a wamid no send carries yet is retried this long (the delivery engine records wamids
# within ~0.5 s; minutes cover a slow database too), then dropped as belonging to no broadcast of ours.
UNMATCHED_KEEP = timedelta(minutes=10)
# Statuses re-applied per sweep: one SELECT and a few UPDATEs whatever the number.
UNMATCHED_BATCH = 5000

# Meta's template events -> the registry's status. FLAGGED and LOCKED leave the template usable
# (Meta still sends it), so they change nothing; REINSTATED makes it usable again.
TEMPLATE_EVENT_STATUSES: dict[str, str] = {
    "APPROVED": Template.Status.APPROVED,
    "REINSTATED": Template.Status.APPROVED,
    "REJECTED": Template.Status.REJECTED,
    "PAUSED": Template.Status.PAUSED,
    "DISABLED": Template.Status.DISABLED,
    "PENDING": Template.Status.PENDING,
    "IN_APPEAL": Template.Status.IN_APPEAL,
    "PENDING_DELETION": Template.Status.PENDING_DELETION,
    "DELETED": Template.Status.DELETED,
    "LIMIT_EXCEEDED": Template.Status.LIMIT_EXCEEDED,
    "ARCHIVED": Template.Status.ARCHIVED,
}


@dataclass
class WebhookResult:
    """What one envelope did, for logs and tests."""

    statuses_received: int = 0
    sends_moved: dict[str, int] = field(default_factory=dict)
    statuses_unmatched: int = 0
    templates_updated: int = 0
    ignored_changes: int = 0


def _changes(payload: dict[str, Any]):
    """Yields (entry id, field, value) for every well-formed change; malformed parts are skipped."""
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        for change in entry["changes"]:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield str(entry.get("id") or ""), change.get("field"), change["value"]


def template_status_apply(*, waba_id: str, value: dict[str, Any]) -> int:
    """Applies one ``message_template_status_update``; returns the number of templates changed.

    The template is found by Meta's id when we know it, else by (WABA, name, language).
    """
    status = TEMPLATE_EVENT_STATUSES.get(str(value.get("event") or "").upper())
    if status is None:
        return 0
    meta_id = str(value.get("message_template_id") or "")
    if meta_id:
        changed = Template.objects.filter(meta_id=meta_id).exclude(status=status).update(status=status)
        if changed or Template.objects.filter(meta_id=meta_id).exists():
            return changed
    name = value.get("message_template_name")
    language = value.get("message_template_language")
    if not (waba_id and isinstance(name, str) and isinstance(language, str)):
        return 0
    return (
        Template.objects.filter(waba_id=waba_id, name=name, language=language)
        .exclude(status=status)
        .update(status=status)
    )


def webhook_payload_process(*, payload: dict[str, Any]) -> WebhookResult:
    """Applies a verified webhook envelope, in one transaction (Meta retries on any non-2xx)."""
    result = WebhookResult()
    statuses: list[Any] = []
    template_updates: list[tuple[str, dict[str, Any]]] = []
    for waba_id, field_name, value in _changes(payload):
        if field_name == "messages" and isinstance(value.get("statuses"), list):
            statuses.extend(value["statuses"])
        elif field_name == "message_template_status_update":
            template_updates.append((waba_id, value))
        else:
            result.ignored_changes += 1
    result.statuses_received = len(statuses)
    if not statuses and not template_updates:
        return result
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                if statuses:
                    moved = sends_apply_statuses(statuses=statuses)
                    result.sends_moved = {status: len(ids) for status, ids in moved.items()}
                    result.statuses_unmatched = _unmatched_keep(statuses=statuses, wamids=set(moved.unmatched))
                result.templates_updated = sum(
                    template_status_apply(waba_id=waba_id, value=value) for waba_id, value in template_updates
                )
            return result
        except OperationalError as exc:
            # Meta posts several bodies at once; two touching the same sends may deadlock. The loser
            # rolled back entirely (its on_commit work too), so running it again is safe.
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_SQLSTATE or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning("whatsapp webhook deadlocked (attempt %s), retrying", attempt)
    return result


def _unmatched_keep(*, statuses: list[Any], wamids: set[str]) -> int:
    """Stores the statuses of wamids no send carries yet, for the sweeper to re-apply."""
    if not wamids:
        return 0
    rows = [
        UnmatchedStatus(message_id=entry["id"], entry=entry)
        for entry in statuses
        if isinstance(entry, dict)
        and entry.get("id") in wamids
        and str(entry.get("status", "")).lower() in META_STATUSES
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
    with transaction.atomic():
        moved = sends_apply_statuses(statuses=[entry for _, _, entry in rows])
        still_unmatched = set(moved.unmatched)
        matched = [row_id for row_id, wamid, _ in rows if wamid not in still_unmatched]
        UnmatchedStatus.objects.filter(id__in=matched).delete()
    return len(matched)
