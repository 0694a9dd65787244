"""Meta's webhooks, inbound (CONTRACT section 8): one verified envelope, parsed by ``whatsapp.inbound``,
each part routed to the app that owns its data, in one transaction.

- ``statuses[]`` (delivery receipts) move sends forward (``broadcasts.status_updates``); the statuses of
  wamids no send carries yet are kept for the beat task to re-apply.
- ``message_template_status_update`` changes a template's status (``templates_registry.services``); PAUSED or
  DISABLED also pauses the template's running broadcasts (``broadcasts.template_pauses``), as a ``failed``
  status with 132015/132016 pauses its send's broadcast;
- ``template_category_update`` (final notices only) and ``message_template_quality_update`` store the
  template's category and quality.
- Everything else Meta sends (incoming messages, account, user-preference and call updates, ...) is
  acknowledged and ignored.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, transaction

from broadcasts import template_pauses
from broadcasts.status_updates import sends_apply_statuses, unmatched_statuses_keep
from templates_registry.services import template_category_apply, template_quality_apply, template_status_update_apply
from whatsapp.inbound import (
    OtherChange,
    StatusUpdate,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    envelope_parse,
)

logger = logging.getLogger(__name__)

DEADLOCK_SQLSTATE = "40P01"
DEADLOCK_ATTEMPTS = 3


@dataclass
class WebhookResult:
    """What one envelope did, for logs and tests."""

    statuses_received: int = 0
    sends_moved: dict[str, int] = field(default_factory=dict)
    statuses_unmatched: int = 0
    templates_updated: int = 0
    ignored_changes: int = 0
    broadcasts_paused: list[str] = field(default_factory=list)


def webhook_payload_process(*, payload: dict[str, Any]) -> WebhookResult:
    """Applies a verified webhook envelope, in one transaction (Meta retries on any non-2xx)."""
    result = WebhookResult()
    items = envelope_parse(payload)
    statuses = [item for item in items if isinstance(item, StatusUpdate)]
    template_updates = [
        item
        for item in items
        if isinstance(item, (TemplateStatusUpdate, TemplateCategoryUpdate, TemplateQualityUpdate))
    ]
    result.ignored_changes = sum(1 for item in items if isinstance(item, OtherChange))
    result.statuses_received = len(statuses)
    if not statuses and not template_updates:
        return result
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                result.broadcasts_paused = []
                if statuses:
                    moved = sends_apply_statuses(statuses=statuses)
                    result.sends_moved = {status: len(ids) for status, ids in moved.items()}
                    result.statuses_unmatched = unmatched_statuses_keep(statuses=statuses, wamids=set(moved.unmatched))
                    result.broadcasts_paused += template_pauses.broadcasts_pause_for_failed_statuses(statuses=statuses)
                result.templates_updated, paused = _template_updates_apply(template_updates)
                result.broadcasts_paused += paused
            return result
        except OperationalError as exc:
            # Meta posts several bodies at once; two touching the same sends may deadlock. The loser
            # rolled back entirely (its on_commit work too), so running it again is safe.
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_SQLSTATE or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning("whatsapp webhook deadlocked (attempt %s), retrying", attempt)
    return result


def _template_updates_apply(
    updates: list[TemplateStatusUpdate | TemplateCategoryUpdate | TemplateQualityUpdate],
) -> tuple[int, list[str]]:
    """Template status, category and quality updates, in Meta's order; returns (templates changed, broadcasts
    paused). A status change to PAUSED or DISABLED pauses the template's running broadcasts in this transaction."""
    changed = 0
    paused: list[str] = []
    for update in updates:
        ref = {
            "waba_id": update.waba_id,
            "meta_id": update.template_id,
            "name": update.name,
            "language": update.language,
        }
        if isinstance(update, TemplateStatusUpdate):
            changes = template_status_update_apply(event=update.event, reason=update.reason, time=update.time, **ref)
            changed += len(changes)
            for change in changes:
                paused += template_pauses.broadcasts_pause_for_template(
                    template_id=change.template_id, status=change.new_status, reason=change.reason
                )
        elif isinstance(update, TemplateCategoryUpdate):
            changed += template_category_apply(
                new_category=update.new_category, previous_category=update.previous_category, **ref
            )
        else:
            changed += template_quality_apply(quality=update.new_quality, **ref)
    return changed, paused
