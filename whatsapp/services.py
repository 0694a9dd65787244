"""Meta's webhooks, inbound (CONTRACT section 8): the envelope walked once, each change routed.

Only two kinds of change do anything: ``messages`` changes carrying ``statuses[]`` (delivery
receipts) and ``message_template_status_update``. Everything else Meta sends (incoming messages,
account, user-preference and call updates, ...) is acknowledged and ignored.
"""

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from broadcasts.status_updates import sends_apply_statuses
from templates_registry.models import Template

# Meta's template events -> the registry's status. FLAGGED and LOCKED leave the template usable
# (Meta still sends it), so they change nothing; REINSTATED makes it usable again.
TEMPLATE_EVENT_STATUSES: dict[str, str] = {
    "APPROVED": Template.Status.APPROVED,
    "REINSTATED": Template.Status.APPROVED,
    "REJECTED": Template.Status.REJECTED,
    "PAUSED": Template.Status.PAUSED,
    "DISABLED": Template.Status.DISABLED,
    "PENDING": Template.Status.PENDING,
    "IN_APPEAL": Template.Status.IN_APPEAL,
    "PENDING_DELETION": Template.Status.PENDING_DELETION,
    "DELETED": Template.Status.DELETED,
    "LIMIT_EXCEEDED": Template.Status.LIMIT_EXCEEDED,
    "ARCHIVED": Template.Status.ARCHIVED,
}


@dataclass
class WebhookResult:
    """What one envelope did, for logs and tests."""

    statuses_received: int = 0
    sends_moved: dict[str, int] = field(default_factory=dict)
    templates_updated: int = 0
    ignored_changes: int = 0


def _changes(payload: dict[str, Any]):
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


def template_status_apply(*, waba_id: str, value: dict[str, Any]) -> int:
    """Applies one ``message_template_status_update``; returns the number of templates changed.

    The template is found by Meta's id when we know it, else by (WABA, name, language).
    """
    status = TEMPLATE_EVENT_STATUSES.get(str(value.get("event") or "").upper())
    if status is None:
        return 0
    meta_id = str(value.get("message_template_id") or "")
    if meta_id:
        changed = Template.objects.filter(meta_id=meta_id).exclude(status=status).update(status=status)
        if changed or Template.objects.filter(meta_id=meta_id).exists():
            return changed
    name = value.get("message_template_name")
    language = value.get("message_template_language")
    if not (waba_id and isinstance(name, str) and isinstance(language, str)):
        return 0
    return (
        Template.objects.filter(waba_id=waba_id, name=name, language=language)
        .exclude(status=status)
        .update(status=status)
    )


def webhook_payload_process(*, payload: dict[str, Any]) -> WebhookResult:
    """Applies a verified webhook envelope, in one transaction (Meta retries on any non-2xx)."""
    result = WebhookResult()
    statuses: list[Any] = []
    template_updates: list[tuple[str, dict[str, Any]]] = []
    for waba_id, field_name, value in _changes(payload):
        if field_name == "messages" and isinstance(value.get("statuses"), list):
            statuses.extend(value["statuses"])
        elif field_name == "message_template_status_update":
            template_updates.append((waba_id, value))
        else:
            result.ignored_changes += 1
    result.statuses_received = len(statuses)
    if not statuses and not template_updates:
        return result
    with transaction.atomic():
        if statuses:
            moved = sends_apply_statuses(statuses=statuses)
            result.sends_moved = {status: len(ids) for status, ids in moved.items()}
        for waba_id, value in template_updates:
            result.templates_updated += template_status_apply(waba_id=waba_id, value=value)
    return result
