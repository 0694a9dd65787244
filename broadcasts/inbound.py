"""Meta's webhooks, inbound (CONTRACT section 8): one verified envelope, parsed by ``whatsapp.inbound``,
each part routed to the app that owns its data, in one transaction.

- ``statuses[]`` (delivery receipts) move sends forward (``broadcasts.status_updates``); the statuses of
  wamids no send carries yet are kept for the beat task to re-apply.
- ``message_template_status_update`` changes a template's status (``templates_registry.services``); PAUSED or
  DISABLED also pauses the template's running broadcasts (``broadcasts.template_pauses``), as a ``failed``
  status with 132015/132016 pauses its send's broadcast;
- ``template_category_update`` (final notices only) and ``message_template_quality_update`` store the
  template's category and quality.
- incoming ``messages[]``, ``business_capability_update`` and ``phone_number_quality_update`` feed the messaging
  limit (``broadcasts.messaging_limit``: customer-service windows, the organization's limit, number health).
- ``user_preferences`` (a user stopped or resumed marketing messages) changes the organization's suppression
  list (``broadcasts.suppressions``).
- Everything else Meta sends (account and call updates, ...) is acknowledged and ignored.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, transaction
from django.utils import timezone

from broadcasts import messaging_limit, template_pauses
from broadcasts.status_updates.apply import sends_apply_statuses
from broadcasts.status_updates.unmatched import unmatched_statuses_keep
from broadcasts.suppressions import user_preferences_apply
from templates_registry.models import Channel
from templates_registry.services import template_category_apply, template_quality_apply, template_status_update_apply
from whatsapp.inbound import (
    BusinessCapabilityUpdate,
    InboundMessage,
    OtherChange,
    PhoneNumberQualityUpdate,
    StatusUpdate,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    UserPreferenceUpdate,
    envelope_parse,
    limits_parse,
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
    customer_windows: int = 0
    limits_changed: int = 0
    broadcasts_paused: list[str] = field(default_factory=list)
    suppressions_changed: int = 0


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
    _limits_apply(payload=payload, result=result)
    preferences = [item for item in items if isinstance(item, UserPreferenceUpdate)]
    if not statuses and not template_updates and not preferences:
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


def _limits_apply(*, payload: dict[str, Any], result: WebhookResult) -> None:
    """The messaging limit's part of an envelope (its own transaction: each part is idempotent): customer-service
    windows from incoming messages, the organization's limit from capability and number quality updates."""
    items = limits_parse(payload)
    if not items:
        return
    now = timezone.now()
    with transaction.atomic():
        messages = [item for item in items if isinstance(item, InboundMessage)]
        if messages:
            channel_ids = dict(
                Channel.objects.filter(phone_number_id__in={m.phone_number_id for m in messages}).values_list(
                    "phone_number_id", "id"
                )
            )
            by_channel: dict[str, list] = {}
            for message in messages:
                channel_id = channel_ids.get(message.phone_number_id)
                if channel_id is None:
                    continue  # not one of our numbers
                at = min(message.timestamp or now, now)  # a clock ahead of ours must not stretch the window
                by_channel.setdefault(channel_id, []).extend(
                    (number, at) for number in messaging_limit.wa_id_numbers(message.wa_id)
                )
            for channel_id, inbound in by_channel.items():
                result.customer_windows += messaging_limit.customer_windows_record(
                    channel_id=channel_id, inbound=inbound
                )
        for item in items:
            if isinstance(item, BusinessCapabilityUpdate) and item.messaging_limit is not None:
                try:
                    limit = messaging_limit.limit_parse(item.messaging_limit, tiers_only=False)
                except messaging_limit.InvalidLimit:
                    logger.warning("business_capability_update with an unreadable limit %r", item.messaging_limit)
                    continue
                result.limits_changed += messaging_limit.waba_limit_set(waba_id=item.waba_id, limit=limit)
            elif isinstance(item, PhoneNumberQualityUpdate):
                _, orgs = messaging_limit.channel_quality_apply(
                    waba_id=item.waba_id,
                    phone_number=item.display_phone_number,
                    event=item.event,
                    current_limit=item.current_limit,
                    messaging_tier=item.messaging_tier,
                    at=item.timestamp,
                )
                result.limits_changed += orgs


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
