"""Meta's webhook envelope (CONTRACT section 8) read into plain dataclasses. Pure: no database, no settings.

An envelope is ``{"object": ..., "entry": [{"id": <WABA id>, "changes": [{"field": ..., "value": {...}}]}]}``.
Kinds of change that carry something: ``messages`` changes with ``statuses[]`` (delivery receipts, one
``StatusUpdate`` each), ``message_template_status_update`` (one ``TemplateStatusUpdate``, with the entry's
``time``), ``template_category_update`` (``TemplateCategoryUpdate``), ``message_template_quality_update``
(``TemplateQualityUpdate``) and ``user_preferences`` (one ``UserPreferenceUpdate`` per item of its
``user_preferences[]``). Every other
change Meta sends (incoming messages, account, user-preference and call updates, ...) is an ``OtherChange``.
Malformed parts (an entry or change that is not an object, a value that is not an object, a status without an
id) are skipped, never raised: Meta retries any non-2xx answer, so a bad part must not block the good ones.

Who applies what: ``broadcasts/inbound.py`` routes the statuses to ``broadcasts/status_updates.py`` and the
template updates to ``templates_registry/services.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

STATUSES_FIELD = "messages"
TEMPLATE_STATUS_FIELD = "message_template_status_update"
TEMPLATE_CATEGORY_FIELD = "template_category_update"
TEMPLATE_QUALITY_FIELD = "message_template_quality_update"
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
    time: int | None = None  # the entry's ``time`` (Unix seconds): orders the updates of one template


@dataclass(frozen=True)
class TemplateCategoryUpdate:
    """A ``template_category_update``. Final when it carries ``previous_category``; Meta's advance notice carries
    ``correct_category`` (and the category the template has now as ``new_category``) instead."""

    waba_id: str
    template_id: str
    name: str | None
    language: str | None
    new_category: str  # upper case
    previous_category: str  # "" in an advance notice
    correct_category: str  # "" in a final notice
    time: int | None = None

    @property
    def final(self) -> bool:
        return bool(self.previous_category)


@dataclass(frozen=True)
class TemplateQualityUpdate:
    """A ``message_template_quality_update``: GREEN, YELLOW, RED or UNKNOWN (upper case, as Meta says it)."""

    waba_id: str
    template_id: str
    name: str | None
    language: str | None
    new_quality: str
    previous_quality: str
    time: int | None = None


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


InboundItem = (
    StatusUpdate
    | TemplateStatusUpdate
    | TemplateCategoryUpdate
    | TemplateQualityUpdate
    | UserPreferenceUpdate
    | OtherChange
)


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


def _template_ref(value: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    name = value.get("message_template_name")
    language = value.get("message_template_language")
    template_id = value.get("message_template_id")
    return (
        str(template_id) if isinstance(template_id, (int, str)) and not isinstance(template_id, bool) else "",
        name if isinstance(name, str) else None,
        language if isinstance(language, str) else None,
    )


def _word(value: Any) -> str:
    return value.strip().upper()[:64] if isinstance(value, str) else ""


TemplateUpdate = TemplateStatusUpdate | TemplateCategoryUpdate | TemplateQualityUpdate
_T = TypeVar("_T", TemplateStatusUpdate, TemplateCategoryUpdate, TemplateQualityUpdate)


class TemplateUpdateParser(Protocol[_T]):
    def __call__(self, *, waba_id: str, value: Mapping[str, Any], time: int | None = None) -> _T: ...


def _template_update_parser(
    kind: type[_T], own_fields: Callable[[Mapping[str, Any]], dict[str, str]]
) -> TemplateUpdateParser[_T]:
    """The parser of one kind of template update: the template Meta names (``_template_ref``), the entry's WABA id
    and ``time``, and the kind's own fields read from the change's value by ``own_fields``."""

    def parse(*, waba_id: str, value: Mapping[str, Any], time: int | None = None) -> _T:
        template_id, name, language = _template_ref(value)
        return kind(
            waba_id=waba_id, template_id=template_id, name=name, language=language, time=time, **own_fields(value)
        )

    return parse


template_status_update_parse = _template_update_parser(
    TemplateStatusUpdate,
    lambda value: {"event": str(value.get("event") or "").upper(), "reason": str(value.get("reason") or "")},
)
template_category_update_parse = _template_update_parser(
    TemplateCategoryUpdate,
    lambda value: {
        "new_category": _word(value.get("new_category")),
        "previous_category": _word(value.get("previous_category")),
        "correct_category": _word(value.get("correct_category")),
    },
)
template_quality_update_parse = _template_update_parser(
    TemplateQualityUpdate,
    lambda value: {
        "new_quality": _word(value.get("new_quality_score")),
        "previous_quality": _word(value.get("previous_quality_score")),
    },
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
    for entry_id, _, field, value in changes_timed(payload):
        yield entry_id, field, value


def changes_timed(payload: Mapping[str, Any]) -> Iterator[tuple[str, int | None, Any, dict[str, Any]]]:
    """Yields (entry id, entry time, field, value) for every well-formed change; malformed parts are skipped."""
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        time = _entry_time(entry.get("time"))
        for change in entry["changes"]:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield str(entry.get("id") or ""), time, change.get("field"), change["value"]


def envelope_parse(payload: Mapping[str, Any]) -> list[InboundItem]:
    """Every status update, template status update and other change of the envelope, in Meta's order."""
    items: list[InboundItem] = []
    for waba_id, time, field, value in changes_timed(payload):
        if field == STATUSES_FIELD and isinstance(value.get("statuses"), list):
            metadata = value.get("metadata")
            phone_number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
            for entry in value["statuses"]:
                update = status_update_parse(entry, phone_number_id=phone_number_id)
                if update is not None:
                    items.append(update)
        elif field == TEMPLATE_STATUS_FIELD:
            items.append(template_status_update_parse(waba_id=waba_id, value=value, time=time))
        elif field == TEMPLATE_CATEGORY_FIELD:
            items.append(template_category_update_parse(waba_id=waba_id, value=value, time=time))
        elif field == TEMPLATE_QUALITY_FIELD:
            items.append(template_quality_update_parse(waba_id=waba_id, value=value, time=time))
        elif field == USER_PREFERENCES_FIELD:
            items.extend(user_preferences_parse(waba_id=waba_id, value=value))
        else:
            items.append(OtherChange(waba_id=waba_id, field=str(field)))
    return items


