"""The whole body of ``POST /v1/messages/bulk`` (docs/api.md): ``bulk_request_validate``, the entry point, reads its
top-level fields here and its recipients, media and schedule with the package's other modules, and returns the
cleaned ``BulkRequest`` or every error found."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from broadcasts.validation.components import header_media_clean
from broadcasts.validation.errors import Errors, error_add
from broadcasts.validation.recipients import RecipientInput, recipients_clean
from broadcasts.validation.scheduling import parse_scheduled_at
from broadcasts.validation.send_window import send_window_clean

MAX_CAMPAIGN_NAME = 255
MAX_TEMPLATE_NAME = 512
MAX_LANGUAGE = 20
MAX_CHANNEL_ID = 64
# " 2026-11-27 14:03 UTC", appended to the template's name for a generated campaign_name.
_CAMPAIGN_SUFFIX = len(" YYYY-MM-DD HH:MM UTC")
# max_cost: a positive decimal string, at most 10 digits before the point and 6 after (the prices' scale).
_MAX_COST = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")


@dataclass(slots=True)
class BulkRequest:
    template_name: str
    language: str
    channel_id: str
    campaign_name: str | None
    scheduled_at: datetime | None
    recipients: list[RecipientInput] = field(default_factory=list)
    # docs/rules.md: a preview instead of a broadcast, and the spending cap.
    dry_run: bool = False
    max_cost: Decimal | None = None
    header_media: dict[str, str] | None = None
    # docs/rules.md "send windows": the window as given, None when the request has none.
    send_window: dict[str, Any] | None = None


def campaign_name_default(*, template_name: str, now: datetime) -> str:
    """``welcome_v2 2026-11-27 14:03 UTC``; a long template name is cut so the whole fits the column."""
    return f"{template_name[: MAX_CAMPAIGN_NAME - _CAMPAIGN_SUFFIX]} {now:%Y-%m-%d %H:%M} UTC"


def _string(
    errors: Errors, body: dict[str, Any], name: str, *, max_length: int, required: bool, allow_null: bool = False
) -> str | None:
    if name not in body or (allow_null and body[name] is None):
        if required:
            error_add(errors, name, "This field is required.")
        return None
    value = body[name]
    if not isinstance(value, str):
        error_add(errors, name, "Must be a string.")
        return None
    if not value.strip():
        error_add(errors, name, "May not be blank.")
        return None
    if len(value) > max_length:
        error_add(errors, name, f"At most {max_length} characters.")
        return None
    if "\x00" in value:
        error_add(errors, name, "May not contain NUL characters.")
        return None
    return value


def _money_fields(errors: Errors, body: dict[str, Any]) -> tuple[bool, Decimal | None]:
    """``dry_run`` (a boolean) and ``max_cost`` (a decimal string > 0), docs/api.md and docs/rules.md."""
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        error_add(errors, "dry_run", "Must be a boolean.")
        dry_run = False
    max_cost = body.get("max_cost")
    if max_cost is None:
        return dry_run, None
    if not isinstance(max_cost, str):
        error_add(errors, "max_cost", 'Must be a decimal string, e.g. "250.00".')
        return dry_run, None
    if not _MAX_COST.fullmatch(max_cost) or Decimal(max_cost) <= 0:
        error_add(errors, "max_cost", 'Must be a decimal string greater than 0 with at most 6 decimals, e.g. "250.00".')
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
        error_add(errors, "scheduled_at", problem)
    header_media = header_media_clean(errors, "header_media", body.get("header_media"))
    recipients = recipients_clean(errors, body.get("recipients"))
    send_window = send_window_clean(errors, body.get("send_window"))
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
            send_window=send_window,
        ),
        errors,
    )
