"""Delivery receipts: a ``messages`` change's ``statuses[]``, one ``StatusUpdate`` per well-formed item (an object
with a non-empty string ``id``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from whatsapp.inbound.changes import Change, phone_number_id_read, timestamp_parse, user_id_read, wa_id_read

STATUSES_FIELD = "messages"


@dataclass(frozen=True)
class StatusError:
    """One item of a status's ``errors[]`` (an item that is not an object reads as an empty one)."""

    code: str | None  # Meta's numeric code as text; None when absent
    title: str
    message: str
    details: str  # ``error_data.details``: Meta's most precise words, when given


@dataclass(frozen=True)
class StatusUpdate:
    """One delivery receipt: ``sent``, ``delivered``, ``read`` or ``failed`` (or a word Meta adds later)."""

    wamid: str
    status: str  # lower case, as Meta says it
    timestamp: datetime | None  # None when Meta's Unix seconds are unreadable
    recipient_id: str  # Meta's wa_id of the user ("" when left out: a user with a username)
    errors: tuple[StatusError, ...]
    phone_number_id: str  # the change's metadata: which of our numbers sent the message
    biz_opaque_callback_data: str
    pricing: dict[str, Any] | None
    conversation: dict[str, Any] | None
    raw: dict[str, Any]  # Meta's own entry, as received: what is stored to be re-applied later
    recipient_user_id: str = ""  # the user's BSUID, when Meta names it ("" otherwise, or when it is not one)

    @property
    def first_error(self) -> StatusError | None:
        return self.errors[0] if self.errors else None


def _error(item: Any) -> StatusError:
    if not isinstance(item, dict):
        return StatusError(code=None, title="", message="", details="")
    code = item.get("code")
    error_data = item.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return StatusError(
        code=str(code) if code is not None else None,
        title=str(item.get("title") or ""),
        message=str(item.get("message") or ""),
        details=str(details) if details else "",
    )


def status_update_parse(
    entry: Any, *, phone_number_id: str = "", times: dict[str, datetime | None] | None = None
) -> StatusUpdate | None:
    """One item of ``statuses[]``; None when it is not an object with a non-empty string ``id``. ``times``: the
    timestamps read so far in the same body, by Meta's text (a body of 1,000 statuses repeats a few seconds)."""
    if not isinstance(entry, dict):
        return None
    wamid = entry.get("id")
    if not isinstance(wamid, str) or not wamid:
        return None
    errors = entry.get("errors")
    pricing = entry.get("pricing")
    conversation = entry.get("conversation")
    return StatusUpdate(
        wamid=wamid,
        status=str(entry.get("status", "")).lower(),
        timestamp=_timestamp_read(entry.get("timestamp"), times),
        recipient_id=wa_id_read(entry.get("recipient_id")),
        recipient_user_id=user_id_read(entry.get("recipient_user_id")),
        errors=tuple(_error(item) for item in errors) if isinstance(errors, list) else (),
        phone_number_id=phone_number_id,
        biz_opaque_callback_data=str(entry.get("biz_opaque_callback_data") or ""),
        pricing=pricing if isinstance(pricing, dict) else None,
        conversation=conversation if isinstance(conversation, dict) else None,
        raw=entry,
    )


def _timestamp_read(raw: Any, times: dict[str, datetime | None] | None) -> datetime | None:
    """``timestamp_parse``, remembered in ``times`` for a text (datetimes are immutable: sharing one is safe)."""
    if times is None or type(raw) is not str:
        return timestamp_parse(raw)
    if raw not in times:
        times[raw] = timestamp_parse(raw)
    return times[raw]


def statuses_parse(change: Change) -> list[StatusUpdate]:
    """The well-formed items of a ``messages`` change's ``statuses[]`` (none when it has no such list)."""
    entries = change.value.get("statuses")
    if not isinstance(entries, list):
        return []
    phone_number_id = phone_number_id_read(change.value)
    times: dict[str, datetime | None] = {}
    return [
        update
        for entry in entries
        if (update := status_update_parse(entry, phone_number_id=phone_number_id, times=times)) is not None
    ]
