"""Meta's webhooks, inbound (docs/rules.md): one verified envelope, parsed by ``whatsapp.inbound``,
each part routed to the app that owns its data, in one transaction.

- ``statuses[]`` (delivery receipts) move sends forward (``broadcasts.status_updates``); the statuses of
  wamids no send carries yet are kept for the beat task to re-apply.
- ``message_template_status_update`` changes a template's status (``templates_registry.services``); PAUSED or
  DISABLED also pauses the template's running broadcasts (``broadcasts.rules.template_pauses``), as a ``failed``
  status with 132015/132016 pauses its send's broadcast;
- ``template_category_update`` (final notices only) and ``message_template_quality_update`` store the
  template's category and quality.
- incoming ``messages[]``, ``business_capability_update`` and ``phone_number_quality_update`` feed the messaging
  limit (``broadcasts.rules.messaging_limit``: customer-service windows, the organization's limit, number health).
- ``user_preferences`` (a user stopped or resumed marketing messages) changes the organization's suppression
  list (``broadcasts.rules.preferences``).
- Wherever Meta names a user (wa_id, BSUID or both), the pair is recorded and the user resolved through
  ``broadcasts.rules.identities`` first.
- Everything else Meta sends (account and call updates, ...) is acknowledged and ignored.

The routing is one table at the end of this module (``LIMITS_STEPS``, ``STEPS``): a row per kind of change, its
field, its parser (``whatsapp.inbound``) and its applier; a new kind is one row.
"""

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import OperationalError, transaction
from django.utils import timezone

