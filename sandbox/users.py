"""Meta's users as the sandbox plays them from 2026: business-scoped user ids (BSUIDs) beside phone numbers.

- Every number has a stable BSUID: its country (libphonenumber's region), a dot, 20 digits of a hash of the number,
  e.g. `CO.01234567890123456789`. Stable across sandbox restarts, so a test can derive it ahead
  (`bsuid_of`, or `GET /_sandbox/user_id?to=`).
- A send names its user by `to` (a number) or by `recipient` (a BSUID); `recipient_of` reads which, or what is
  wrong with the body (Meta's code 100).
- The region of a number or a BSUID decides where Meta does not deliver MARKETING templates (the US).

phonenumbers is a third-party library, not one of our apps: the sandbox may use it as Meta uses its own number data.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import phonenumbers

from sandbox.state import digits

# Two upper-case letters (the user's country), a dot, "ENT." for a parent BSUID, then 1-128 letters and digits.
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# A number libphonenumber places in no region still gets a BSUID (Meta's "unknown region").
UNKNOWN_REGION = "ZZ"


def is_bsuid(value: object) -> bool:
    return isinstance(value, str) and BSUID.fullmatch(value) is not None


def region_of_number(to_digits: str) -> str:
    """The ISO 3166 region of a number (digits of its E.164 form), or "ZZ" when libphonenumber places it nowhere.
    +1 numbers split by area code: 212 is US, 416 is CA, 876 is JM."""
    try:
        parsed = phonenumbers.parse(f"+{to_digits}")
    except phonenumbers.NumberParseException:
        return UNKNOWN_REGION
    return phonenumbers.region_code_for_number(parsed) or UNKNOWN_REGION


def bsuid_of(number: str) -> str:
    """The BSUID the sandbox gives the user of this number (any form: "+57 300...", "57300...")."""
    to_digits = digits(number)
    hashed = int.from_bytes(hashlib.sha256(f"sandbox-bsuid:{to_digits}".encode()).digest()[:10], "big")
    return f"{region_of_number(to_digits)}.{hashed % 10**20:020d}"


def region_of(key: str) -> str:
    """The region of a recipient key: a BSUID's prefix, else the number's region."""
    return key[:2] if is_bsuid(key) else region_of_number(key)


def recipient_key(value: Any) -> str:
    """How the sandbox keys a user (scripts, the arrival log, rate windows): the BSUID itself, else the digits."""
    return value if is_bsuid(value) else digits(value)


def recipient_of(body: dict[str, Any]) -> tuple[str, str] | str:
    """("to", digits) or ("recipient", BSUID) for a send's body, or what is wrong with it (Meta's code 100).

    The sandbox refuses a body with both on purpose: Meta lets `to` win then, and a service that sends both has a
    bug the sandbox should show, not hide."""
    has_to, has_recipient = "to" in body, "recipient" in body
    if has_to and has_recipient:
        return "Give either the parameter to (a phone number) or recipient (a business-scoped user ID), not both"
    if has_recipient:
        recipient = body["recipient"]
        if not is_bsuid(recipient):
            return "The parameter recipient must be a business-scoped user ID (e.g. US.13491208655302741918)"
        return "recipient", recipient
    to = body.get("to")
    if not isinstance(to, str) or not digits(to):
        return "The parameter to (a phone number) or recipient (a business-scoped user ID) is required"
    return "to", digits(to)
