"""Shape and field rules of a ``POST /v1/messages/bulk`` body (CONTRACT section 4).

Pure functions over the parsed JSON: no database. Every error is collected under its path
(``recipients[17].to``) so the client sees all of them at once. The service adds the rules that
need the database (channel, template) and decides which variables are missing.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson

from broadcasts.phones import phone_to_e164

MAX_RECIPIENTS = 5000
MAX_CAMPAIGN_NAME = 255
MAX_TEMPLATE_NAME = 512
MAX_LANGUAGE = 20
MAX_CHANNEL_ID = 64
# A variable becomes a template parameter text; Meta caps body parameters far below this.
MAX_VARIABLE_VALUE = 1024
MAX_VARIABLE_KEY = 128
MAX_VARIABLES = 100
# Serialized size of one recipient's meta_data: 4x the contract's 1 KB example; the 10 MiB body
# bounds the whole request anyway (5000 recipients average at most ~2 KB each).
MAX_META_DATA_BYTES = 4096
MAX_SCHEDULE_AHEAD = timedelta(days=90)
# Numbers in meta_data: jsonb keeps them as exact decimals, so 1e19 comes back as the integer
# 10000000000000000000, which no 64-bit JSON writer (orjson's included) can render. Whatever is
# accepted must be readable back: magnitudes stay below 2**63, as every JSON integer we write.
MAX_META_NUMBER = 2**63
# orjson writes such floats with a positive exponent ("1e+19"); only then is the object walked.
_BIG_FLOAT = re.compile(rb"[0-9]e\+")
# " 2026-11-27 14:03 UTC", appended to the template's name for a generated campaign_name.
_CAMPAIGN_SUFFIX = len(" YYYY-MM-DD HH:MM UTC")

INVALID_PHONE = "Not a valid E.164 phone number."

Errors = dict[str, list[str]]


@dataclass(slots=True)
class RecipientInput:
    to: str  # E.164
    variables: dict[str, str]
    meta_json: str | None  # meta_data serialized once, as it is stored


@dataclass(slots=True)
class BulkRequest:
    template_name: str
    language: str
    channel_id: str
    campaign_name: str | None
    scheduled_at: datetime | None
    recipients: list[RecipientInput] = field(default_factory=list)
    # CONTRACT 12: a preview instead of a broadcast, and the spending cap.
    dry_run: bool = False
    max_cost: Decimal | None = None


def _add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


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


def campaign_name_default(*, template_name: str, now: datetime) -> str:
    """``welcome_v2 2026-11-27 14:03 UTC``; a long template name is cut so the whole fits the column."""
    return f"{template_name[: MAX_CAMPAIGN_NAME - _CAMPAIGN_SUFFIX]} {now:%Y-%m-%d %H:%M} UTC"


def _string(
    errors: Errors, body: dict[str, Any], name: str, *, max_length: int, required: bool, allow_null: bool = False
) -> str | None:
    if name not in body or (allow_null and body[name] is None):
        if required:
            _add(errors, name, "This field is required.")
        return None
    value = body[name]
    if not isinstance(value, str):
        _add(errors, name, "Must be a string.")
        return None
    if not value.strip():
        _add(errors, name, "May not be blank.")
        return None
    if len(value) > max_length:
        _add(errors, name, f"At most {max_length} characters.")
        return None
    if "\x00" in value:
        _add(errors, name, "May not contain NUL characters.")
        return None
    return value


def parse_scheduled_at(value: Any, *, now: datetime) -> tuple[datetime | None, str | None]:
    """(the instant in UTC, None) or (None, the error). Omitted and null mean "now"."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, "Must be an ISO 8601 date-time string with an offset, or null."
    if not value or len(value) > 64 or "\x00" in value:
        return None, "Must be an ISO 8601 date-time with an offset, e.g. 2026-11-27T14:03:00+01:00."
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None, "Must be an ISO 8601 date-time with an offset, e.g. 2026-11-27T14:03:00+01:00."
    if instant.tzinfo is None or instant.utcoffset() is None:
        return None, "Must include a UTC offset (e.g. Z or +01:00)."
    try:
        instant = instant.astimezone(UTC)
    except (OverflowError, ValueError):
        return None, "Out of range."
    if instant <= now:
        return None, "Must be in the future."
    if instant > now + MAX_SCHEDULE_AHEAD:
        return None, "Must be at most 90 days ahead."
    return instant, None


