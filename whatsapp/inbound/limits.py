"""The messaging limit and number health (docs/rules.md): ``business_capability_update`` (the account's messaging
limit) and ``phone_number_quality_update`` (a number's quality or throughput event and its messaging-limit tier),
one update per change, stamped with the entry's ``time``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from whatsapp.inbound.changes import Change

BUSINESS_CAPABILITY_FIELD = "business_capability_update"
PHONE_QUALITY_FIELD = "phone_number_quality_update"


@dataclass(frozen=True)
class BusinessCapabilityUpdate:
    """``business_capability_update``: the account's messaging limit (None when the change names none; -1 is
    Meta's "unlimited"), from ``max_daily_conversations_per_business`` or the older
    ``max_daily_conversation_per_phone``."""

    waba_id: str
    messaging_limit: int | str | None
    max_phone_numbers_per_business: int | None
    timestamp: datetime | None


@dataclass(frozen=True)
class PhoneNumberQualityUpdate:
    """``phone_number_quality_update``: a number's quality or throughput event and its messaging-limit tier."""

    waba_id: str
    display_phone_number: str
    event: str  # upper case: FLAGGED, UNFLAGGED, ONBOARDING, THROUGHPUT_UPGRADE, UPGRADE, DOWNGRADE, ...
    current_limit: str  # upper case, Meta's older field: a messaging-limit tier or a throughput level ("" if absent)
    # The portfolio's messaging limit the update names: ``max_daily_conversations_per_business`` (TIER_2K, ... or a
    # number), else ``current_limit`` unless the event is about throughput (there TIER_UNLIMITED means higher
    # throughput, not an unlimited messaging limit); "" when it names none.
    messaging_tier: str
    timestamp: datetime | None


def _int_or_text(raw: Any) -> int | str | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        return text or None


def business_capability_parse(change: Change) -> list[BusinessCapabilityUpdate]:
    value = change.value
    limit = value.get("max_daily_conversations_per_business", value.get("max_daily_conversation_per_phone"))
    phones = _int_or_text(value.get("max_phone_numbers_per_business"))
    return [
        BusinessCapabilityUpdate(
            waba_id=change.waba_id,
            messaging_limit=_int_or_text(limit),
            max_phone_numbers_per_business=phones if isinstance(phones, int) else None,
            timestamp=change.timestamp,
        )
    ]


def phone_quality_parse(change: Change) -> list[PhoneNumberQualityUpdate]:
    value = change.value
    event = str(value.get("event") or "").upper()
    current = str(value.get("current_limit") or "").upper()
    tier = str(value.get("max_daily_conversations_per_business") or "").upper()
    if not tier and not event.startswith("THROUGHPUT"):
        tier = current
    return [
        PhoneNumberQualityUpdate(
            waba_id=change.waba_id,
            display_phone_number=str(value.get("display_phone_number") or ""),
            event=event,
            current_limit=current,
            messaging_tier=tier,
            timestamp=change.timestamp,
        )
    ]
