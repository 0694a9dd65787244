"""The fast phone validator gives libphonenumber's verdict and E.164 form exactly."""

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType as T
from phonenumbers import phonenumberutil as pnu

from broadcasts.phones import phone_e164_region, phone_region, phone_to_e164

TYPES = [
    T.FIXED_LINE,
    T.MOBILE,
    T.TOLL_FREE,
    T.PREMIUM_RATE,
    T.SHARED_COST,
    T.VOIP,
    T.PERSONAL_NUMBER,
    T.PAGER,
    T.UAN,
    T.VOICEMAIL,
]


def library(raw: str) -> str | None:
    """The reference: the library's generic parser and validator."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def candidates() -> list[str]:
    """Valid numbers of every type of every region, their near misses, national-prefix forms,
    and random digit strings of every length after every calling code."""
    rng = random.Random(20261127)
    out: set[str] = set()
    for cc, regions in pnu.COUNTRY_CODE_TO_REGION_CODE.items():
        for length in range(0, 19):
            for _ in range(3):
                out.add(f"+{cc}" + "".join(rng.choice("0123456789") for _ in range(length)))
        for region in regions:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
            if metadata is None:
                continue
            examples = (
                [phonenumbers.example_number_for_non_geo_entity(cc)]
                if region == "001"
                else [phonenumbers.example_number_for_type(region, t) for t in TYPES]
            )
            for example in filter(None, examples):
                nsn = pnu.national_significant_number(example)
                base = f"+{cc}{nsn}"
                out.update({base, base[:-1], base[:-2], base + "1", base + "12", f"+{cc}0{nsn}"})
                out.update(base[:-3] + f"{rng.randint(0, 999):03d}" for _ in range(4))
                prefix = metadata.national_prefix
                if prefix and prefix.isdigit():
                    out.add(f"+{cc}{prefix}{nsn}")  # the trunk prefix written after the calling code
    out.update(
        [
            "+",
            "+1",
            "+12",
            "+123",
            "+0",
            "+00",
            "+0034612345678",
            "+999123456",
            "+8001234567",
            "+3906698",
            "+39066981",
            "+390669812345",
            "+2250123456789",
            "+" + "9" * 31,
        ]
    )
    return sorted(out)


def test_same_verdict_and_e164_as_libphonenumber_for_every_calling_code():
    numbers = candidates()
    mismatches = [(n, phone_to_e164(n), library(n)) for n in numbers if phone_to_e164(n) != library(n)]
    assert mismatches == []
    valid = sum(1 for n in numbers if library(n))
    # the sample is not trivially one-sided
    assert len(numbers) > 20000 and 5000 < valid < len(numbers) - 5000


def test_the_region_found_by_the_check_is_the_librarys_for_every_calling_code():
    numbers = candidates()
    checked = {n: phone_e164_region(n) for n in numbers}
    assert [n for n, c in checked.items() if (c[0] if c else None) != library(n)] == []
    wrong = []
    for n, c in checked.items():
        if c is None:
            continue
        region = phonenumbers.region_code_for_number(phonenumbers.parse(c[0], None))
        expected = region if region not in (None, "001", "ZZ") else None
        if c[1] != expected or c[1] != phone_region(c[0]):
            wrong.append((n, c, expected))
    assert wrong == []
    assert sum(1 for c in checked.values() if c and c[1] is None) > 0  # non-geographic numbers are in the sample


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("+34612345678", "+34612345678"),
        ("+4402079460958", "+442079460958"),  # UK trunk 0 stripped, as the library does
        ("+390669812345", "+390669812345"),  # Italian leading zero kept
        ("+14155552671", "+14155552671"),
    ],
)
def test_e164_forms(raw, expected):
    assert phone_to_e164(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "34612345678",
        "+34 612 345 678",
        "+34-612-345-678",
        "tel:+34612345678",
        "+٣٤٦١٢٣٤٥٦٧٨",
        " +34612345678",
        "+34612345678\n",
        "",
        None,
        34612345678,
        "+" + "1" * 40,
    ],
)
def test_only_plus_then_ascii_digits_is_accepted(raw):
    assert phone_to_e164(raw) is None
