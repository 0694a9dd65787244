"""Regions Meta delivers no marketing to (docs/rules.md): a MARKETING send to a number of a region in
MARKETING_BLOCKED_REGIONS (libphonenumber's region), or to a BSUID whose country prefix is one of them, ends FAILED
``marketing_region_blocked`` (``retryable: false``) without a call to Meta; the dry run counts them apart
(``blocked``) at no cost. UTILITY and AUTHENTICATION templates are not affected.

Decided from the address alone (no query): a number is parsed only when its calling code is one a blocked region
uses (``+1`` for ``US``), so a batch of other countries' numbers costs a prefix test each."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import phonenumbers
from django.conf import settings

from broadcasts.phones import phone_region
from templates_registry.models import Template
from whatsapp.numbers import bsuid_country

MARKETING_REGION_BLOCKED = "marketing_region_blocked"
BLOCKED_CATEGORY = Template.Category.MARKETING


def blocked_regions() -> frozenset[str]:
    """MARKETING_BLOCKED_REGIONS as a set (read each time: tests override the setting)."""
    return frozenset(getattr(settings, "MARKETING_BLOCKED_REGIONS", ()) or ())


@cache
def _calling_prefixes(regions: frozenset[str]) -> tuple[str, ...]:
    """``+<calling code>`` of each region (``+1`` for US): only numbers starting so can be of a blocked region."""
    codes = {phonenumbers.country_code_for_region(region) for region in regions}
    return tuple(sorted(f"+{code}" for code in codes if code))


def blocked_among(*, category: str, addresses: Iterable[str], regions: frozenset[str] | None = None) -> set[str]:
    """The addresses (E.164 numbers or BSUIDs, as sends store them) a ``category`` template may not go to:
    none unless MARKETING and some region is blocked."""
    regions = blocked_regions() if regions is None else regions
    if category != BLOCKED_CATEGORY or not regions:
        return set()
    prefixes = _calling_prefixes(regions)
    out = set()
    for to in set(addresses):
        if to.startswith("+"):
            if to.startswith(prefixes) and phone_region(to) in regions:
                out.add(to)
        elif to and bsuid_country(to) in regions:
            out.add(to)
    return out