from broadcasts.rules import customer_windows, identities, limit_tiers, template_pauses
from broadcasts.rules.preferences import user_preferences_apply
from broadcasts.status_updates.apply import sends_apply_statuses
from broadcasts.status_updates.unmatched import unmatched_statuses_keep
from templates_registry.models import Channel
from templates_registry.services import template_category_apply, template_quality_apply, template_status_update_apply
from whatsapp.inbound.changes import Change, changes_read
from whatsapp.inbound.limits import (
    BUSINESS_CAPABILITY_FIELD,
    PHONE_QUALITY_FIELD,
    BusinessCapabilityUpdate,
    PhoneNumberQualityUpdate,
    business_capability_parse,
    phone_quality_parse,
)
from whatsapp.inbound.statuses import STATUSES_FIELD, StatusUpdate, statuses_parse
from whatsapp.inbound.templates import (
    TEMPLATE_CATEGORY_FIELD,
    TEMPLATE_QUALITY_FIELD,
    TEMPLATE_STATUS_FIELD,
    TemplateCategoryUpdate,
    TemplateQualityUpdate,
    TemplateStatusUpdate,
    template_category_update_parse,
    template_quality_update_parse,
    template_status_update_parse,
)
from whatsapp.inbound.users import (
    USER_PREFERENCES_FIELD,
    InboundMessage,
    UserPreferenceUpdate,
    inbound_messages_parse,
    user_preferences_parse,
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


Applier = Callable[[list[Any], WebhookResult], None]


@dataclass(frozen=True)
class Route:
    """One kind of Meta change: the field it comes in, its parser (``whatsapp.inbound``: a change -> its items)
    and its applier (a run of its items, in Meta's order -> the owning app; counts into the result)."""

    field: str
    parse: Callable[[Change], list[Any]]
    apply: Applier


def webhook_payload_process(*, payload: dict[str, Any]) -> WebhookResult:
    """Applies a verified webhook envelope: the messaging limit's part (LIMITS_STEPS) in a transaction of its own,
    then the rest (STEPS) in one transaction (Meta retries on any non-2xx), retried on a deadlock."""
    result = WebhookResult()
    changes = list(changes_read(payload))
    routed = {route.field for step in (*LIMITS_STEPS, *STEPS) for route in step}
    result.ignored_changes = sum(1 for c in changes if not isinstance(c.field, str) or c.field not in routed)
    limit_runs = _runs(changes, LIMITS_STEPS)
    if limit_runs:
        with transaction.atomic():
            for apply, items in limit_runs:
                apply(items, result)
    runs = _runs(changes, STEPS)
    if not runs:
        return result
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        attempt_result = copy.deepcopy(result)  # a retried attempt counts afresh
        try:
            with transaction.atomic():
                for apply, items in runs:
                    apply(items, attempt_result)
            return attempt_result
        except OperationalError as exc:
            # Meta posts several bodies at once; two touching the same sends may deadlock. The loser
            # rolled back entirely (its on_commit work too), so running it again is safe.
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_SQLSTATE or attempt == DEADLOCK_ATTEMPTS:
                raise
            logger.warning("whatsapp webhook deadlocked (attempt %s), retrying", attempt)
    return result


def _runs(changes: list[Change], steps: Sequence[Sequence[Route]]) -> list[tuple[Applier, list[Any]]]:
    """What to apply, in order: step by step; within a step, the items its routes read in Meta's order, the
    consecutive items of one route in one run (one call of its applier)."""
    runs: list[tuple[Applier, list[Any]]] = []
    for step in steps:
        by_field = {route.field: route for route in step}
        first = len(runs)
        for change in changes:
            route = by_field.get(change.field) if isinstance(change.field, str) else None
            items = route.parse(change) if route is not None else []
            if not items:
                continue
            if len(runs) > first and runs[-1][0] is route.apply:
                runs[-1][1].extend(items)
            else:
                runs.append((route.apply, list(items)))
    return runs


# --- the appliers ------------------------------------------------------------------------------------------------


def _statuses_apply(statuses: list[StatusUpdate], result: WebhookResult) -> None:
    """Delivery receipts move sends; those of wamids no send carries yet are kept for the beat task; a failed
    status with 132015/132016 pauses its send's broadcast."""
    result.statuses_received = len(statuses)
    moved = sends_apply_statuses(statuses=statuses)
    result.sends_moved = {status: len(ids) for status, ids in moved.items()}
    result.statuses_unmatched = unmatched_statuses_keep(statuses=statuses, wamids=set(moved.unmatched))
    result.broadcasts_paused += template_pauses.broadcasts_pause_for_failed_statuses(statuses=statuses)


def _template_ref(update: TemplateStatusUpdate | TemplateCategoryUpdate | TemplateQualityUpdate) -> dict[str, Any]:
    return {"waba_id": update.waba_id, "meta_id": update.template_id, "name": update.name, "language": update.language}


def _template_statuses_apply(updates: list[TemplateStatusUpdate], result: WebhookResult) -> None:
    """A status change to PAUSED or DISABLED pauses the template's running broadcasts in this transaction."""
    for update in updates:
        changes = template_status_update_apply(
            event=update.event, reason=update.reason, time=update.time, **_template_ref(update)
        )
        result.templates_updated += len(changes)
        for change in changes:
            result.broadcasts_paused += template_pauses.broadcasts_pause_for_template(
                template_id=change.template_id, status=change.new_status, reason=change.reason
            )


def _template_categories_apply(updates: list[TemplateCategoryUpdate], result: WebhookResult) -> None:
    for update in updates:
        result.templates_updated += template_category_apply(
            new_category=update.new_category, previous_category=update.previous_category, **_template_ref(update)
        )


def _template_qualities_apply(updates: list[TemplateQualityUpdate], result: WebhookResult) -> None:
    for update in updates:
        result.templates_updated += template_quality_apply(quality=update.new_quality, **_template_ref(update))


def _user_preferences_apply(updates: list[UserPreferenceUpdate], result: WebhookResult) -> None:
    result.suppressions_changed += user_preferences_apply(updates=updates)


def _customer_windows_apply(messages: list[InboundMessage], result: WebhookResult) -> None:
    """Incoming messages open customer-service windows (the messaging limit), per channel of ours, for every
    address the writer stands for (rules/identities.addresses_of: the BSUID and the numbers tied to it, the
    numbers Meta's wa_id names, through the sends' stored wa_ids before any E.164 reading). The (wa_id, BSUID)
    pairs the messages carry are recorded first, in one statement."""
    now = timezone.now()
    channels = {
        phone_number_id: (channel_id, org_id)
        for phone_number_id, channel_id, org_id in Channel.objects.filter(
            phone_number_id__in={m.phone_number_id for m in messages}
        ).values_list("phone_number_id", "id", "organization_id")
    }
    ours = [(message, channels[message.phone_number_id]) for message in messages if message.phone_number_id in channels]
    identities.identities_record(
        pairs=[
            identities.Pair(user_id=m.user_id, wa_id=m.wa_id, organization_id=org_id)
            for m, (_, org_id) in ours
            if m.wa_id and m.user_id
        ]
    )
    by_channel: dict[str, list] = {}
    addresses_cache: dict[tuple[int, str, str], list[str]] = {}
    for message, (channel_id, org_id) in ours:
        at = min(message.timestamp or now, now)  # a clock ahead of ours must not stretch the window
        key = (org_id, message.wa_id, message.user_id)
        if key not in addresses_cache:
            addresses_cache[key] = identities.addresses_of(
                organization_id=org_id, wa_id=message.wa_id, user_id=message.user_id
            )
        by_channel.setdefault(channel_id, []).extend((address, at) for address in addresses_cache[key])
    for channel_id, inbound in by_channel.items():
        result.customer_windows += customer_windows.customer_windows_record(channel_id=channel_id, inbound=inbound)


def _business_capabilities_apply(updates: list[BusinessCapabilityUpdate], result: WebhookResult) -> None:
    """The organization's messaging limit Meta names (a change naming none changes nothing)."""
    for update in updates:
        if update.messaging_limit is None:
            continue
        try:
            limit = limit_tiers.limit_parse(update.messaging_limit, tiers_only=False)
        except limit_tiers.InvalidLimit:
            logger.warning("business_capability_update with an unreadable limit %r", update.messaging_limit)
            continue
        result.limits_changed += limit_tiers.waba_limit_set(waba_id=update.waba_id, limit=limit)


def _number_qualities_apply(updates: list[PhoneNumberQualityUpdate], result: WebhookResult) -> None:
    """A number's quality event and the messaging-limit tier it names."""
    for update in updates:
        _, orgs = limit_tiers.channel_quality_apply(
            waba_id=update.waba_id,
            phone_number=update.display_phone_number,
            event=update.event,
            current_limit=update.current_limit,
            messaging_tier=update.messaging_tier,
            at=update.timestamp,
        )
        result.limits_changed += orgs


# --- the routes: a new kind of change is one row ----------------------------------------------------------------
# Steps apply in order; the routes of one step apply their items in Meta's order (a run of one route's
# consecutive items per call), so updates that touch the same rows keep Meta's order.

# The messaging limit's part, in a transaction of its own (each part is idempotent), first.
LIMITS_STEPS: tuple[tuple[Route, ...], ...] = (
    (Route(STATUSES_FIELD, inbound_messages_parse, _customer_windows_apply),),
    (
        Route(BUSINESS_CAPABILITY_FIELD, business_capability_parse, _business_capabilities_apply),
        Route(PHONE_QUALITY_FIELD, phone_quality_parse, _number_qualities_apply),
    ),
)
# The rest, in one transaction, retried on a deadlock.
STEPS: tuple[tuple[Route, ...], ...] = (
    (Route(STATUSES_FIELD, statuses_parse, _statuses_apply),),
    (
        Route(TEMPLATE_STATUS_FIELD, template_status_update_parse, _template_statuses_apply),
        Route(TEMPLATE_CATEGORY_FIELD, template_category_update_parse, _template_categories_apply),
        Route(TEMPLATE_QUALITY_FIELD, template_quality_update_parse, _template_qualities_apply),
    ),
    (Route(USER_PREFERENCES_FIELD, user_preferences_parse, _user_preferences_apply),),
)
