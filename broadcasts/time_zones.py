"""A recipient's time zone for its broadcast's send window (docs/rules.md "Campaign controls: send windows"),
resolved once at ingest and stored with the send (``Send.time_zone``), in order: the recipient's ``timezone``; the
window's ``timezone``; for a number, the zone libphonenumber's time-zone data gives (the first when it gives
several); for a BSUID, its country's most populous zone.

Only a broadcast with a window asks (no cost otherwise). libphonenumber answers a geographic number (fixed line, and
mobile in a few countries) by its longest prefix in ``TIMEZONE_DATA``, any other by its calling code's entry; its
cost is parsing the number and finding its type. Here: a calling code whose every entry is the same one zone is
answered without looking at the number (cached per calling code); a number whose longest prefix gives the calling
code's own entry, or one whose first zone is the calling code's first, needs no type either; only the others have
their type found (phones.phone_is_geographic, the library's steps with precompiled patterns). Only the prefix lengths
the data has under the calling code are looked up, and the two answers per prefix are cached.
tests/broadcasts/test_time_zones.py proves it equal to the library's answer over the library's example numbers of
every region and type and their neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from phonenumbers import phonenumberutil as pnu
from phonenumbers.tzdata import TIMEZONE_DATA

from broadcasts.phones import phone_is_geographic
from whatsapp.numbers import bsuid_country

# libphonenumber's answer when it knows no zone, and ours when nothing else names one: the window is read in UTC.
UNKNOWN = "Etc/Unknown"
FALLBACK_ZONE = "UTC"
# The most populous zone of countries spanning several (a BSUID names its country only); other countries take their
# one zone from the time-zone data.
COUNTRY_MAIN_ZONE = {
    "US": "America/New_York",
    "CA": "America/Toronto",
    "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo",
    "AR": "America/Argentina/Buenos_Aires",
    "RU": "Europe/Moscow",
    "AU": "Australia/Sydney",
    "ID": "Asia/Jakarta",
    "CL": "America/Santiago",
    "KZ": "Asia/Almaty",
    "CD": "Africa/Kinshasa",
    "ES": "Europe/Madrid",
    "PT": "Europe/Lisbon",
    "EC": "America/Guayaquil",
    "GB": "Europe/London",
    "FR": "Europe/Paris",
    "NZ": "Pacific/Auckland",
    "MN": "Asia/Ulaanbaatar",
    "UA": "Europe/Kyiv",
    "DE": "Europe/Berlin",
    "CN": "Asia/Shanghai",
    "MY": "Asia/Kuala_Lumpur",
    "KI": "Pacific/Tarawa",
    "FM": "Pacific/Pohnpei",
    "PF": "Pacific/Tahiti",
    "GL": "America/Nuuk",
    "UZ": "Asia/Tashkent",
    "CY": "Asia/Nicosia",
}


@cache
def _calling_code_zone(code: str) -> str | None:
    """The zone of every number of this calling code when the data gives one same single zone for all its entries
    (the calling code's own and every longer prefix), else None."""
    own = TIMEZONE_DATA.get(code)
    if own is None or len(own) != 1 or own[0] == UNKNOWN:
        return None
    if any(key.startswith(code) and value != own for key, value in TIMEZONE_DATA.items()):
        return None
    return own[0]


def _first(zones: Sequence[str]) -> str:
    return zones[0] if zones and zones[0] != UNKNOWN else FALLBACK_ZONE


_CALLING_CODES = {str(code) for code in pnu.COUNTRY_CODE_TO_REGION_CODE}


@cache  # bounded by the ~215 calling codes
def _prefix_lengths(code: str) -> tuple[int, ...]:
    """The lengths, longest first, of the data's prefixes under this calling code (beyond the code itself): the only
    slices of a number worth looking up (``+1`` has prefixes of 4 to 7 digits, most codes none)."""
    lengths = {len(key) for key in TIMEZONE_DATA if key.startswith(code) and len(key) > len(code)}
    return tuple(sorted(lengths, reverse=True))


@cache  # bounded by the data's ~3,300 prefixes
def _prefix_zone(prefix: str, code: str) -> tuple[str, str] | None:
    """(zone of a geographic number, zone of any other) under the longest prefix ``prefix`` of a number; None when
    the prefix's entry is the calling code's own (the number's type does not matter)."""
    zones, country_level = TIMEZONE_DATA[prefix], TIMEZONE_DATA.get(code, ())
    if zones == country_level:
        return None
    return _first(zones), _first(country_level)


def number_zone(e164: str) -> str:
    """libphonenumber's zone of a valid number in E.164 form (the first when it gives several; UTC when none)."""
    digits = e164[1:]
    code = digits[:1] if digits[:1] in _CALLING_CODES else digits[:2] if digits[:2] in _CALLING_CODES else digits[:3]
    whole = _calling_code_zone(code)
    if whole is not None:
        return whole
    size = len(digits)
    for length in _prefix_lengths(code):
        if length <= size and (prefix := digits[:length]) in TIMEZONE_DATA:
            split = _prefix_zone(prefix, code)
            if split is None:
                break
            geographic, other = split
            # Only here does the number's type matter, and only when the two answers differ: a geographic number
            # gets its prefix's entry.
            return geographic if geographic == other or phone_is_geographic(e164) else other
    return _first(TIMEZONE_DATA.get(code, ()))


@cache
def country_zone(country: str) -> str:
    """A country's most populous zone: the table above, else the one zone the data gives its calling code."""
    if country in COUNTRY_MAIN_ZONE:
        return COUNTRY_MAIN_ZONE[country]
    code = pnu.country_code_for_region(country)
    if not code:
        return FALLBACK_ZONE
    zones = TIMEZONE_DATA.get(str(code), ())
    return zones[0] if len(zones) == 1 and zones[0] != UNKNOWN else FALLBACK_ZONE


def address_zone(address: str) -> str:
    """The zone of a send's address: an E.164 number's (``number_zone``), a BSUID's country's (``country_zone``)."""
    if address.startswith("+"):
        return number_zone(address)
    return country_zone(bsuid_country(address))


def recipient_zone(*, recipient_zone: str | None, window_zone: str | None, address: str) -> str:
    """The zone a recipient's window is read in, in the order of docs/rules.md."""
    return recipient_zone or window_zone or address_zone(address)