def _variables(errors: Errors, path: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        _add(errors, path, "Must be an object of strings.")
        return {}
    if len(value) > MAX_VARIABLES:
        _add(errors, path, f"At most {MAX_VARIABLES} variables.")
        return {}
    ok = True
    for key, text in value.items():
        if len(key) > MAX_VARIABLE_KEY or "\x00" in key:
            _add(errors, path, f"Variable names are at most {MAX_VARIABLE_KEY} characters, without NUL.")
            ok = False
        elif not isinstance(text, str):
            _add(errors, f"{path}.{key}", "Must be a string.")
            ok = False
        elif len(text) > MAX_VARIABLE_VALUE:
            _add(errors, f"{path}.{key}", f"At most {MAX_VARIABLE_VALUE} characters.")
            ok = False
        elif "\x00" in text:
            _add(errors, f"{path}.{key}", "May not contain NUL characters.")
            ok = False
    return value if ok else {}


def _meta_data(errors: Errors, path: str, value: Any) -> str | None:
    """The object serialized (it is measured, checked and stored in this form), or None."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _add(errors, path, "Must be an object.")
        return None
    try:
        dumped = orjson.dumps(value)
    except orjson.JSONEncodeError:  # the API's parser stops this far earlier (core.api.parsers)
        _add(errors, path, "Nested too deep.")
        return None
    if len(dumped) > MAX_META_DATA_BYTES:
        _add(errors, path, f"At most {MAX_META_DATA_BYTES} bytes once serialized.")
        return None
    # orjson writes NUL as \u0000; only then walk the object (the text may be an escaped backslash).
    if b"\\u0000" in dumped and _has_nul(value):
        _add(errors, path, "May not contain NUL characters.")
        return None
    if _BIG_FLOAT.search(dumped) and _has_big_number(value):
        _add(errors, path, "Numbers must be between -2**63 and 2**63 (exclusive), to be stored and read back exactly.")
        return None
    return dumped.decode()


def _recipients(errors: Errors, value: Any) -> list[RecipientInput]:
    if value is None:
        _add(errors, "recipients", "This field is required.")
        return []
    if not isinstance(value, list):
        _add(errors, "recipients", "Must be an array of recipients.")
        return []
    if not value:
        _add(errors, "recipients", "At least 1 recipient is required.")
        return []
    if len(value) > MAX_RECIPIENTS:
        _add(errors, "recipients", f"At most {MAX_RECIPIENTS} recipients per request; split larger lists.")
        return []
    out: list[RecipientInput] = []
    append = out.append
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            _add(errors, f"recipients[{i}]", "Must be an object {to, variables?, meta_data?}.")
            continue
        to = item.get("to")
        e164 = phone_to_e164(to) if isinstance(to, str) else None
        if e164 is None:
            if "to" not in item or to is None:
                _add(errors, f"recipients[{i}].to", "This field is required.")
            elif not isinstance(to, str):
                _add(errors, f"recipients[{i}].to", "Must be a string.")
            else:
                _add(errors, f"recipients[{i}].to", INVALID_PHONE)
        variables = _variables(errors, f"recipients[{i}].variables", item.get("variables"))
        meta_data = _meta_data(errors, f"recipients[{i}].meta_data", item.get("meta_data"))
        if e164 is not None:
            append(RecipientInput(e164, variables, meta_data))
    return out


# max_cost: a positive decimal string, at most 10 digits before the point and 6 after (the prices' scale).
_MAX_COST = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


def _money_fields(errors: Errors, body: dict[str, Any]) -> tuple[bool, Decimal | None]:
    """``dry_run`` (a boolean) and ``max_cost`` (a decimal string > 0), CONTRACT 4 and 12."""
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        _add(errors, "dry_run", "Must be a boolean.")
        dry_run = False
    max_cost = body.get("max_cost")
    if max_cost is None:
        return dry_run, None
    if not isinstance(max_cost, str):
        _add(errors, "max_cost", 'Must be a decimal string, e.g. "250.00".')
        return dry_run, None
    if not _MAX_COST.fullmatch(max_cost) or Decimal(max_cost) <= 0:
        _add(errors, "max_cost", 'Must be a decimal string greater than 0 with at most 6 decimals, e.g. "250.00".')
        return dry_run, None
    return dry_run, Decimal(max_cost)


def bulk_request_validate(*, body: Any, now: datetime) -> tuple[BulkRequest | None, Errors]:
    """The cleaned request, or None with every error found, each under its path."""
    errors: Errors = {}
    if not isinstance(body, dict):
        return None, {"body": ["Must be a JSON object."]}
    template_name = _string(errors, body, "template_name", max_length=MAX_TEMPLATE_NAME, required=True)
    language = _string(errors, body, "language", max_length=MAX_LANGUAGE, required=True)
    channel_id = _string(errors, body, "channel_id", max_length=MAX_CHANNEL_ID, required=True)
    campaign_name = _string(
        errors, body, "campaign_name", max_length=MAX_CAMPAIGN_NAME, required=False, allow_null=True
    )
    scheduled_at, problem = parse_scheduled_at(body.get("scheduled_at"), now=now)
    if problem:
        _add(errors, "scheduled_at", problem)
    recipients = _recipients(errors, body.get("recipients"))
    dry_run, max_cost = _money_fields(errors, body)
    if errors:
        # The fields that did parse still help the service report unknown channels/templates.
        partial = BulkRequest(template_name or "", language or "", channel_id or "", campaign_name, scheduled_at)
        return partial, errors
    return (
        BulkRequest(
            template_name,
            language,
            channel_id,
            campaign_name,
            scheduled_at,
            recipients,
            dry_run=dry_run,
            max_cost=max_cost,
        ),
        errors,
    )
