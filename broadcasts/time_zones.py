"""A recipient's time zone for its broadcast's send window (docs/rules.md "Campaign controls: send windows"),
resolved once at ingest and stored with the send (``Send.time_zone``), in order: the recipient's ``timezone``; the
window's ``timezone``; for a number, the zone libphonenumber's time-zone data gives (the first when it gives
several); for a BSUID, its country's most populous zone.

Only a broadcast with a window asks (no cost otherwise). libphonenumber answers a geographic number (fixed line, and
mobile in a few countries) by its longest prefix in ``TIMEZONE_DATA``, any other by its calling code's entry; its
cost is parsing the number and finding its type. Here: the phone check already found the number's type
(phones.phone_checked, kept on the recipient), so nothing is parsed again; per calling code, every prefix of the
data's keys maps to the answer of the longest key it starts with (a zone, or the two zones a number's type chooses
between), and a number's digits are walked one longer at a time while they are such a prefix: 1 to 4 dictionary
probes for most numbers, none for a calling code whose every entry is one zone. Exact by construction: the answer
of the longest key is on the walk's path, and only keys of the data are its nodes.
tests/broadcasts/test_time_zones.py proves it equal to the library's answer over the library's example numbers of
every region and type and their neighbours, and over ~46,000 random valid numbers drawn under every prefix of the
data and after every calling code (244 regions).
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


def _first(zones: Sequence[str]) -> str:
    return zones[0] if zones and zones[0] != UNKNOWN else FALLBACK_ZONE


_CALLING_CODES = {str(code) for code in pnu.COUNTRY_CODE_TO_REGION_CODE}

# A number's answer: its zone, or (zone of a geographic number, zone of any other) when its type decides.
Answer = str | tuple[str, str]


def _prefix_answer(prefix: str, code: str) -> Answer:
    """The answer of a number whose longest prefix in the data is ``prefix``: a geographic number gets the prefix's
    entry, any other the calling code's."""
    zones, country_level = TIMEZONE_DATA[prefix], TIMEZONE_DATA.get(code, ())
    zone, other = _first(zones), _first(country_level)
    return zone if zones == country_level or zone == other else (zone, other)


@cache  # bounded by the ~215 calling codes (the data has ~3,300 prefixes in all)
def _code_prefixes(code: str) -> tuple[Answer, dict[str, Answer]]:
    """(the answer of a number that no longer prefix of the data covers, {every prefix of a data key under this
    calling code, longer than the code: the answer of the longest data key it starts with})."""
    own = _first(TIMEZONE_DATA.get(code, ()))
    keys = sorted(key for key in TIMEZONE_DATA if key.startswith(code) and len(key) > len(code))
    prefixes: dict[str, Answer] = {}
    for key in keys:
        for length in range(len(code) + 1, len(key) + 1):
            path = key[:length]
            if path in TIMEZONE_DATA:
                prefixes[path] = _prefix_answer(path, code)
            elif path not in prefixes:
                # No key ends here: the answer of the longest key above it on the path, else the code's own.
                prefixes[path] = prefixes.get(key[: length - 1], own)
    if all(answer == own for answer in prefixes.values()):
        prefixes = {}  # every number of the code gets the same answer: nothing to walk
    return own, prefixes


def number_zone(e164: str, geographic: bool | None = None) -> str:
    """libphonenumber's zone of a valid number in E.164 form (the first when it gives several; UTC when none).
    ``geographic``: the number's ``phone_is_geographic`` when the caller has it (the phone check found the number's
    type: phones.phone_checked), else it is found here when it matters."""
    digits = e164[1:]
    code = digits[:1] if digits[:1] in _CALLING_CODES else digits[:2] if digits[:2] in _CALLING_CODES else digits[:3]
    answer, prefixes = _code_prefixes(code)
    if prefixes:
        # Walk the digits one longer at a time while they are a prefix of some data key: the last one reached
        # holds the answer of the number's longest data key (it is on the path).
        length, size = len(code) + 1, len(digits)
        while length <= size and (found := prefixes.get(digits[:length])) is not None:
            answer = found
            length += 1
    if type(answer) is str:
        return answer
    # Only here does the number's type matter: a geographic number gets its prefix's entry.
    zone, other = answer
    if geographic is None:
        geographic = phone_is_geographic(e164)
    return zone if geographic else other


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


def address_zone(address: str, geographic: bool | None = None) -> str:
    """The zone of a send's address: an E.164 number's (``number_zone``), a BSUID's country's (``country_zone``)."""
    if address.startswith("+"):
        return number_zone(address, geographic)
    return country_zone(bsuid_country(address))


def recipient_zone(
    *, recipient_zone: str | None, window_zone: str | None, address: str, geographic: bool | None = None
) -> str:
    """The zone a recipient's window is read in, in the order of docs/rules.md."""
    return recipient_zone or window_zone or address_zone(address, geographic)
