"""The messaging limit's value: what a person or Meta may name (250 / 2000 / 10000 / 100000 / unlimited, or Meta's
tier names such as ``TIER_2K``), and its changes (command, admin, Meta's ``business_capability_update`` and
``phone_number_quality_update``). A change stamps ``messaging_limit_set_at``, which starts the count afresh
(rules/messaging_limit.py)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from templates_registry.models import Channel
from tokens.models import MESSAGING_LIMITS, Organization

# Meta's tier names (phone_number_quality_update) and what they mean; None = unlimited.
TIERS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1000,
    "TIER_2K": 2000,
    "TIER_10K": 10000,
    "TIER_100K": 100000,
    "TIER_UNLIMITED": None,
    "UNLIMITED": None,
}


class InvalidLimit(ValueError):
    """Not a messaging limit."""


def limit_parse(value: object, *, tiers_only: bool = True) -> int | None:
    """A limit as a person or Meta gives it: 250 / 2000 / 10000 / 100000, "unlimited" / null / 0 / -1 (unlimited), or
    a Meta tier name (TIER_2K, ...). ``tiers_only=False`` (Meta's webhooks) takes any positive number Meta names.
    Raises InvalidLimit otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidLimit(f"not a messaging limit: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().upper()
        if text in TIERS:
            return TIERS[text]
        if text in ("", "UNLIMITED", "NONE", "NULL"):
            return None
        try:
            number = int(text.replace(",", "").replace("_", ""))
        except ValueError as exc:
            raise InvalidLimit(f"not a messaging limit: {value!r}") from exc
    if number in (0, -1):
        return None
    if number < 0 or (tiers_only and number not in MESSAGING_LIMITS):
        raise InvalidLimit(f"not a messaging limit: {value!r} (250, 2000, 10000, 100000 or unlimited)")
    return number


def organization_limit_set(*, organization_id: int, limit: int | None, now: datetime | None = None) -> bool:
    """Set the organization's limit; a change starts a fresh count (rebuilt from PostgreSQL). Returns whether it
    changed."""
    rows = Organization.objects.filter(id=organization_id)
    rows = rows.exclude(messaging_limit__isnull=True) if limit is None else rows.exclude(messaging_limit=limit)
    return bool(rows.update(messaging_limit=limit, messaging_limit_set_at=now or timezone.now()))


def waba_limit_set(*, waba_id: str, limit: int | None) -> int:
    """Meta's business_capability_update for a WhatsApp Business account: the limit of every organization whose
    channels use it. Returns how many organizations changed."""
    organization_ids = set(Channel.objects.filter(waba_id=waba_id).values_list("organization_id", flat=True))
    return sum(organization_limit_set(organization_id=oid, limit=limit) for oid in organization_ids)


def channel_quality_apply(
    *, waba_id: str, phone_number: str, event: str, current_limit: str, messaging_tier: str, at: datetime | None = None
) -> tuple[int, int]:
    """Meta's phone_number_quality_update: store the event on the WABA's channels (narrowed to the one whose name
    carries the display number when the account has several: our channels know Meta's ids, not always the number),
    and apply the tier it names to their organization's limit. Returns (channels, organizations) changed."""
    at = at or timezone.now()
    digits = "".join(ch for ch in phone_number if ch.isdigit())
    channels = list(Channel.objects.filter(waba_id=waba_id).values_list("id", "organization_id", "name"))
    if len(channels) > 1 and digits:
        named = [c for c in channels if digits in "".join(ch for ch in (c[2] or "") if ch.isdigit())]
        channels = named or channels
    updated = Channel.objects.filter(id__in=[c[0] for c in channels]).update(
        quality_event=event[:64], quality_limit_tier=(messaging_tier or current_limit)[:32], quality_updated_at=at
    )
    orgs = 0
    if messaging_tier:
        try:
            limit = limit_parse(messaging_tier, tiers_only=False)
        except InvalidLimit:
            return updated, 0
        orgs = sum(organization_limit_set(organization_id=oid, limit=limit) for oid in {c[1] for c in channels})
    return updated, orgs
