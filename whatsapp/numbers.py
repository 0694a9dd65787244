"""Meta's forms of a phone number: the ``wa_id`` Meta names a user by is not always the E.164 number we sent to."""

import re

# Meta's wa_id differs from the E.164 number in three countries: Mexico keeps the old mobile "1" after 52
# (+52 55 ... is wa_id 521 55 ...), Argentina the mobile "9" after 54, and Brazil drops the ninth digit of mobiles
# outside area codes 11-19, 21, 22, 24, 27, 28 (+55 92 9xxxx-xxxx is wa_id 55 92 xxxx-xxxx).
_BR_NINTH_DIGIT_AREAS = frozenset({11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28})


def wa_id_e164_forms(number: str) -> list[str]:
    """The E.164 numbers a number from Meta (digits, with or without "+") may stand for, the plain one first."""
    digits = "".join(ch for ch in str(number) if ch.isdigit())
    if not digits:
        return []
    out = [f"+{digits}"]
    if digits.startswith("521") and len(digits) == 13:
        out.append(f"+52{digits[3:]}")
    elif digits.startswith("549") and len(digits) == 13:
        out.append(f"+54{digits[3:]}")
    elif digits.startswith("54") and len(digits) == 12:
        out.append(f"+549{digits[2:]}")
    elif digits.startswith("55") and len(digits) == 12 and int(digits[2:4]) not in _BR_NINTH_DIGIT_AREAS:
        out.append(f"+55{digits[2:4]}9{digits[4:]}")
    elif digits.startswith("55") and len(digits) == 13 and digits[4] == "9":
        out.append(f"+55{digits[2:4]}{digits[5:]}")
    return out


# A business-scoped user id (BSUID): the user's country (two upper-case letters), a dot, "ENT." for a parent BSUID,
# then 1-128 letters and digits, e.g. "US.13491208655302741918".
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")


def is_bsuid(value: object) -> bool:
    """Whether ``value`` is a WhatsApp business-scoped user id."""
    return isinstance(value, str) and _BSUID.fullmatch(value) is not None


def bsuid_country(user_id: str) -> str:
    """The ISO 3166 alpha-2 country a BSUID names (its prefix)."""
    return user_id[:2]
