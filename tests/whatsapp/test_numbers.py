"""Meta's forms of a number: the E.164 numbers a wa_id may stand for (Mexico, Argentina, Brazil rewrite them)."""

import pytest

from whatsapp.numbers import is_bsuid, wa_id_e164_forms


@pytest.mark.parametrize(
    ("wa_id", "forms"),
    [
        ("+5215512345678", ["+5215512345678", "+525512345678"]),  # Mexico: the old mobile "1" after 52
        ("5491123456789", ["+5491123456789", "+541123456789"]),  # Argentina: the mobile "9" after 54
        ("541123456789", ["+541123456789", "+5491123456789"]),
        ("559281723241", ["+559281723241", "+5592981723241"]),  # Brazil: the ninth digit outside areas 11-28
        ("5592981723241", ["+5592981723241", "+559281723241"]),
        ("551181723241", ["+551181723241"]),  # Sao Paulo keeps its ninth digit: no second form
        ("34612345678", ["+34612345678"]),
        ("not digits", []),
    ],
)
def test_forms_of_a_wa_id(wa_id, forms):
    assert wa_id_e164_forms(wa_id) == forms


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("US.13491208655302741918", True),
        ("BR.ENT.abc123", True),
        ("MX.a", True),
        ("US." + "a" * 128, True),
        ("US." + "a" * 129, False),
        ("us.123", False),  # the country is upper-case
        ("US.", False),
        ("US.12-3", False),
        ("US.ENT.", False),
        ("+14155550100", False),
        (None, False),
        (12, False),
        ("US.123\n", False),
    ],
)
def test_bsuid_shape(value, ok):
    assert is_bsuid(value) is ok
