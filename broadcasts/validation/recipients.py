"""``recipients[]`` (docs/api.md): each ``to`` an E.164 number or ``user_id`` a BSUID, its ``variables``, its
``meta_data`` and its own ``header_media`` and ``buttons`` (``components``), read into ``RecipientInput``. The hot
path of a 5,000-recipient POST: one pass, and the JSON walks only when the serialized text shows they can find
something."""

import re
from dataclasses import dataclass
from typing import Any

import orjson

from broadcasts.phones import phone_checked
from broadcasts.validation.components import buttons_clean, header_media_clean
from broadcasts.validation.errors import Errors, error_add
from broadcasts.validation.send_window import time_zone_clean
from whatsapp.numbers import bsuid_country, is_bsuid

MAX_RECIPIENTS = 5000
# A variable becomes a template parameter text; Meta caps body parameters far below this.
MAX_VARIABLE_VALUE = 1024
MAX_VARIABLE_KEY = 128
MAX_VARIABLES = 100
# Serialized size of one recipient's meta_data: 4x the contract's 1 KB example; the 10 MiB body
# bounds the whole request anyway (5000 recipients average at most ~2 KB each).
MAX_META_DATA_BYTES = 4096
# Numbers in meta_data: jsonb keeps them as exact decimals, so 1e19 comes back as the integer
# 10000000000000000000, which no 64-bit JSON writer (orjson's included) can render. Whatever is
# accepted must be readable back: magnitudes stay below 2**63, as every JSON integer we write.
MAX_META_NUMBER = 2**63
# orjson writes such floats with a positive exponent ("1e+19"); only then is the object walked.
_BIG_FLOAT = re.compile(rb"[0-9]e\+")

INVALID_PHONE = "Not a valid E.164 phone number."
INVALID_BSUID = (
    "Not a WhatsApp business-scoped user id: two upper-case letters, a dot, optionally ENT., then 1-128 letters "
    "and digits (e.g. US.13491208655302741918)."
)
ONE_ADDRESS = "Exactly one of to (a phone number) or user_id (a BSUID) is required."


@dataclass(slots=True)
class RecipientInput:
    to: str  # E.164, or the BSUID of a recipient given by ``user_id``
    variables: dict[str, str]
    meta_json: str | None  # meta_data serialized once, as it is stored
    header_media: dict[str, str] | None = None  # this recipient's own, overriding the broadcast's
    buttons: dict[str, str] | None = None  # button parameters by index
    region: str | None = None  # libphonenumber's region of ``to`` (phones.phone_region), or the BSUID's prefix
    # Whether ``to`` is a geographic number (phones.phone_is_geographic, found by the phone check): its time zone
    # depends on it. None: not known (time_zones finds it when it matters).
    geographic: bool | None = None
    user_id: str | None = None  # the BSUID when the recipient was given by ``user_id`` (then ``to`` is it too)
    time_zone: str | None = None  # ``timezone``: the IANA zone its send window is read in (docs/rules.md)


