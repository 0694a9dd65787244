"""The messaging limit's changes Meta names (``business_capability_update`` and ``phone_number_quality_update``). What a
person or Meta may name (250 / 2000 / 10000 / 100000 / unlimited, or Meta's tier names such as ``TIER_2K``) and the
one writer are tokens/limits.py, which the commands and the admin share. A change stamps ``messaging_limit_set_at``,
which starts the count afresh (rules/messaging_limit.py), and wakes the sends waiting for it (rules/limit_wakes.py)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from templates_registry.models import Channel
from tokens import limits
from tokens.limits import TIERS, InvalidLimit, limit_parse

__all__ = ["TIERS", "InvalidLimit", "limit_parse", "organization_limit_set", "waba_limit_set", "channel_quality_apply"]


def organization_limit_set(*, organization_id: int, limit: int | None, now: datetime | None = None) -> bool:
    """Set the organization's limit (tokens/limits.py: the one writer; on commit the sends waiting for the limit
    are woken, rules/limit_wakes.py). Returns whether it changed."""
    return limits.organization_limit_set(organization_id=organization_id, limit=limit, now=now)


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
