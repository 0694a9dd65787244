"""What WhatsApp users did: a ``user_preferences`` change (one ``UserPreferenceUpdate`` per item of its
``user_preferences[]``: marketing stopped or resumed) and the incoming messages of a ``messages`` change (one
``InboundMessage`` per item of its ``messages[]``: a customer wrote, which opens the customer-service window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from whatsapp.inbound.changes import Change, phone_number_id_read, timestamp_parse

USER_PREFERENCES_FIELD = "user_preferences"


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


def user_preferences_parse(change: Change) -> list[UserPreferenceUpdate]:
    """The well-formed items of ``value.user_preferences[]`` (an object with a string ``wa_id``)."""
    items = change.value.get("user_preferences")
    if not isinstance(items, list):
        return []
    phone_number_id = phone_number_id_read(change.value)
    return [
        UserPreferenceUpdate(
            waba_id=change.waba_id,
            phone_number_id=phone_number_id,
            wa_id=item["wa_id"],
            category=str(item.get("category") or "").lower(),
            value=str(item.get("value") or "").lower(),
            timestamp=timestamp_parse(item.get("timestamp")),
        )
        for item in items
        if isinstance(item, dict) and isinstance(item.get("wa_id"), str) and item["wa_id"]
    ]


@dataclass(frozen=True)
class InboundMessage:
    """A customer wrote to one of our numbers (``messages[]`` of a ``messages`` change): it opens the window."""

    phone_number_id: str  # the change's metadata: which of our numbers they wrote to
    wa_id: str  # ``from``: Meta's WhatsApp id of the customer (digits)
    timestamp: datetime | None


def inbound_messages_parse(change: Change) -> list[InboundMessage]:
    """The incoming messages of a ``messages`` change's ``messages[]`` (those with a ``from``)."""
    messages = change.value.get("messages")
    if not isinstance(messages, list):
        return []
    phone_number_id = phone_number_id_read(change.value)
    return [
        InboundMessage(
            phone_number_id=phone_number_id,
            wa_id=str(message["from"]),
            timestamp=timestamp_parse(message.get("timestamp")),
        )
        for message in messages
        if isinstance(message, dict) and message.get("from")
    ]
