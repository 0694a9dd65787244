"""What WhatsApp users did: a ``user_preferences`` change (one ``UserPreferenceUpdate`` per item of its
``user_preferences[]``: marketing stopped or resumed) and the incoming messages of a ``messages`` change (one
``InboundMessage`` per item of its ``messages[]``: a customer wrote, which opens the customer-service window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from whatsapp.inbound.changes import Change, phone_number_id_read, timestamp_parse, user_id_read, wa_id_read

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
    # The user's BSUID, beside or instead of ``wa_id`` (a user with a username); "" when absent. One of the two is
    # always given.
    user_id: str = ""


def _word(raw: Any) -> str:
    return raw.strip().lower()[:64] if isinstance(raw, str) else ""


def user_preferences_parse(change: Change) -> list[UserPreferenceUpdate]:
    """The well-formed items of ``value.user_preferences[]``: objects naming the user by a ``wa_id`` (digits), a
    ``user_id`` (a BSUID) or both; an item naming neither is skipped."""
    items = change.value.get("user_preferences")
    if not isinstance(items, list):
        return []
    phone_number_id = phone_number_id_read(change.value)
    updates = []
    for item in items:
        if not isinstance(item, dict):
            continue
        wa_id, user_id = wa_id_read(item.get("wa_id")), user_id_read(item.get("user_id"))
        if not wa_id and not user_id:
            continue
        updates.append(
            UserPreferenceUpdate(
                waba_id=change.waba_id,
                phone_number_id=phone_number_id,
                wa_id=wa_id,
                category=_word(item.get("category")),
                value=_word(item.get("value")),
                timestamp=timestamp_parse(item.get("timestamp")),
                user_id=user_id,
            )
        )
    return updates


@dataclass(frozen=True)
class InboundMessage:
    """A customer wrote to one of our numbers (``messages[]`` of a ``messages`` change): it opens the window."""

    phone_number_id: str  # the change's metadata: which of our numbers they wrote to
    # Meta's WhatsApp id of the customer (digits): ``from``, else the ``contacts[]`` entry's ``wa_id``; "" when Meta
    # left the phone forms out (a user with a username).
    wa_id: str
    timestamp: datetime | None
    user_id: str = ""  # the customer's BSUID (``from_user_id``, else the ``contacts[]`` entry's ``user_id``) or ""


def _contacts_read(value: dict[str, Any]) -> list[tuple[str, str]]:
    """(wa_id, user_id) of each well-formed ``contacts[]`` entry, in order."""
    contacts = value.get("contacts")
    if not isinstance(contacts, list):
        return []
    return [
        (wa_id_read(contact.get("wa_id")), user_id_read(contact.get("user_id")))
        for contact in contacts
        if isinstance(contact, dict)
    ]


def _contact_of(wa_id: str, user_id: str, contacts: list[tuple[str, str]]) -> tuple[str, str]:
    """The message's (wa_id, user_id), the gaps filled from the contact it matches: by wa_id or user_id, else the
    only contact of the change (Meta sends one message, one contact)."""
    for contact in contacts:
        if (wa_id and contact[0] == wa_id) or (user_id and contact[1] == user_id):
            return wa_id or contact[0], user_id or contact[1]
    if len(contacts) == 1 and (not contacts[0][0] or not wa_id) and (not contacts[0][1] or not user_id):
        # One contact that contradicts nothing the message says.
        return wa_id or contacts[0][0], user_id or contacts[0][1]
    return wa_id, user_id


def inbound_messages_parse(change: Change) -> list[InboundMessage]:
    """The incoming messages of a ``messages`` change's ``messages[]``: those naming their sender by a ``from``
    (digits) or a BSUID (``from_user_id`` or ``contacts[].user_id``; Meta may leave ``from`` out for a user with a
    username). A message naming neither is skipped."""
    messages = change.value.get("messages")
    if not isinstance(messages, list):
        return []
    phone_number_id = phone_number_id_read(change.value)
    contacts = _contacts_read(change.value)
    out = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        wa_id, user_id = _contact_of(
            wa_id_read(message.get("from")), user_id_read(message.get("from_user_id")), contacts
        )
        if not wa_id and not user_id:
            continue
        out.append(
            InboundMessage(
                phone_number_id=phone_number_id,
                wa_id=wa_id,
                timestamp=timestamp_parse(message.get("timestamp")),
                user_id=user_id,
            )
        )
    return out
