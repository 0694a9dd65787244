"""The changes of Meta's webhook envelope: ``changes_read`` yields each well-formed ``Change`` (an entry's id and
``time``, a field, a value), what every per-kind parser of this package reads; and the readers those parsers share
(Meta's Unix seconds, the change's ``metadata.phone_number_id``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from whatsapp.numbers import is_bsuid


@dataclass(frozen=True)
class Change:
    """One well-formed change of an envelope (an object whose ``value`` is an object), with its entry's id and
    ``time``: what every per-change parser reads."""

    waba_id: str  # the entry's id ("" when absent)
    time: int | None  # the entry's ``time`` as Unix seconds (``_entry_time``): orders template updates
    timestamp: (
        datetime | None
    )  # the entry's ``time`` as a datetime (``timestamp_parse``): what the limits' updates carry
    field: Any  # Meta's ``field``, as sent (not always a string)
    value: dict[str, Any]


def timestamp_parse(raw: Any) -> datetime | None:
    """Meta sends Unix seconds as a string."""
    try:
        return datetime.fromtimestamp(int(str(raw)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _entry_time(raw: Any) -> int | None:
    """An entry's ``time``: Unix seconds (a number, or digits as text); None when unreadable."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str) and raw.strip().isdecimal() and len(raw.strip()) <= 15:
        raw = int(raw.strip())
    if isinstance(raw, float) and raw == raw and 0 <= raw < 1e15:  # NaN is not equal to itself
        raw = int(raw)
    # Bounded so it fits the stored BIGINT whatever Meta (or a forger with the secret) writes.
    return raw if isinstance(raw, int) and 0 <= raw < 10**15 else None


def phone_number_id_read(value: Mapping[str, Any]) -> str:
    """The change's ``metadata.phone_number_id``: which of our numbers it is about ("" when absent)."""
    metadata = value.get("metadata")
    return str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""


def wa_id_read(raw: Any) -> str:
    """A user's ``wa_id`` as Meta writes it (digits, no "+"; a JSON number is accepted too): "" when absent or not
    6-15 digits, so a hostile value never reaches a lookup."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        return ""
    text = raw.strip()
    return text if text.isdecimal() and text.isascii() and 6 <= len(text) <= 15 else ""


def user_id_read(raw: Any) -> str:
    """A user's BSUID (``user_id``, ``recipient_user_id``): "" when absent or not a BSUID."""
    return raw if is_bsuid(raw) else ""


def changes_read(payload: Mapping[str, Any]) -> Iterator[Change]:
    """Every well-formed change of the envelope, in Meta's order; malformed parts are skipped."""
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        waba_id = str(entry.get("id") or "")
        time, timestamp = _entry_time(entry.get("time")), timestamp_parse(entry.get("time"))
        for change in entry["changes"]:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield Change(waba_id, time, timestamp, change.get("field"), change["value"])
