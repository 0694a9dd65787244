"""Template updates, one per change: ``message_template_status_update`` (``TemplateStatusUpdate``),
``template_category_update`` (``TemplateCategoryUpdate``) and ``message_template_quality_update``
(``TemplateQualityUpdate``), each with the entry's WABA id and ``time``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from whatsapp.inbound.changes import Change

TEMPLATE_STATUS_FIELD = "message_template_status_update"
TEMPLATE_CATEGORY_FIELD = "template_category_update"
TEMPLATE_QUALITY_FIELD = "message_template_quality_update"


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
