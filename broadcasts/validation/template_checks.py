"""The rules of a body that need its template, run by the service once it has found the template
(``template_components_check``, ``template_recipients_check``)."""

from collections.abc import Sequence
from typing import Any

from broadcasts.validation.errors import Errors, error_add
from broadcasts.validation.request import BulkRequest
from whatsapp.template_components import MEDIA_FORMATS, ButtonSpec


def template_components_check(
    errors: Errors, *, request: BulkRequest, header_format: str, buttons: Sequence[ButtonSpec]
) -> None:
    """The rules that need the template (docs/api.md): header media of the header's type, buttons the template has,
    values within their button's bounds, and every parameter the template needs present for every recipient."""
    media_type = header_format.lower() if header_format in MEDIA_FORMATS else ""
    dynamic = {str(b.index): b for b in buttons if b.dynamic}
    known = {str(b.index): b for b in buttons}

    def media_ok(path: str, media: dict[str, str]) -> None:
        if not media_type:
            error_add(errors, path, "The template has no media header.")
        elif media["type"] != media_type:
            error_add(errors, f"{path}.type", f"The template's header is {header_format}: must be {media_type}.")

    if request.header_media is not None:
        media_ok("header_media", request.header_media)
    if media_type and request.header_media is None and not any(r.header_media for r in request.recipients):
        # Not one recipient has it: one error, not one per recipient.
        error_add(errors, "header_media", f"Required by the template's {header_format} header (here or per recipient).")
        media_type_required = False
    else:
        media_type_required = bool(media_type) and request.header_media is None
    if not dynamic and not media_type_required and not any(r.header_media or r.buttons for r in request.recipients):
        return
    for i, recipient in enumerate(request.recipients):
        if recipient.header_media is not None:
            media_ok(f"recipients[{i}].header_media", recipient.header_media)
        elif media_type_required:
            error_add(errors, f"recipients[{i}].header_media", f"Required by the template's {header_format} header.")
        given = recipient.buttons or {}
        for key, text in given.items():
            spec = known.get(key)
            if spec is None:
                error_add(errors, f"recipients[{i}].buttons.{key}", "The template has no button with this index.")
            elif not spec.dynamic:
                error_add(errors, f"recipients[{i}].buttons.{key}", f"The template's {spec.label} takes no parameter.")
            elif len(text) > spec.max_chars:
                error_add(
                    errors,
                    f"recipients[{i}].buttons.{key}",
                    f"At most {spec.max_chars} characters for the {spec.label}.",
                )
        for key, spec in dynamic.items():
            if key not in given:
                error_add(errors, f"recipients[{i}].buttons.{key}", f"Required by the template's {spec.label}.")


# Meta sends AUTHENTICATION templates to phone numbers only.
AUTHENTICATION_CATEGORY = "AUTHENTICATION"
NO_BSUID_FOR_AUTHENTICATION = "An AUTHENTICATION template goes to phone numbers only: give this recipient's to."


def template_recipients_check(errors: Errors, *, recipients: Any, category: str) -> None:
    """Recipients the template's category cannot reach (docs/api.md): a ``user_id`` (BSUID) recipient of an
    AUTHENTICATION template, each under ``recipients[i].user_id``. Reads the body's own list, so the paths are right
    even when other recipients were malformed (and left out of the parsed request)."""
    if category != AUTHENTICATION_CATEGORY or not isinstance(recipients, list):
        return
    for i, item in enumerate(recipients):
        path = f"recipients[{i}].user_id"
        if isinstance(item, dict) and item.get("user_id") is not None and path not in errors:
            error_add(errors, path, NO_BSUID_FOR_AUTHENTICATION)
