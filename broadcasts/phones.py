"""Phone number validation: libphonenumber's verdicts, without its generic text parser.

``phonenumbers.parse`` accepts free text ("Tel: (0)20 ...", vanity letters, extensions, RFC 3966)
and is most of the cost of validating a 5000-recipient body. Our input is narrower by contract:
``+`` then ASCII digits. For that form this module runs the same steps ``parse`` +
``is_valid_number`` run (country code from ``COUNTRY_CODE_TO_REGION_CODE``, national prefix
stripping, region choice for shared calling codes, number-type patterns) with the library's own
functions and metadata, but with each region's patterns compiled once. Anything unusual (too
short, unknown calling code, over-long) is handed to the library itself, so the verdicts are the
library's in every case; tests/broadcasts/test_phones.py proves it over every calling code.
"""

import re
from functools import cache
from typing import NamedTuple

import phonenumbers
from phonenumbers import phonenumberutil as pnu
from phonenumbers.phonemetadata import PhoneMetadata

from whatsapp.numbers import bsuid_country

# ASCII digits only: ``\d`` would also accept Arabic-Indic and other Unicode digits.
_PLUS_DIGITS = re.compile(r"\+[0-9]+")
# Longest input worth looking at: 3 calling-code digits + 17 national digits + a national prefix.
MAX_PHONE_LENGTH = 32

# parse() refuses these national-number lengths (TOO_SHORT_NSN / TOO_LONG).
_MIN_NSN = 2
_MAX_NSN = 17


class _Desc(NamedTuple):
    lengths: frozenset[int]  # empty: any length (the general description already checked it)
    pattern: re.Pattern[str] | None


class _Region(NamedTuple):
    region_code: str
    country_code: int
    leading_digits: re.Pattern[str] | None
    general: _Desc | None
    # length -> one alternation of every type pattern that allows that length (see _any_type)
    by_length: dict[int, re.Pattern[str] | None]


class _CallingCode(NamedTuple):
    parse_metadata: PhoneMetadata  # the metadata parse() strips national prefixes with
    regions: tuple[_Region, ...]
    # Its national_prefix_for_parsing compiled (None without one): most numbers do not start with it, and the
    # library's stripping (which compiles the pattern again at each call) has nothing to do for them.
    national_prefix: re.Pattern[str] | None = None


def _desc(number_desc) -> _Desc | None:
    if number_desc is None:
        return None
    raw = number_desc.national_number_pattern
    return _Desc(frozenset(number_desc.possible_length or ()), re.compile(raw) if raw else None)


def _matches(national: str, desc: _Desc | None) -> bool:
    """``phonenumberutil._is_number_matching_desc`` with a precompiled pattern."""
    if desc is None:
        return False
    if desc.lengths and len(national) not in desc.lengths:
        return False
    return desc.pattern is not None and desc.pattern.fullmatch(national) is not None


# The kinds of number type, as the name of each alternative of ``_any_type``'s patterns starts: a specific type
# (premium rate, toll free, ...: never geographic), fixed line (always geographic), mobile (geographic in a few
# countries only). The time zone of a number depends on it (broadcasts/time_zones.py).
SPECIFIC, FIXED_LINE, MOBILE = "s", "f", "m"


def _any_type(number_descs: list[tuple[str, object]]) -> dict[int, re.Pattern[str] | None]:
    """Per national-number length, one regex matching when ANY type pattern matches.

    ``_number_type_helper`` only says UNKNOWN or not to ``is_valid_number``: the number is valid
    when the general pattern and at least one type pattern match (mobile only when it differs
    from fixed line). One alternation per length replaces up to ten matches. A desc without
    possible lengths takes the general description's, as the library does. ``number_descs`` are
    (kind, desc) in the library's order; each alternative is a group named by its kind and position,
    so the match's ``lastgroup`` is the first type that matches: the number's type, found for free
    (the alternation tries its alternatives in order, as ``_number_type_helper`` tries the types).
    """
    by_length: dict[int, list[str]] = {}
    for position, (kind, desc) in enumerate(number_descs):
        if desc is None or not desc.national_number_pattern:
            continue
        for length in desc.possible_length or range(_MIN_NSN, _MAX_NSN + 1):
            by_length.setdefault(length, []).append(f"(?P<{kind}{position}>{desc.national_number_pattern})")
    return {length: re.compile("|".join(patterns)) for length, patterns in by_length.items()}


def _specific_descs(metadata: PhoneMetadata) -> tuple:
    """The number types libphonenumber tries before fixed line and mobile, in its order (``_number_type_helper``)."""
    return (
        metadata.premium_rate,
        metadata.toll_free,
        metadata.shared_cost,
        metadata.voip,
        metadata.personal_number,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )


def _region(region_code: str, country_code: int) -> _Region | None:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region_code)
    if metadata is None:
        return None
    specific = [(SPECIFIC, desc) for desc in _specific_descs(metadata)]
    # The library checks mobile only when its pattern differs from fixed line's.
    same = bool(metadata.same_mobile_and_fixed_line_pattern)
    types = [*specific, (FIXED_LINE, metadata.fixed_line)] + ([] if same else [(MOBILE, metadata.mobile)])
    return _Region(
        region_code=region_code,
        country_code=metadata.country_code,
        leading_digits=re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None,
        general=_desc(metadata.general_desc),
        by_length=_any_type(types),
    )


@cache  # bounded by the ~215 calling codes libphonenumber knows
def _calling_code(country_code: int) -> _CallingCode | None:
    region_codes = pnu.COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if not region_codes:
        return None
    parse_metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region_codes[0])
    if parse_metadata is None:
        return None
    regions = tuple(r for r in (_region(code, country_code) for code in region_codes) if r is not None)
    prefix = parse_metadata.national_prefix_for_parsing
    return _CallingCode(parse_metadata, regions, re.compile(prefix) if prefix else None)


def _valid_kind(national: str, region: _Region) -> str | None:
    """``_number_type_helper(...) != UNKNOWN``: the general pattern, then any type pattern; the kind of the type that
    matched first (SPECIFIC, FIXED_LINE, MOBILE), None when the number is not valid for the region."""
    if not _matches(national, region.general):
        return None
    pattern = region.by_length.get(len(national))
    match = pattern.fullmatch(national) if pattern is not None else None
    return match.lastgroup[0] if match is not None else None  # type: ignore[index]


def _is_valid_for_region(national: str, region: _Region) -> bool:
    return _valid_kind(national, region) is not None


def _region_for(national: str, calling: _CallingCode) -> _Region | None:
    """``_region_code_for_number_from_list``: leading digits when known, else full validation."""
    if len(calling.regions) == 1:
        return calling.regions[0]
    for region in calling.regions:
        if region.leading_digits is not None:
            if region.leading_digits.match(national):
                return region
        elif _is_valid_for_region(national, region):
            return region
    return None


def _valid_region(national: str, calling: _CallingCode, country_code: int) -> tuple[_Region, str] | None:
    """``_region_for`` then ``_is_valid_for_region`` on its answer (is_valid_number's two steps), without validating
    twice a region that the first step chose by validating it (shared calling codes without leading digits); with
    the kind of the number's type (``_valid_kind``)."""
    regions = calling.regions
    kind = None
    if len(regions) == 1:
        region = regions[0]
    else:
        for region in regions:
            if region.leading_digits is not None:
                if region.leading_digits.match(national):
                    break
            elif (kind := _valid_kind(national, region)) is not None:
                break
        else:
            return None
    if region.country_code != country_code:
        return None
    if kind is None and (kind := _valid_kind(national, region)) is None:
        return None
    return region, kind


def _library_e164(raw: str) -> str | None:
    """The library's own verdict, for the rare inputs the fast path does not handle."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_to_e164(raw: object) -> str | None:
    """The E.164 form of ``raw`` when it is ``+`` then digits and a valid number, else None.

    Same verdict and same E.164 string as ``phonenumbers.parse(raw)`` + ``is_valid_number`` +
    ``format_number(E164)``; a national prefix written after the calling code (``+44 0 20...``)
    is stripped exactly as the library strips it.
    """
    checked = phone_checked(raw)
    return checked[0] if checked is not None else None


def phone_e164_region(raw: object) -> tuple[str, str | None] | None:
    """``(phone_to_e164(raw), phone_region(of it))`` from one parse, or None when ``raw`` is not a valid number."""
    checked = phone_checked(raw)
    return checked[:2] if checked is not None else None


def phone_checked(raw: object) -> tuple[str, str | None, bool] | None:
    """``(phone_to_e164(raw), phone_region(of it), phone_is_geographic(of it))`` from one parse, or None when ``raw``
    is not a valid number.

    The validation already finds the number's region and type to check it: the bulk API keeps them to price the
    broadcast and to find each recipient's time zone without parsing each number a second time."""
    if type(raw) is not str or len(raw) > MAX_PHONE_LENGTH or not _PLUS_DIGITS.fullmatch(raw):
        return None
    digits = raw[1:]
    if len(digits) <= _MIN_NSN:
        return _library_checked(raw)
    country_code, national = _country_code_split(digits)
    calling = _calling_code(country_code) if country_code else None
    if calling is None or len(national) < _MIN_NSN:
        return _library_checked(raw)

    prefix = calling.national_prefix
    if prefix is not None and prefix.match(national):
        _, stripped, _ = pnu._maybe_strip_national_prefix_carrier_code(national, calling.parse_metadata)
        if stripped is not national and _length_strippable(country_code, len(stripped)):
            national = stripped
    if not _MIN_NSN <= len(national) <= _MAX_NSN:
        return None
    # The library keeps leading zeros (Italy) as such, so the national significant number is
    # exactly these digits.
    found = _valid_region(national, calling, country_code)
    if found is None:
        return None
    region, kind = found
    code = region.region_code
    return (
        f"+{country_code}{national}",
        code if code != pnu.REGION_CODE_FOR_NON_GEO_ENTITY else None,
        kind == FIXED_LINE or (kind == MOBILE and country_code in pnu._GEO_MOBILE_COUNTRIES),
    )


