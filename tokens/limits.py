"""The organization's messaging limit (docs/rules.md): its value as a person or Meta names it, and its one writer.

- ``limit_parse``: 250 / 2000 / 10000 / 100000, "unlimited" (or null, 0, -1), or Meta's tier names (``TIER_2K``, ...);
  the command, the admin and Meta's webhooks all read a limit through it;
- ``limit_name``: how a limit is shown (``2,000 (TIER_2K)``);
- ``organization_limit_set``: the one writer of ``messaging_limit``. A change stamps ``messaging_limit_set_at`` (the
  count starts afresh from PostgreSQL: broadcasts/rules/messaging_limit.py) and, once committed, sends
  ``messaging_limit_changed``: the broadcasts app wakes the organization's sends that wait for the limit
  (broadcasts/rules/limit_wakes.py). A signal because this app sits below broadcasts and must not import it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from tokens.models import MESSAGING_LIMITS, Organization

# Meta's tier names and what they mean; None = unlimited. TIER_50 and TIER_1K are Meta's older tiers: Meta may
# still name them, a person may not choose them.
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
# The tier names a person may give (the command, the admin), beside the numbers and "unlimited".
CHOOSABLE_TIERS = ("TIER_250", "TIER_2K", "TIER_10K", "TIER_100K", "TIER_UNLIMITED")

# Sent on commit of a change: organization_id, limit (None = unlimited), previous (None = unlimited).
messaging_limit_changed = Signal()


class InvalidLimit(ValueError):
    """Not a messaging limit."""


def limit_parse(value: object, *, tiers_only: bool = True) -> int | None:
    """A limit as a person or Meta gives it: 250 / 2000 / 10000 / 100000, "unlimited" / null / 0 / -1 (unlimited), or
    a Meta tier name (TIER_2K, ...). ``tiers_only=False`` (Meta's webhooks) also takes Meta's older tiers and any
    positive number Meta names. Raises InvalidLimit otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidLimit(f"not a messaging limit: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().upper()
        if text in TIERS and (not tiers_only or text in CHOOSABLE_TIERS or text == "UNLIMITED"):
            return TIERS[text]
        if text in ("", "UNLIMITED", "NONE", "NULL"):
            return None
        try:
            number = int(text.replace(",", "").replace("_", ""))
        except ValueError as exc:
            raise InvalidLimit(f"not a messaging limit: {value!r} ({limit_choices()})") from exc
    if number in (0, -1):
        return None
    if number < 0 or (tiers_only and number not in MESSAGING_LIMITS):
        raise InvalidLimit(f"not a messaging limit: {value!r} ({limit_choices()})")
    return number


def limit_choices() -> str:
    """The values a person may give, for messages and help texts."""
    return f"{', '.join(str(n) for n in MESSAGING_LIMITS)}, unlimited or a tier name ({', '.join(CHOOSABLE_TIERS)})"


def limit_name(limit: int | None) -> str:
    """A limit as the admin and the commands show it: ``2,000 (TIER_2K)``, ``unlimited (TIER_UNLIMITED)``."""
    name = tier_name(limit)
    if limit is None:
        return f"unlimited ({name})"
    return f"{limit:,} ({name})" if name.startswith("TIER_") else f"{limit:,}"


def tier_name(limit: int | None) -> str:
    """Meta's tier name of a limit (``TIER_2K``), else the number as text."""
    if limit is None:
        return "TIER_UNLIMITED"
    return next((name for name, value in TIERS.items() if value == limit), str(limit))


def organization_limit_set(*, organization_id: int, limit: int | None, now: datetime | None = None) -> bool:
    """Set the organization's limit (None = unlimited): one conditional UPDATE, so concurrent writers (a webhook and
    the admin) never lose a change. A change starts a fresh count and, once committed, wakes the sends waiting for
    the limit (``messaging_limit_changed``). Returns whether it changed."""
    rows = Organization.objects.filter(id=organization_id)
    previous = rows.values_list("messaging_limit", flat=True).first()
    rows = rows.exclude(messaging_limit__isnull=True) if limit is None else rows.exclude(messaging_limit=limit)
    changed = bool(rows.update(messaging_limit=limit, messaging_limit_set_at=now or timezone.now()))
    if changed:
        transaction.on_commit(
            lambda: messaging_limit_changed.send(
                sender=Organization, organization_id=organization_id, limit=limit, previous=previous
            )
        )
    return changed
