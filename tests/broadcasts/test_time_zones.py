"""Recipients' time zones (broadcasts/time_zones.py): the fast answer is libphonenumber's own (the first zone of
``time_zones_for_number``) over the library's example numbers of every region and type and their neighbours, in
shuffled order (so the per-prefix cache is filled by any of them); BSUIDs take their country's main zone; the order
of docs/rules.md holds."""

import random

import phonenumbers
import pytest
from phonenumbers import phonenumberutil as pnu
from phonenumbers.timezone import time_zones_for_number

from broadcasts.phones import phone_is_geographic, phone_to_e164
from broadcasts.time_zones import address_zone, country_zone, number_zone, recipient_zone
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
