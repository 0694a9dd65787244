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

Each kind has a parser of one ``Change`` (an entry's id and time, a field, a value) into a list of items:
``envelope_parse`` and ``limits_parse`` read a whole envelope with them (``ENVELOPE_PARSERS``, ``LIMITS_PARSERS``).
Who applies what: ``broadcasts/status_updates/inbound.py`` routes the statuses to ``broadcasts/status_updates/`` and the
template updates to ``templates_registry/services.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

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


@dataclass(frozen=True)
class Change:
    """One well-formed change of an envelope (an object whose ``value`` is an object), with its entry's id and
    ``time``: what every per-change parser below reads."""

    waba_id: str  # the entry's id ("" when absent)
    time: int | None  # the entry's ``time`` as Unix seconds (``_entry_time``): orders template updates
    timestamp: datetime | None  # the entry's ``time`` as a datetime (``_timestamp``): what the limits' updates carry
    field: Any  # Meta's ``field``, as sent (not always a string)
    value: dict[str, Any]


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


def _template_update_parser(
    kind: type[_T], own_fields: Callable[[Mapping[str, Any]], dict[str, str]]
) -> Callable[[Change], list[_T]]:
    """The parser of one kind of template update (a change carries one): the template Meta names
    (``_template_ref``), the entry's WABA id and ``time``, and the kind's own fields read from the change's value
    by ``own_fields``."""

    def parse(change: Change) -> list[_T]:
        template_id, name, language = _template_ref(change.value)
        fields = own_fields(change.value)
        return [
            kind(
                waba_id=change.waba_id,
                template_id=template_id,
                name=name,
                language=language,
                time=change.time,
                **fields,
            )
        ]

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


def _phone_number_id(value: Mapping[str, Any]) -> str:
    """The change's ``metadata.phone_number_id``: which of our numbers it is about ("" when absent)."""
    metadata = value.get("metadata")
    return str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""


def statuses_parse(change: Change) -> list[StatusUpdate]:
    """The well-formed items of a ``messages`` change's ``statuses[]`` (none when it has no such list)."""
    entries = change.value.get("statuses")
    if not isinstance(entries, list):
        return []
    phone_number_id = _phone_number_id(change.value)
    return [
        update
        for entry in entries
        if (update := status_update_parse(entry, phone_number_id=phone_number_id)) is not None
    ]


def user_preferences_parse(change: Change) -> list[UserPreferenceUpdate]:
    """The well-formed items of ``value.user_preferences[]`` (an object with a string ``wa_id``)."""
    items = change.value.get("user_preferences")
    if not isinstance(items, list):
        return []
    phone_number_id = _phone_number_id(change.value)
    return [
        UserPreferenceUpdate(
            waba_id=change.waba_id,
            phone_number_id=phone_number_id,
            wa_id=item["wa_id"],
            category=str(item.get("category") or "").lower(),
            value=str(item.get("value") or "").lower(),
            timestamp=_timestamp(item.get("timestamp")),
        )
        for item in items
        if isinstance(item, dict) and isinstance(item.get("wa_id"), str) and item["wa_id"]
    ]


def changes_read(payload: Mapping[str, Any]) -> Iterator[Change]:
    """Every well-formed change of the envelope, in Meta's order; malformed parts are skipped."""
    entries = payload.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            continue
        waba_id = str(entry.get("id") or "")
        time, timestamp = _entry_time(entry.get("time")), _timestamp(entry.get("time"))
        for change in entry["changes"]:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield Change(waba_id, time, timestamp, change.get("field"), change["value"])


def _parsed(
    payload: Mapping[str, Any], parsers: Mapping[str, Callable[[Change], list[Any]]]
) -> Iterator[tuple[Change, list[Any] | None]]:
    """Each change with what the parser of its field read from it (None when no parser reads that field)."""
    for change in changes_read(payload):
        parser = parsers.get(change.field) if isinstance(change.field, str) else None
        yield change, (parser(change) if parser is not None else None)


def envelope_parse(payload: Mapping[str, Any]) -> list[InboundItem]:
    """Every status update, template status update and other change of the envelope, in Meta's order."""
    items: list[InboundItem] = []
    for change, parsed in _parsed(payload, ENVELOPE_PARSERS):
        # A ``messages`` change without ``statuses[]`` (incoming messages: ``limits_parse``) is an other change.
        if parsed is None or (change.field == STATUSES_FIELD and not isinstance(change.value.get("statuses"), list)):
            items.append(OtherChange(waba_id=change.waba_id, field=str(change.field)))
        else:
            items.extend(parsed)
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


def inbound_messages_parse(change: Change) -> list[InboundMessage]:
    """The incoming messages of a ``messages`` change's ``messages[]`` (those with a ``from``)."""
    messages = change.value.get("messages")
    if not isinstance(messages, list):
        return []
    phone_number_id = _phone_number_id(change.value)
    return [
        InboundMessage(
            phone_number_id=phone_number_id,
            wa_id=str(message["from"]),
            timestamp=_timestamp(message.get("timestamp")),
        )
        for message in messages
        if isinstance(message, dict) and message.get("from")
    ]


def business_capability_parse(change: Change) -> list[BusinessCapabilityUpdate]:
    value = change.value
    limit = value.get("max_daily_conversations_per_business", value.get("max_daily_conversation_per_phone"))
    phones = _int_or_text(value.get("max_phone_numbers_per_business"))
    return [
        BusinessCapabilityUpdate(
            waba_id=change.waba_id,
            messaging_limit=_int_or_text(limit),
            max_phone_numbers_per_business=phones if isinstance(phones, int) else None,
            timestamp=change.timestamp,
        )
    ]


def phone_quality_parse(change: Change) -> list[PhoneNumberQualityUpdate]:
    value = change.value
    event = str(value.get("event") or "").upper()
    current = str(value.get("current_limit") or "").upper()
    tier = str(value.get("max_daily_conversations_per_business") or "").upper()
    if not tier and not event.startswith("THROUGHPUT"):
        tier = current
    return [
        PhoneNumberQualityUpdate(
            waba_id=change.waba_id,
            display_phone_number=str(value.get("display_phone_number") or ""),
            event=event,
            current_limit=current,
            messaging_tier=tier,
            timestamp=change.timestamp,
        )
    ]


# What ``envelope_parse`` and ``limits_parse`` read, by field (the router,
# ``broadcasts/status_updates/inbound.py``, routes the same parsers).
ENVELOPE_PARSERS: dict[str, Callable[[Change], list[Any]]] = {
    STATUSES_FIELD: statuses_parse,
    TEMPLATE_STATUS_FIELD: template_status_update_parse,
    TEMPLATE_CATEGORY_FIELD: template_category_update_parse,
    TEMPLATE_QUALITY_FIELD: template_quality_update_parse,
    USER_PREFERENCES_FIELD: user_preferences_parse,
}
LIMITS_PARSERS: dict[str, Callable[[Change], list[Any]]] = {
    STATUSES_FIELD: inbound_messages_parse,
    BUSINESS_CAPABILITY_FIELD: business_capability_parse,
    PHONE_QUALITY_FIELD: phone_quality_parse,
}


def limits_parse(payload: Mapping[str, Any]) -> list[LimitsItem]:
    """Every incoming message, capability update and number quality update of the envelope, in Meta's order.
    Malformed parts are skipped (a message without ``from``, a value that is not an object)."""
    return [item for _, parsed in _parsed(payload, LIMITS_PARSERS) for item in parsed or ()]
