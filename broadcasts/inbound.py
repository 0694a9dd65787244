"""Meta's webhooks, inbound (CONTRACT section 8): one verified envelope, parsed by ``whatsapp.inbound``,
each part routed to the app that owns its data, in one transaction.

- ``statuses[]`` (delivery receipts) move sends forward (``broadcasts.status_updates``); the statuses of
  wamids no send carries yet are kept for the beat task to re-apply.
- ``message_template_status_update`` changes a template's status (``templates_registry.services``).
- ``user_preferences`` (a user stopped or resumed marketing messages) changes the organization's suppression
  list (``broadcasts.suppressions``).
- Everything else Meta sends (incoming messages, account and call updates, ...) is acknowledged and ignored.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, transaction

from broadcasts.status_updates import sends_apply_statuses, unmatched_statuses_keep
from broadcasts.suppressions import user_preferences_apply
from templates_registry.services import template_status_apply
from whatsapp.inbound import OtherChange, StatusUpdate, TemplateStatusUpdate, UserPreferenceUpdate, envelope_parse

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
    suppressions_changed: int = 0


def webhook_payload_process(*, payload: dict[str, Any]) -> WebhookResult:
    """Applies a verified webhook envelope, in one transaction (Meta retries on any non-2xx)."""
    result = WebhookResult()
    items = envelope_parse(payload)
    statuses = [item for item in items if isinstance(item, StatusUpdate)]
    template_updates = [item for item in items if isinstance(item, TemplateStatusUpdate)]
    preferences = [item for item in items if isinstance(item, UserPreferenceUpdate)]
    result.ignored_changes = sum(1 for item in items if isinstance(item, OtherChange))
    result.statuses_received = len(statuses)
    if not statuses and not template_updates and not preferences:
        return result
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                if statuses:
                    moved = sends_apply_statuses(statuses=statuses)
                    result.sends_moved = {status: len(ids) for status, ids in moved.items()}
                    result.statuses_unmatched = unmatched_statuses_keep(statuses=statuses, wamids=set(moved.unmatched))
                result.templates_updated = sum(
                    template_status_apply(
                        waba_id=update.waba_id,
                        event=update.event,
                        meta_id=update.template_id,
                        name=update.name,
                        language=update.language,
                    )
                    for update in template_updates
                )
                if preferences:
                    result.suppressions_changed = user_preferences_apply(updates=preferences)
            return result
        except OperationalError as exc:
            # Meta posts several bodies at once; two touching the same sends may deadlock. The loser
            # rolled back entirely (its on_commit work too), so running it again is safe.
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_SQLSTATE or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning("whatsapp webhook deadlocked (attempt %s), retrying", attempt)
    return result
