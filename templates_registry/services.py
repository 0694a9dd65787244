"""Writes of channels and templates: bootstrap commands, the demo seed, the sync from Meta, and Meta's
template status updates (``message_template_status_update`` webhooks, routed here by
``broadcasts/status_updates/inbound.py``)."""

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import ApplicationError, ConflictError
from templates_registry.models import Channel, Template
from templates_registry.variables import extract_variables, parameter_format_infer, variables_mixed
from tokens.models import Organization
from whatsapp.graph_templates import GraphTemplatesError, message_templates_fetch

# Meta's object ids (phone number, WhatsApp Business account) are unsigned 64-bit integers: at most 20 digits. They
# go into Graph URL paths, so nothing else may pass (no "/", "?", "..", encoded or not).
GRAPH_ID_RE = re.compile(r"[0-9]{1,20}")  # used with fullmatch: "$" would let a trailing newline in
# Meta: template names are lowercase letters, digits and underscores.
TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9_]{1,512}$")
# Meta's language codes: "es", "fil", "en_US", "zh_HK", ...
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")
STATUS_RE = re.compile(r"^[A-Z_]{1,32}$")
# Meta's limits for the text of a template's body and of a TEXT header.
BODY_MAX_CHARS = 1024
HEADER_MAX_CHARS = 60

# Meta's template events (message_template_status_update) -> the registry's status (docs/rules.md): APPROVED,
# REINSTATED and UNARCHIVED make the template APPROVED; FLAGGED leaves its status as it is (Meta still sends a
# flagged template; the flag is stored as the last event); every other word is stored as Meta says it, and only
# APPROVED can start or resume a broadcast.
APPROVING_EVENTS = frozenset({"APPROVED", "REINSTATED", "UNARCHIVED"})
STATUS_KEEPING_EVENTS = frozenset({"FLAGGED"})
TEMPLATE_CATEGORIES = frozenset(Template.Category.values)
TEMPLATE_QUALITIES = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})


@dataclass(frozen=True)
class TemplateStatusChange:
    """One template whose status an update changed (for the broadcasts' template rule)."""

    template_id: int
    old_status: str
    new_status: str
    event: str
    reason: str


def channel_create(
    *,
    organization: Organization,
    phone_number_id: str,
    waba_id: str,
    access_token: str,
    max_mps: int = 80,
    name: str = "",
    marketing_messages: bool = False,
) -> Channel:
    """A new sending channel; a ``phone_number_id`` already registered is a conflict."""
    errors: dict[str, list[str]] = {}
    if not GRAPH_ID_RE.fullmatch(phone_number_id or ""):
        errors["phone_number_id"] = ["Must be Meta's numeric phone number id."]
    if not GRAPH_ID_RE.fullmatch(waba_id or ""):
        errors["waba_id"] = ["Must be Meta's numeric WhatsApp Business account id."]
    if not (access_token or "").strip():
        errors["access_token"] = ["Required."]
    if not isinstance(max_mps, int) or not 1 <= max_mps <= 1000:
        errors["max_mps"] = ["Must be an integer from 1 to 1000."]
    if errors:
        raise ApplicationError(
            "Invalid channel: " + "; ".join(f"{k}: {v[0]}" for k, v in errors.items()), details=errors
        )
    if Channel.objects.filter(phone_number_id=phone_number_id).exists():
        raise ConflictError(f"A channel with phone_number_id {phone_number_id} already exists.")
    try:
        with transaction.atomic():
            return Channel.objects.create(
                organization=organization,
                phone_number_id=phone_number_id,
                waba_id=waba_id,
                access_token=access_token.strip(),
                max_mps=max_mps,
                name=name,
                marketing_messages=bool(marketing_messages),
            )
    except IntegrityError as exc:  # a concurrent create of the same phone number
        raise ConflictError(f"A channel with phone_number_id {phone_number_id} already exists.") from exc


def template_components_build(*, body: str, header: str | None = None) -> list[dict[str, Any]]:
    """Meta-shaped components of a text template: an optional TEXT header, then the body."""
    components: list[dict[str, Any]] = []
    if header:
        components.append({"type": "HEADER", "format": "TEXT", "text": header})
    components.append({"type": "BODY", "text": body})
    return components