# --- the messaging limit and number health (CONTRACT 8, 10) ----------------------------------------------------
# Parsed apart from ``envelope_parse`` (which reports these changes as OtherChange): ``limits_parse`` reads the
# incoming messages (the customer-service window), business_capability_update and phone_number_quality_update.

BUSINESS_CAPABILITY_FIELD = "business_capability_update"
PHONE_QUALITY_FIELD = "phone_number_quality_update"


@dataclass(frozen=True)
class InboundMessage:
    """A customer wrote to one of our numbers (``messages[]`` of a ``messages`` change): it opens the window."""

    phone_number_id: str  # the change's metadata: which of our numbers they wrote to
    wa_id: str  # ``from``: Meta's WhatsApp id of the customer (digits)
    timestamp: datetime | None


@dataclass(frozen=True)
class BusinessCapabilityUpdate:
    """``business_capability_update``: the account's messaging limit (None when the change names none; -1 is
    Meta's "unlimited"), from ``max_daily_conversations_per_business`` or the older
    ``max_daily_conversation_per_phone``."""

    waba_id: str
    messaging_limit: int | str | None
    max_phone_numbers_per_business: int | None
    timestamp: datetime | None


@dataclass(frozen=True)
class PhoneNumberQualityUpdate:
    """``phone_number_quality_update``: a number's quality or throughput event and its messaging-limit tier."""

    waba_id: str
    display_phone_number: str
    event: str  # upper case: FLAGGED, UNFLAGGED, ONBOARDING, THROUGHPUT_UPGRADE, UPGRADE, DOWNGRADE, ...
    current_limit: str  # upper case, Meta's older field: a messaging-limit tier or a throughput level ("" if absent)
    # The portfolio's messaging limit the update names: ``max_daily_conversations_per_business`` (TIER_2K, ... or a
    # number), else ``current_limit`` unless the event is about throughput (there TIER_UNLIMITED means higher
    # throughput, not an unlimited messaging limit); "" when it names none.
    messaging_tier: str
    timestamp: datetime | None


LimitsItem = InboundMessage | BusinessCapabilityUpdate | PhoneNumberQualityUpdate


def _int_or_text(raw: Any) -> int | str | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    try:
        return int(text)
    except ValueError:
        return text or None


def limits_parse(payload: Mapping[str, Any]) -> list[LimitsItem]:
    """Every incoming message, capability update and number quality update of the envelope, in Meta's order.
    Malformed parts are skipped (a message without ``from``, a value that is not an object)."""
    items: list[LimitsItem] = []
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return items
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        waba_id = str(entry.get("id") or "")
        entry_time = _timestamp(entry.get("time"))
        for change in entry["changes"]:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                continue
            field, value = change.get("field"), change["value"]
            if field == STATUSES_FIELD and isinstance(value.get("messages"), list):
                metadata = value.get("metadata")
                phone_number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
                for message in value["messages"]:
                    if isinstance(message, dict) and message.get("from"):
                        items.append(
                            InboundMessage(
                                phone_number_id=phone_number_id,
                                wa_id=str(message["from"]),
                                timestamp=_timestamp(message.get("timestamp")),
                            )
                        )
            elif field == BUSINESS_CAPABILITY_FIELD:
                limit = value.get("max_daily_conversations_per_business", value.get("max_daily_conversation_per_phone"))
                phones = _int_or_text(value.get("max_phone_numbers_per_business"))
                items.append(
                    BusinessCapabilityUpdate(
                        waba_id=waba_id,
                        messaging_limit=_int_or_text(limit),
                        max_phone_numbers_per_business=phones if isinstance(phones, int) else None,
                        timestamp=entry_time,
                    )
                )
            elif field == PHONE_QUALITY_FIELD:
                event = str(value.get("event") or "").upper()
                current = str(value.get("current_limit") or "").upper()
                tier = str(value.get("max_daily_conversations_per_business") or "").upper()
                if not tier and not event.startswith("THROUGHPUT"):
                    tier = current
                items.append(
                    PhoneNumberQualityUpdate(
                        waba_id=waba_id,
                        display_phone_number=str(value.get("display_phone_number") or ""),
                        event=event,
                        current_limit=current,
                        messaging_tier=tier,
                        timestamp=entry_time,
                    )
                )
    return items