def _has_nul(value: Any) -> bool:
    """NUL anywhere in a JSON value: PostgreSQL text and jsonb cannot store it."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _has_big_number(value: Any) -> bool:
    if isinstance(value, float):
        return not -MAX_META_NUMBER < value < MAX_META_NUMBER
    if isinstance(value, dict):
        return any(_has_big_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_big_number(v) for v in value)
    return False


def _variables(errors: Errors, i: int, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        error_add(errors, f"recipients[{i}].variables", "Must be an object of strings.")
        return {}
    if len(value) > MAX_VARIABLES:
        error_add(errors, f"recipients[{i}].variables", f"At most {MAX_VARIABLES} variables.")
        return {}
    ok = True
    for key, text in value.items():
        if len(key) > MAX_VARIABLE_KEY or "\x00" in key:
            error_add(
                errors,
                f"recipients[{i}].variables",
                f"Variable names are at most {MAX_VARIABLE_KEY} characters, without NUL.",
            )
            ok = False
        elif not isinstance(text, str):
            error_add(errors, f"recipients[{i}].variables.{key}", "Must be a string.")
            ok = False
        elif len(text) > MAX_VARIABLE_VALUE:
            error_add(errors, f"recipients[{i}].variables.{key}", f"At most {MAX_VARIABLE_VALUE} characters.")
            ok = False
        elif "\x00" in text:
            error_add(errors, f"recipients[{i}].variables.{key}", "May not contain NUL characters.")
            ok = False
    return value if ok else {}


def _meta_data(errors: Errors, i: int, value: Any) -> str | None:
    """The object serialized (it is measured, checked and stored in this form), or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        error_add(errors, f"recipients[{i}].meta_data", "Must be an object.")
        return None
    try:
        dumped = orjson.dumps(value)
    except orjson.JSONEncodeError:  # the API's parser stops this far earlier (core.api.parsers)
        error_add(errors, f"recipients[{i}].meta_data", "Nested too deep.")
        return None
    if len(dumped) > MAX_META_DATA_BYTES:
        error_add(errors, f"recipients[{i}].meta_data", f"At most {MAX_META_DATA_BYTES} bytes once serialized.")
        return None
    # orjson writes NUL as \u0000; only then walk the object (the text may be an escaped backslash).
    if b"\\u0000" in dumped and _has_nul(value):
        error_add(errors, f"recipients[{i}].meta_data", "May not contain NUL characters.")
        return None
    if _BIG_FLOAT.search(dumped) and _has_big_number(value):
        error_add(
            errors,
            f"recipients[{i}].meta_data",
            "Numbers must be between -2**63 and 2**63 (exclusive), to be stored and read back exactly.",
        )
        return None
    return dumped.decode()


def _bsuid_checked(errors: Errors, i: int, to: Any, user_id: Any) -> tuple[str, str, bool] | None:
    """(BSUID, its country, False: not a geographic number) of a recipient given by ``user_id``, or None with its
    error added."""
    if to is not None:
        error_add(errors, f"recipients[{i}]", ONE_ADDRESS)
        return None
    if not isinstance(user_id, str):
        error_add(errors, f"recipients[{i}].user_id", "Must be a string.")
        return None
    if not is_bsuid(user_id):
        error_add(errors, f"recipients[{i}].user_id", INVALID_BSUID)
        return None
    return user_id, bsuid_country(user_id), False


def recipients_clean(errors: Errors, value: Any) -> list[RecipientInput]:
    """The recipients whose ``to`` (or ``user_id``) is valid, every error of every recipient added under its path."""
    if value is None:
        error_add(errors, "recipients", "This field is required.")
        return []
    if not isinstance(value, list):
        error_add(errors, "recipients", "Must be an array of recipients.")
        return []
    if not value:
        error_add(errors, "recipients", "At least 1 recipient is required.")
        return []
    if len(value) > MAX_RECIPIENTS:
        error_add(errors, "recipients", f"At most {MAX_RECIPIENTS} recipients per request; split larger lists.")
        return []
    out: list[RecipientInput] = []
    append = out.append
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            error_add(errors, f"recipients[{i}]", "Must be an object {to or user_id, variables?, meta_data?}.")
            continue
        to = item.get("to")
        user_id = item.get("user_id")
        if user_id is None:  # the phone path, as fast as before: one dict read more
            checked = phone_checked(to) if isinstance(to, str) else None
            if checked is None:
                if to is None:
                    error_add(errors, f"recipients[{i}]", ONE_ADDRESS)
                elif not isinstance(to, str):
                    error_add(errors, f"recipients[{i}].to", "Must be a string.")
                else:
                    error_add(errors, f"recipients[{i}].to", INVALID_PHONE)
        else:
            checked = _bsuid_checked(errors, i, to, user_id)
        variables = _variables(errors, i, item.get("variables"))
        meta_data = _meta_data(errors, i, item.get("meta_data"))
        media = item.get("header_media")
        if media is not None:
            media = header_media_clean(errors, f"recipients[{i}].header_media", media)
        buttons = item.get("buttons")
        if buttons is not None:
            buttons = buttons_clean(errors, f"recipients[{i}].buttons", buttons)
        zone = item.get("timezone")
        if zone is not None:
            zone = time_zone_clean(errors, f"recipients[{i}].timezone", zone)
        if checked is not None:
            recipient = RecipientInput(checked[0], variables, meta_data, media, buttons, checked[1], checked[2])
            if user_id is not None:
                recipient.user_id = user_id
            if zone is not None:
                recipient.time_zone = zone
            append(recipient)
    return out