def template_variables_from_components(components: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(header variables, body variables) of Meta-shaped components.

    Only a TEXT header has text placeholders; media headers, footers and buttons carry none we fill.
    """
    header: list[str] = []
    body: list[str] = []
    for component in components or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        text = component.get("text") if isinstance(component.get("text"), str) else ""
        if kind == "HEADER" and str(component.get("format", "TEXT")).upper() == "TEXT":
            header = extract_variables(text)
        elif kind == "BODY":
            body = extract_variables(text)
    return header, body


def template_upsert(
    *,
    waba_id: str,
    name: str,
    language: str,
    components: list[dict[str, Any]],
    status: str = Template.Status.APPROVED,
    category: str = "",
    parameter_format: str | None = None,
    meta_id: str = "",
) -> tuple[Template, bool]:
    """Creates or updates the template (``waba_id``, ``name``, ``language``); returns it and whether it is new.

    Variables always come from the components' placeholders; ``parameter_format`` is Meta's when given,
    else inferred (POSITIONAL when every placeholder is a number).
    """
    status_value = str(status or "").strip().upper()
    # Meta may add statuses; any is stored as Meta says it, and only APPROVED can start a broadcast.
    if not STATUS_RE.match(status_value):
        raise ApplicationError(f"Invalid template status {status!r}.", details={"status": ["Invalid status."]})
    if not isinstance(components, list):
        raise ApplicationError("Template components must be a list.", details={"components": ["Not a list."]})
    header_variables, body_variables = template_variables_from_components(components)
    if variables_mixed(header_variables, body_variables):
        raise ApplicationError(
            "A template's placeholders are either all named ({{nombre}}) or all positional ({{1}}), not mixed.",
            details={"components": ["Mixed named and positional placeholders."]},
        )
    fmt = str(parameter_format or "").upper() or parameter_format_infer(header_variables, body_variables)
    if fmt not in Template.ParameterFormat.values:
        fmt = parameter_format_infer(header_variables, body_variables)
    return Template.objects.update_or_create(
        waba_id=waba_id,
        name=name,
        language=language,
        defaults={
            "status": status_value,
            "category": str(category or "").upper()[:32],
            "parameter_format": fmt,
            "components": components,
            "header_variables": header_variables,
            "body_variables": body_variables,
            **({"meta_id": str(meta_id)} if meta_id else {}),
        },
    )


def template_register(
    *,
    channel: Channel,
    name: str,
    language: str,
    body: str,
    header: str | None = None,
    status: str = Template.Status.APPROVED,
    category: str = Template.Category.MARKETING,
) -> tuple[Template, bool]:
    """Registers a text template by hand (``create_template``) for the channel's WhatsApp Business account."""
    errors: dict[str, list[str]] = {}
    if not TEMPLATE_NAME_RE.match(name or ""):
        errors["name"] = ["Lowercase letters, digits and underscores only (Meta's rule)."]
    if not LANGUAGE_RE.match(language or ""):
        errors["language"] = ["A language code such as es, en_US or pt_BR."]
    if not (body or "").strip():
        errors["body"] = ["Required."]
    elif len(body) > BODY_MAX_CHARS:
        errors["body"] = [f"At most {BODY_MAX_CHARS} characters."]
    if header is not None and not header.strip():
        errors["header"] = ["Must not be blank when given."]
    elif header and len(header) > HEADER_MAX_CHARS:
        errors["header"] = [f"At most {HEADER_MAX_CHARS} characters."]
    if str(status or "").strip().upper() not in Template.Status.values:
        errors["status"] = [f"One of {', '.join(Template.Status.values)}."]
    if str(category or "").strip().upper() not in TEMPLATE_CATEGORIES:
        errors["category"] = [f"One of {', '.join(sorted(TEMPLATE_CATEGORIES))}."]
    if errors:
        raise ApplicationError(
            "Invalid template: " + "; ".join(f"{k}: {v[0]}" for k, v in errors.items()), details=errors
        )
    return template_upsert(
        waba_id=channel.waba_id,
        name=name,
        language=language,
        components=template_components_build(body=body, header=header),
        status=status,
        category=category,
    )


def templates_sync(*, channel: Channel) -> int:
    """Upserts every template Meta holds for the channel's account; returns how many.

    All pages are read before anything is written, and written in one transaction: a sync that
    fails half-way changes nothing.
    """
    try:
        remote = message_templates_fetch(
            waba_id=channel.waba_id, access_token=channel.access_token, graph_url=settings.WHATSAPP_GRAPH_URL
        )
    except GraphTemplatesError as exc:
        raise ApplicationError(exc.message, code="graph_error", status=502, details=exc.details) from exc
    items = [_template_fields(item) for item in remote]
    with transaction.atomic():
        for fields in items:
            template_upsert(waba_id=channel.waba_id, **fields)
    return len(items)


def template_status_set(*, waba_id: str, name: str, language: str | None, status: str) -> int:
    """Sets the status of a template (Meta's ``message_template_status_update``); returns rows changed."""
    status_value = str(status or "").strip().upper()
    if not STATUS_RE.match(status_value):
        raise ApplicationError(f"Invalid template status {status!r}.", details={"status": ["Invalid status."]})
    templates = Template.objects.filter(waba_id=waba_id, name=name)
    if language:
        templates = templates.filter(language=language)
    return templates.update(status=status_value)


def _templates_of_update(
    *, waba_id: str, meta_id: str, name: str | None, language: str | None
) -> QuerySet[Template] | None:
    """The template a Meta webhook names, always within the entry's WABA (``entry[].id``): by Meta's id when we know
    it there, else by (WABA, name, language). An update naming another account's template changes nothing."""
    if not waba_id:
        return None
    if meta_id and Template.objects.filter(waba_id=waba_id, meta_id=meta_id).exists():
        return Template.objects.filter(waba_id=waba_id, meta_id=meta_id)
    if not (isinstance(name, str) and isinstance(language, str)):
        return None
    return Template.objects.filter(waba_id=waba_id, name=name, language=language)


def template_status_update_apply(
    *,
    waba_id: str,
    event: str,
    meta_id: str = "",
    name: str | None = None,
    language: str | None = None,
    reason: str = "",
    time: int | None = None,
) -> list[TemplateStatusChange]:
    """Applies one of Meta's ``message_template_status_update`` events; returns the templates whose status changed.

    Out-of-order safe: an update whose entry ``time`` (Unix seconds) is older than the last one applied to that
    template changes nothing. Equal times apply in arrival order (Meta's time has a resolution of one second, so
    two updates of one second are told apart by nothing else). An update without a readable time applies and
    leaves the stored time as it was. The rows are locked (FOR UPDATE) so two concurrent updates apply in turn.
    """
    word = str(event or "").strip().upper()
    if not STATUS_RE.match(word):
        return []
    templates = _templates_of_update(waba_id=waba_id, meta_id=meta_id, name=name, language=language)
    if templates is None:
        return []
    changes: list[TemplateStatusChange] = []
    with transaction.atomic():
        for template in templates.select_for_update().order_by("id"):
            if time is not None and template.status_event_time is not None and time < template.status_event_time:
                continue
            if word in APPROVING_EVENTS:
                status = Template.Status.APPROVED
            elif word in STATUS_KEEPING_EVENTS:
                status = template.status
            else:
                status = word
            old = template.status
            template.status = status
            template.status_event = word
            template.status_reason = str(reason or "")[:255]
            if time is not None:
                template.status_event_time = time
            template.save(update_fields=["status", "status_event", "status_reason", "status_event_time", "updated_at"])
            if old != status:
                changes.append(
                    TemplateStatusChange(
                        template_id=template.id, old_status=old, new_status=status, event=word, reason=reason
                    )
                )
    return changes


def template_category_apply(
    *,
    waba_id: str,
    new_category: str,
    previous_category: str = "",
    meta_id: str = "",
    name: str | None = None,
    language: str | None = None,
) -> int:
    """Meta's ``template_category_update``: the template's category, once the change is final. Meta's advance
    notice (``correct_category``, no ``previous_category``) changes nothing. Returns the templates changed."""
    category = str(new_category or "").strip().upper()
    if not previous_category or category not in TEMPLATE_CATEGORIES:
        return 0
    templates = _templates_of_update(waba_id=waba_id, meta_id=meta_id, name=name, language=language)
    if templates is None:
        return 0
    return templates.exclude(category=category).update(category=category, updated_at=timezone.now())


def template_quality_apply(
    *, waba_id: str, quality: str, meta_id: str = "", name: str | None = None, language: str | None = None
) -> int:
    """Meta's ``message_template_quality_update``: the template's quality score (GREEN, YELLOW, RED, UNKNOWN).
    Returns the templates changed; another word changes nothing."""
    value = str(quality or "").strip().upper()
    if value not in TEMPLATE_QUALITIES:
        return 0
    templates = _templates_of_update(waba_id=waba_id, meta_id=meta_id, name=name, language=language)
    if templates is None:
        return 0
    return templates.exclude(quality=value).update(quality=value, updated_at=timezone.now())


def _template_fields(item: dict[str, Any]) -> dict[str, Any]:
    name = item.get("name")
    language = item.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        raise ApplicationError(f"The Graph API returned a template without name or language: {item.get('id')!r}.")
    components = item.get("components") if isinstance(item.get("components"), list) else []
    return {
        "name": name,
        "language": language,
        "components": components,
        "status": item.get("status") or Template.Status.PENDING,
        "category": item.get("category") or "",
        "parameter_format": item.get("parameter_format"),
        "meta_id": str(item.get("id") or ""),
    }
