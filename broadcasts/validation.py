"""Shape and field rules of a ``POST /v1/messages/bulk`` body (CONTRACT section 4).

Pure functions over the parsed JSON: no database. Every error is collected under its path
(``recipients[17].to``) so the client sees all of them at once. The service adds the rules that
need the database (channel, template) and decides which variables are missing.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson

from broadcasts.phones import phone_e164_region
from whatsapp.template_components import MEDIA_FORMATS, ButtonSpec

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

# header_media (CONTRACT 4): Meta fetches a link over HTTPS; media ids are numbers; a document's filename is shown.
MEDIA_TYPES = ("image", "video", "document")
MEDIA_FIELDS = frozenset({"type", "link", "id", "filename"})
MAX_MEDIA_LINK = 2048
MAX_MEDIA_ID = 64
MAX_MEDIA_FILENAME = 240
# buttons: Meta allows at most 10 buttons; a value is bounded by its button's kind (whatsapp.template_components),
# and before the template is known by the longest any kind allows (a URL button's whole URL: 2000).
MAX_BUTTONS = 10
MAX_BUTTON_VALUE = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Errors = dict[str, list[str]]


@dataclass(slots=True)
class RecipientInput:
    to: str  # E.164
    variables: dict[str, str]
    meta_json: str | None  # meta_data serialized once, as it is stored
    header_media: dict[str, str] | None = None  # this recipient's own, overriding the broadcast's
    buttons: dict[str, str] | None = None  # button parameters by index
    region: str | None = None  # libphonenumber's region of ``to`` (phones.phone_region), found by the check


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
    header_media: dict[str, str] | None = None


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


def _header_media(errors: Errors, path: str, value: Any) -> dict[str, str] | None:
    """A well-formed ``{"type", "link" | "id", "filename"?}``, or None (absent, null, or with its errors added)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _add(errors, path, 'Must be an object {"type", "link" or "id", "filename"?}.')
        return None
    before = len(errors)
    for key in sorted(k for k in value if k not in MEDIA_FIELDS)[:10]:
        _add(errors, f"{path}.{key[:64]}", "Unknown field.")
    kind = value.get("type")
    if kind is None:
        _add(errors, f"{path}.type", "This field is required.")
    elif kind not in MEDIA_TYPES:
        _add(errors, f"{path}.type", "Must be one of image, video, document.")
    link, media_id = value.get("link"), value.get("id")
    if link is not None and media_id is not None:
        _add(errors, path, "Give exactly one of link and id, not both.")
    elif link is None and media_id is None:
        _add(errors, path, "Give exactly one of link and id.")
    elif link is not None:
        problem = _media_link_problem(link)
        if problem:
            _add(errors, f"{path}.link", problem)
    elif not isinstance(media_id, str) or not media_id.isascii() or not media_id.isdigit():
        _add(errors, f"{path}.id", "Must be Meta's media id: a string of digits.")
    elif len(media_id) > MAX_MEDIA_ID:
        _add(errors, f"{path}.id", f"At most {MAX_MEDIA_ID} characters.")
    filename = value.get("filename")
    if filename is not None:
        if kind != "document":
            _add(errors, f"{path}.filename", "Only a document has a filename.")
        elif not isinstance(filename, str) or not filename.strip():
            _add(errors, f"{path}.filename", "Must be a non-empty string.")
        elif len(filename) > MAX_MEDIA_FILENAME:
            _add(errors, f"{path}.filename", f"At most {MAX_MEDIA_FILENAME} characters.")
        elif _CONTROL.search(filename):
            _add(errors, f"{path}.filename", "May not contain control characters.")
    if len(errors) != before:
        return None
    media = {"type": kind, "id": media_id} if media_id is not None else {"type": kind, "link": link}
    if filename is not None:
        media["filename"] = filename
    return media


def _media_link_problem(link: Any) -> str | None:
    if not isinstance(link, str):
        return "Must be a string: an https URL."
    if len(link) > MAX_MEDIA_LINK:
        return f"At most {MAX_MEDIA_LINK} characters."
    if _CONTROL.search(link) or " " in link:
        return "Must be an https URL without spaces or control characters."
    try:
        parts = urlsplit(link)
        host = parts.hostname
    except ValueError:
        return "Must be an https URL."
    if parts.scheme.lower() != "https" or not host:
        return "Must be an https URL (Meta fetches the media over HTTPS)."
    return None


