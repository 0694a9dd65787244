"""A whole envelope read with the per-kind parsers, by field: ``envelope_parse`` (statuses, template updates, user
preferences; every other change an ``OtherChange``) and ``limits_parse`` (incoming messages, capability and number
quality updates), each in Meta's order. The router (``broadcasts/status_updates/inbound.py``) routes the same
parsers change by change."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class OtherChange:
    """A change nothing of ours acts on (acknowledged and ignored)."""

    waba_id: str
    field: str


InboundItem = (
    StatusUpdate
    | TemplateStatusUpdate
    | TemplateCategoryUpdate
    | TemplateQualityUpdate
    | UserPreferenceUpdate
    | OtherChange
)
LimitsItem = InboundMessage | BusinessCapabilityUpdate | PhoneNumberQualityUpdate

# What ``envelope_parse`` and ``limits_parse`` read, by field (the router,
# ``broadcasts/status_updates/inbound.py``, routes the same parsers).
ENVELOPE_PARSERS: dict[str, Callable[[Change], list[Any]]] = {
    STATUSES_FIELD: statuses_parse,
    TEMPLATE_STATUS_FIELD: template_status_update_parse,
    TEMPLATE_CATEGORY_FIELD: template_category_update_parse,
    TEMPLATE_QUALITY_FIELD: template_quality_update_parse,
    USER_PREFERENCES_FIELD: user_preferences_parse,
}
# Parsed apart from ``envelope_parse`` (which reports these changes as OtherChange): the incoming messages (the
# customer-service window), business_capability_update and phone_number_quality_update.
LIMITS_PARSERS: dict[str, Callable[[Change], list[Any]]] = {
    STATUSES_FIELD: inbound_messages_parse,
    BUSINESS_CAPABILITY_FIELD: business_capability_parse,
    PHONE_QUALITY_FIELD: phone_quality_parse,
}


def _parsed(
    payload: Mapping[str, Any], parsers: Mapping[str, Callable[[Change], list[Any]]]
) -> Iterator[tuple[Change, list[Any] | None]]:
    """Each change with what the parser of its field read from it (None when no parser reads that field)."""
    for change in changes_read(payload):
        parser = parsers.get(change.field) if isinstance(change.field, str) else None
        yield change, (parser(change) if parser is not None else None)


def envelope_parse(payload: Mapping[str, Any]) -> list[InboundItem]:
    """Every status update, template status update and other change of the envelope, in Meta's order."""
    items: list[InboundItem] = []
    for change, parsed in _parsed(payload, ENVELOPE_PARSERS):
        # A ``messages`` change without ``statuses[]`` (incoming messages: ``limits_parse``) is an other change.
        if parsed is None or (change.field == STATUSES_FIELD and not isinstance(change.value.get("statuses"), list)):
            items.append(OtherChange(waba_id=change.waba_id, field=str(change.field)))
        else:
            items.extend(parsed)
    return items


def limits_parse(payload: Mapping[str, Any]) -> list[LimitsItem]:
    """Every incoming message, capability update and number quality update of the envelope, in Meta's order.
    Malformed parts are skipped (a message without ``from``, a value that is not an object)."""
    return [item for _, parsed in _parsed(payload, LIMITS_PARSERS) for item in parsed or ()]