def _library_checked(raw: str) -> tuple[str, str | None, bool] | None:
    e164 = _library_e164(raw)
    return (e164, phone_region(e164), phone_is_geographic(e164)) if e164 is not None else None


# Calling codes by their digits: "34" -> 34 (codes never start with 0 and none is a prefix of another).
_CALLING_CODES = {str(code): code for code in pnu.COUNTRY_CODE_TO_REGION_CODE}


def _country_code_split(digits: str) -> tuple[int, str]:
    """``phonenumberutil._extract_country_code`` for ASCII digits: a dict probe per prefix length instead of int()."""
    for length in range(1, min(len(digits), pnu._MAX_LENGTH_COUNTRY_CODE) + 1):
        code = _CALLING_CODES.get(digits[:length])
        if code is not None:
            return code, digits[length:]
    return 0, digits


@cache  # bounded: ~215 calling codes x 18 lengths
def _length_strippable(country_code: int, length: int) -> bool:
    """Whether the library keeps a national number of this length with its national prefix stripped: its
    ``_test_number_length`` (which depends on the length alone) is not TOO_SHORT, local-only nor invalid."""
    calling = _calling_code(country_code)
    assert calling is not None
    return pnu._test_number_length("0" * length, calling.parse_metadata) not in (
        pnu.ValidationResult.TOO_SHORT,
        pnu.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        pnu.ValidationResult.INVALID_LENGTH,
    )


def phone_region(e164: str) -> str | None:
    """libphonenumber's region (ISO 3166 alpha-2) of a number already in E.164 form (as stored), e.g. ``"ES"``;
    None when the library names none (``"001"`` non-geographic numbers included).

    Same answer as ``phonenumbers.region_code_for_number(phonenumbers.parse(e164))``, with the precompiled
    patterns of ``phone_to_e164`` (a dry run of 5000 numbers asks it 5000 times)."""
    digits = e164[1:] if e164.startswith("+") else e164
    country_code, national = pnu._extract_country_code(digits)
    calling = _calling_code(country_code) if country_code else None
    if calling is None:
        return None
    region = _region_for(national, calling)
    code = region.region_code if region is not None else None
    return code if code and code != pnu.REGION_CODE_FOR_NON_GEO_ENTITY else None


class _Kinds(NamedTuple):
    """A region's patterns as ``_number_type_helper`` tries them: the specific types (any of them: not geographic),
    then fixed line, then mobile."""

    specific: dict[int, re.Pattern[str] | None]
    fixed_line: _Desc | None
    mobile: _Desc | None
    same_mobile_and_fixed_line: bool


@cache  # bounded by the ~250 regions libphonenumber knows
def _kinds(region_code: str, country_code: int) -> _Kinds:
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region_code)
    specific = _specific_descs(metadata)
    return _Kinds(
        _any_type([(SPECIFIC, desc) for desc in specific]),
        _desc(metadata.fixed_line),
        _desc(metadata.mobile),
        bool(metadata.same_mobile_and_fixed_line_pattern),
    )


def phone_is_geographic(e164: str) -> bool:
    """``is_number_type_geographical(number_type(n), n.country_code)`` for a valid number in E.164 form: fixed line
    (or fixed line or mobile), or mobile in the countries whose mobile numbers are geographic. libphonenumber's
    time-zone data reads a geographic number by its prefix, any other by its calling code (broadcasts/time_zones.py).
    """
    country_code, national = _country_code_split(e164[1:])
    calling = _calling_code(country_code) if country_code else None
    region = _region_for(national, calling) if calling is not None else None
    if region is None:
        return False
    kinds = _kinds(region.region_code, country_code)
    specific = kinds.specific.get(len(national))
    if specific is not None and specific.fullmatch(national):
        return False
    if _matches(national, kinds.fixed_line):
        return True
    mobile = kinds.same_mobile_and_fixed_line or not _matches(national, kinds.mobile)
    return not mobile and country_code in pnu._GEO_MOBILE_COUNTRIES


def address_region(to: str) -> str | None:
    """The country of a send's address as stored: libphonenumber's region of an E.164 number, the prefix of a BSUID
    (a recipient given by ``user_id``; stored numbers always start with ``+``, a BSUID never does)."""
    if to.startswith("+"):
        return phone_region(to)
    return bsuid_country(to) if to else None