def _buttons(errors: Errors, path: str, value: Any) -> dict[str, str] | None:
    """Button parameters by index ``{"0": "..."}`` with string values, or None (absent, null or invalid)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        _add(errors, path, 'Must be an object of strings by button index, e.g. {"0": "ABC123"}.')
        return None
    if len(value) > MAX_BUTTONS:
        _add(errors, path, f"At most {MAX_BUTTONS} buttons.")
        return None
    ok = True
    for key, text in value.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 2 and int(key) < MAX_BUTTONS and str(int(key)) == key):
            _add(errors, f"{path}.{key[:16]}", f"Keys are button indexes: 0 to {MAX_BUTTONS - 1}.")
            ok = False
        elif not isinstance(text, str):
            _add(errors, f"{path}.{key}", "Must be a string.")
            ok = False
        elif not text.strip():
            _add(errors, f"{path}.{key}", "May not be blank.")
            ok = False
        elif len(text) > MAX_BUTTON_VALUE:
            _add(errors, f"{path}.{key}", f"At most {MAX_BUTTON_VALUE} characters.")
            ok = False
        elif _CONTROL.search(text):
            _add(errors, f"{path}.{key}", "May not contain control characters.")
            ok = False
    return value if ok else None


def template_components_check(
    errors: Errors, *, request: BulkRequest, header_format: str, buttons: Sequence[ButtonSpec]
) -> None:
    """The rules that need the template (CONTRACT 4): header media of the header's type, buttons the template has,
    values within their button's bounds, and every parameter the template needs present for every recipient."""
    media_type = header_format.lower() if header_format in MEDIA_FORMATS else ""
    dynamic = {str(b.index): b for b in buttons if b.dynamic}
    known = {str(b.index): b for b in buttons}

    def media_ok(path: str, media: dict[str, str]) -> None:
        if not media_type:
            _add(errors, path, "The template has no media header.")
        elif media["type"] != media_type:
            _add(errors, f"{path}.type", f"The template's header is {header_format}: must be {media_type}.")

    if request.header_media is not None:
        media_ok("header_media", request.header_media)
    if media_type and request.header_media is None and not any(r.header_media for r in request.recipients):
        # Not one recipient has it: one error, not one per recipient.
        _add(errors, "header_media", f"Required by the template's {header_format} header (here or per recipient).")
        media_type_required = False
    else:
        media_type_required = bool(media_type) and request.header_media is None
    if not dynamic and not media_type_required and not any(r.header_media or r.buttons for r in request.recipients):
        return
    for i, recipient in enumerate(request.recipients):
        if recipient.header_media is not None:
            media_ok(f"recipients[{i}].header_media", recipient.header_media)
        elif media_type_required:
            _add(errors, f"recipients[{i}].header_media", f"Required by the template's {header_format} header.")
        given = recipient.buttons or {}
        for key, text in given.items():
            spec = known.get(key)
            if spec is None:
                _add(errors, f"recipients[{i}].buttons.{key}", "The template has no button with this index.")
            elif not spec.dynamic:
                _add(errors, f"recipients[{i}].buttons.{key}", f"The template's {spec.label} takes no parameter.")
            elif len(text) > spec.max_chars:
                _add(
                    errors,
                    f"recipients[{i}].buttons.{key}",
                    f"At most {spec.max_chars} characters for the {spec.label}.",
                )
        for key, spec in dynamic.items():
            if key not in given:
                _add(errors, f"recipients[{i}].buttons.{key}", f"Required by the template's {spec.label}.")


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
        checked = phone_e164_region(to) if isinstance(to, str) else None
        if checked is None:
            if "to" not in item or to is None:
                _add(errors, f"recipients[{i}].to", "This field is required.")
            elif not isinstance(to, str):
                _add(errors, f"recipients[{i}].to", "Must be a string.")
            else:
                _add(errors, f"recipients[{i}].to", INVALID_PHONE)
        variables = _variables(errors, f"recipients[{i}].variables", item.get("variables"))
        meta_data = _meta_data(errors, f"recipients[{i}].meta_data", item.get("meta_data"))
        media = item.get("header_media")
        if media is not None:
            media = _header_media(errors, f"recipients[{i}].header_media", media)
        buttons = item.get("buttons")
        if buttons is not None:
            buttons = _buttons(errors, f"recipients[{i}].buttons", buttons)
        if checked is not None:
            append(RecipientInput(checked[0], variables, meta_data, media, buttons, checked[1]))
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
    header_media = _header_media(errors, "header_media", body.get("header_media"))
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
            header_media=header_media,
        ),
        errors,
    )
