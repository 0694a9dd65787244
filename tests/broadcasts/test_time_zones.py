"""Recipients' time zones (broadcasts/time_zones.py): the fast answer is libphonenumber's own (the first zone of
``time_zones_for_number``) over the library's example numbers of every region and type and their neighbours, in
shuffled order (so the per-prefix cache is filled by any of them); BSUIDs take their country's main zone; the order
of docs/rules.md holds."""

import random

import phonenumbers
import pytest
from phonenumbers import phonenumberutil as pnu
from phonenumbers.timezone import time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA

from broadcasts.phones import phone_checked, phone_is_geographic, phone_to_e164
from broadcasts.time_zones import _code_prefixes, address_zone, country_zone, number_zone, recipient_zone
from tests.broadcasts.test_phones import TYPES


def library_zone(e164: str) -> str:
    zones = time_zones_for_number(phonenumbers.parse(e164, None))
    return zones[0] if zones[0] != "Etc/Unknown" else "UTC"


def valid_numbers() -> list[str]:
    rng = random.Random(20261207)
    out: set[str] = set()
    for cc, regions in pnu.COUNTRY_CODE_TO_REGION_CODE.items():
        for region in regions:
            examples = (
                [phonenumbers.example_number_for_non_geo_entity(cc)]
                if region == "001"
                else [phonenumbers.example_number_for_type(region, t) for t in TYPES]
            )
            for example in filter(None, examples):
                base = f"+{cc}{pnu.national_significant_number(example)}"
                out.add(base)
                out.update(base[:-4] + f"{rng.randint(0, 9999):04d}" for _ in range(6))
                out.update(base[:-6] + f"{rng.randint(0, 999999):06d}" for _ in range(6))
    numbers = sorted({e for e in map(phone_to_e164, out) if e is not None})
    rng.shuffle(numbers)
    return numbers


def test_phone_is_geographic_is_the_librarys_verdict():
    wrong = []
    for e164 in valid_numbers():
        number = phonenumbers.parse(e164, None)
        expected = pnu.is_number_type_geographical(pnu.number_type(number), number.country_code)
        if phone_is_geographic(e164) != expected:
            wrong.append(e164)
    assert wrong == []


def test_number_zone_is_libphonenumbers_first_zone_for_every_region_and_type():
    numbers = valid_numbers()
    assert len(numbers) > 5000
    wrong = [(n, number_zone(n), library_zone(n)) for n in numbers if number_zone(n) != library_zone(n)]
    assert wrong == []


def random_numbers() -> list[str]:
    """Valid numbers drawn at random under every prefix of the time-zone data (so every entry, and the digits just
    past it, are reached) and after every calling code, at every length the numbering plans use."""
    rng = random.Random(20261208)
    digits = "0123456789"
    raw: set[str] = set()
    for prefix in TIMEZONE_DATA:
        for length in range(len(prefix) + 1, 16):
            for _ in range(4):
                raw.add("+" + prefix + "".join(rng.choice(digits) for _ in range(length - len(prefix))))
    for cc, regions in pnu.COUNTRY_CODE_TO_REGION_CODE.items():
        for length in range(4, 16):
            for _ in range(8):
                raw.add(f"+{cc}" + "".join(rng.choice(digits) for _ in range(length)))
        # Most random digit strings are not valid numbers: the last digits of each type's example, drawn again.
        for region in regions:
            examples = (
                [phonenumbers.example_number_for_non_geo_entity(cc)]
                if region == "001"
                else [phonenumbers.example_number_for_type(region, t) for t in TYPES]
            )
            for example in filter(None, examples):
                base = f"+{cc}{pnu.national_significant_number(example)}"
                for tail in (3, 5, 7):
                    raw.update(base[:-tail] + "".join(rng.choice(digits) for _ in range(tail)) for _ in range(12))
    return sorted({e for e in map(phone_to_e164, raw) if e is not None})


def library_geographic(e164: str) -> bool:
    number = phonenumbers.parse(e164, None)
    return pnu.is_number_type_geographical(pnu.number_type(number), number.country_code)


def test_zones_with_the_checks_type_are_the_librarys_over_a_large_random_sample():
    """The prefix walk and the type the phone check finds give the library's zone: with the type from the check
    (the ingest's way), and without it (found again when it matters)."""
    numbers = random_numbers()
    wrong_type, wrong_zone = [], []
    decided_by_type = 0
    for e164 in numbers:
        checked = phone_checked(e164)
        assert checked is not None and checked[0] == e164
        if checked[2] != library_geographic(e164):
            wrong_type.append(e164)
        expected = library_zone(e164)
        if number_zone(e164, checked[2]) != expected or number_zone(e164) != expected:
            wrong_zone.append((e164, number_zone(e164, checked[2]), expected))
        decided_by_type += number_zone(e164, True) != number_zone(e164, False)
    assert wrong_type == [] and wrong_zone == []
    # The sample is not one-sided: many countries, and many numbers whose zone their type decides.
    assert len(numbers) > 20000
    assert len({n[:4] for n in numbers}) > 500
    assert decided_by_type > 2000
    # +1 is walked by its prefixes; Japan's every entry is one zone, so there is nothing to walk.
    assert _code_prefixes("1")[1] and not _code_prefixes("81")[1]


@pytest.mark.parametrize(
    "number,zone",
    [
        ("+12125550123", "America/New_York"),
        ("+13105550123", "America/Los_Angeles"),
        ("+34912345678", "Europe/Madrid"),
        ("+819012345678", "Asia/Tokyo"),
        ("+491701234567", "Europe/Berlin"),
        # several zones: the first the data gives (docs/rules.md)
        ("+34612345678", "Atlantic/Canary"),
    ],
)
def test_known_numbers(number, zone):
    assert number_zone(number) == zone


@pytest.mark.parametrize(
    "bsuid,zone",
    [
        ("US.13491208655302741918", "America/New_York"),
        ("BR.ENT.99", "America/Sao_Paulo"),
        ("ES.1", "Europe/Madrid"),
        ("RU.1", "Europe/Moscow"),
        ("AU.1", "Australia/Sydney"),
        ("JP.1", "Asia/Tokyo"),  # one zone: the data's
        ("DE.1", "Europe/Berlin"),
    ],
)
def test_bsuids_take_their_countrys_main_zone(bsuid, zone):
    assert address_zone(bsuid) == zone


def test_every_country_has_a_loadable_zone():
    from zoneinfo import ZoneInfo

    for region in phonenumbers.SUPPORTED_REGIONS:
        ZoneInfo(country_zone(region))


def test_zone_order_recipient_then_window_then_address():
    assert recipient_zone(recipient_zone="Asia/Tokyo", window_zone="Europe/Madrid", address="+12125550123") == (
        "Asia/Tokyo"
    )
    assert recipient_zone(recipient_zone=None, window_zone="Europe/Madrid", address="+12125550123") == "Europe/Madrid"
    assert recipient_zone(recipient_zone=None, window_zone=None, address="+12125550123") == "America/New_York"
    assert recipient_zone(recipient_zone=None, window_zone=None, address="MX.77") == "America/Mexico_City"
