"""Meta's webhook envelope (CONTRACT section 8) read into plain dataclasses. Pure: no database, no settings.

An envelope is ``{"object": ..., "entry": [{"id": <WABA id>, "changes": [{"field": ..., "value": {...}}]}]}``.
Kinds of change that carry something: ``messages`` changes with ``statuses[]`` (delivery receipts, one
``StatusUpdate`` each), ``message_template_status_update`` (one ``TemplateStatusUpdate``) and ``user_preferences``
(one ``UserPreferenceUpdate`` per item of its ``user_preferences[]``). Every other
change Meta sends (incoming messages, account, user-preference and call updates, ...) is an ``OtherChange``.
Malformed parts (an entry or change that is not an object, a value that is not an object, a status without an
id) are skipped, never raised: Meta retries any non-2xx answer, so a bad part must not block the good ones.

Who applies what: ``broadcasts/inbound.py`` routes the statuses to ``broadcasts/status_updates.py`` and the
template updates to ``templates_registry/services.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STATUSES_FIELD = "messages"
TEMPLATE_STATUS_FIELD = "message_template_status_update"
USER_PREFERENCES_FIELD = "user_preferences"


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
    recipient_id: str
    errors: tuple[StatusError, ...]
    phone_number_id: str  # the change's metadata: which of our numbers sent the message
    biz_opaque_callback_data: str
    pricing: dict[str, Any] | None
    conversation: dict[str, Any] | None
    raw: dict[str, Any]  # Meta's own entry, as received: what is stored to be re-applied later

    @property
    def first_error(self) -> StatusError | None:
        return self.errors[0] if self.errors else None


@dataclass(frozen=True)
class TemplateStatusUpdate:
    """A ``message_template_status_update``: Meta approved, rejected, paused ... one template."""

    waba_id: str  # the entry's id: the WhatsApp Business account
    event: str  # upper case: APPROVED, REJECTED, PAUSED, REINSTATED, FLAGGED, ...
    template_id: str  # Meta's id of the template ("" when absent)
    name: str | None
    language: str | None
    reason: str


@dataclass(frozen=True)
class OtherChange:
    """A change nothing of ours acts on (acknowledged and ignored)."""

    waba_id: str
    field: str


@dataclass(frozen=True)
class UserPreferenceUpdate:
    """One item of a ``user_preferences`` change's ``user_preferences[]``: a user stopped or resumed marketing
    messages (``category`` ``marketing_messages``, ``value`` ``stop`` or ``resume``)."""

    waba_id: str  # the entry's id
    phone_number_id: str  # the change's metadata: which of our numbers the user told
    wa_id: str  # Meta's id of the user: digits, no "+" (not always the E.164 number: Mexico, Argentina, Brazil)
    category: str  # lower case
    value: str  # lower case: "stop", "resume"
    timestamp: datetime | None


InboundItem = StatusUpdate | TemplateStatusUpdate | UserPreferenceUpdate | OtherChange


def _timestamp(raw: Any) -> datetime | None:
    """Meta sends Unix seconds as a string."""
    try:
        return datetime.fromtimestamp(int(str(raw)), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


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


def status_update_parse(entry: Any, *, phone_number_id: str = "") -> StatusUpdate | None:
    """One item of ``statuses[]``; None when it is not an object with a non-empty string ``id``."""
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
        timestamp=_timestamp(entry.get("timestamp")),
        recipient_id=str(entry.get("recipient_id") or ""),
        errors=tuple(_error(item) for item in errors) if isinstance(errors, list) else (),
        phone_number_id=phone_number_id,
        biz_opaque_callback_data=str(entry.get("biz_opaque_callback_data") or ""),
        pricing=pricing if isinstance(pricing, dict) else None,
        conversation=conversation if isinstance(conversation, dict) else None,
        raw=entry,
    )


def template_status_update_parse(*, waba_id: str, value: Mapping[str, Any]) -> TemplateStatusUpdate:
    name = value.get("message_template_name")
    language = value.get("message_template_language")
    return TemplateStatusUpdate(
        waba_id=waba_id,
        event=str(value.get("event") or "").upper(),
        template_id=str(value.get("message_template_id") or ""),
        name=name if isinstance(name, str) else None,
        language=language if isinstance(language, str) else None,
        reason=str(value.get("reason") or ""),
    )


def user_preferences_parse(*, waba_id: str, value: Mapping[str, Any]) -> list[UserPreferenceUpdate]:
    """The well-formed items of ``value.user_preferences[]`` (an object with a string ``wa_id``)."""
    items = value.get("user_preferences")
    if not isinstance(items, list):
        return []
    metadata = value.get("metadata")
    phone_number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
    return [
        UserPreferenceUpdate(
            waba_id=waba_id,
            phone_number_id=phone_number_id,
            wa_id=item["wa_id"],
            category=str(item.get("category") or "").lower(),
            value=str(item.get("value") or "").lower(),
            timestamp=_timestamp(item.get("timestamp")),
        )
        for item in items
        if isinstance(item, dict) and isinstance(item.get("wa_id"), str) and item["wa_id"]
    ]


def changes(payload: Mapping[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Yields (entry id, field, value) for every well-formed change; malformed parts are skipped."""
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        for change in entry["changes"]:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield str(entry.get("id") or ""), change.get("field"), change["value"]


def envelope_parse(payload: Mapping[str, Any]) -> list[InboundItem]:
    """Every status update, template status update and other change of the envelope, in Meta's order."""
    items: list[InboundItem] = []
    for waba_id, field, value in changes(payload):
        if field == STATUSES_FIELD and isinstance(value.get("statuses"), list):
            metadata = value.get("metadata")
            phone_number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
            for entry in value["statuses"]:
                update = status_update_parse(entry, phone_number_id=phone_number_id)
                if update is not None:
                    items.append(update)
        elif field == TEMPLATE_STATUS_FIELD:
            items.append(template_status_update_parse(waba_id=waba_id, value=value))
        elif field == USER_PREFERENCES_FIELD:
            items.extend(user_preferences_parse(waba_id=waba_id, value=value))
        else:
            items.append(OtherChange(waba_id=waba_id, field=str(field)))
    return items
