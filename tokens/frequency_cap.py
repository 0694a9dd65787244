"""The organization's marketing frequency cap (docs/rules.md "Campaign controls"): at most N MARKETING sends per number
(or BSUID) per D days, or off. One parser for the command (``update_organization --marketing-frequency-cap``) and the
admin's organization page, and its one writer. The rule itself is broadcasts/rules/frequency_cap.py.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from tokens.models import Organization

# Days one cap may span: a year is the longest marketing calendar anyone plans by.
DAYS_MAX = 365
# PositiveSmallIntegerField's ceiling: a cap above it would be "no cap" anyway.
CAP_MAX = 32767
OFF_WORDS = ("off", "none", "")
_FORM = re.compile(r"^\s*(\d{1,6})\s*/\s*(\d{1,6})\s*$")
CAP_HELP = 'N/DAYS, e.g. "3/7" (at most 3 MARKETING sends per number per 7 days): N at least 1, DAYS 1 to 365.'


class InvalidFrequencyCap(ValueError):
    """A value that is neither N/DAYS (N >= 1, DAYS 1..365) nor off; its message says what is accepted."""


class FrequencyCap(NamedTuple):
    sends: int
    days: int

    def __str__(self) -> str:
        return f"{self.sends}/{self.days}"


def frequency_cap_parse(value: str | None, *, off_words: tuple[str, ...] = OFF_WORDS) -> FrequencyCap | None:
    """``"3/7"`` -> FrequencyCap(3, 7); an off word (``off``, ``none``, empty) -> None (no cap). Anything else,
    ``0/7``, ``3/0``, ``3/``, ``/7``, ``-1/7``, ``3/366``, raises InvalidFrequencyCap."""
    text = (value or "").strip()
    if text.lower() in off_words:
        return None
    match = _FORM.match(text)
    if match is None:
        raise InvalidFrequencyCap(f"Not a frequency cap: {text!r}. Give {CAP_HELP}")
    sends, days = int(match.group(1)), int(match.group(2))
    if not 1 <= sends <= CAP_MAX:
        raise InvalidFrequencyCap(f"N must be 1 to {CAP_MAX} sends, not {sends}. Give {CAP_HELP}")
    if not 1 <= days <= DAYS_MAX:
        raise InvalidFrequencyCap(f"DAYS must be 1 to {DAYS_MAX}, not {days}. Give {CAP_HELP}")
    return FrequencyCap(sends, days)


def frequency_cap_of(organization: Organization) -> FrequencyCap | None:
    """The organization's cap as stored (both columns set), else None."""
    sends, days = organization.marketing_frequency_cap, organization.marketing_frequency_days
    return FrequencyCap(sends, days) if sends and days else None


def frequency_cap_name(cap: FrequencyCap | None) -> str:
    return "off" if cap is None else f"{cap.sends} per {cap.days} day{'s' if cap.days != 1 else ''}"


def organization_frequency_cap_set(*, organization: Organization, cap: FrequencyCap | None) -> bool:
    """Store the cap (None: off, both columns cleared); True when it changed. Read at posting time, so it applies to
    the next batch of every broadcast: nothing to wake (a cap only ever fails sends, never makes them wait)."""
    if frequency_cap_of(organization) == cap:
        return False
    organization.marketing_frequency_cap = cap.sends if cap else None
    organization.marketing_frequency_days = cap.days if cap else None
    organization.save(update_fields=["marketing_frequency_cap", "marketing_frequency_days"])
    return True
