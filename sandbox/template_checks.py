"""The parameters a template send must carry, checked as Meta checks them against the sandbox's template registry
(what `GET /{waba_id}/message_templates` serves; `POST /_sandbox/templates` sets it).

- a template whose header is IMAGE / VIDEO / DOCUMENT needs a header parameter of that type with a `link` or an
  `id`: else Meta's 132012 (parameter format does not match the template);
- a URL button whose URL holds `{{1}}` (and an authentication template's OTP button, shown by Meta as URL) needs a
  `button` component of `sub_type` url at its index with a text parameter; a COPY_CODE button needs one of
  `sub_type` copy_code with a `coupon_code`; an authentication template also needs its body's code: else 131008
  (required parameter is missing).

A template the registry does not hold is not checked (sends of ad-hoc test templates go through as before). The
sandbox keeps this knowledge apart from the service's own (whatsapp/template_components.py) on purpose: it plays
Meta, so a bug on one side must not hide in the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z0-9_]+\s*\}\}")
MEDIA = ("IMAGE", "VIDEO", "DOCUMENT")


@dataclass(frozen=True, slots=True)
class Needs:
    media: str = ""  # "image", "video", "document" or ""
    url_buttons: tuple[int, ...] = ()
    copy_code_buttons: tuple[int, ...] = ()
    body_code: bool = False  # an authentication template: the body's {{1}} is the code
    category: str = ""  # MARKETING, UTILITY, AUTHENTICATION (upper case), "" when the registry gives none


def needs_of(template: dict[str, Any]) -> Needs:
    """What a send of this registry template must carry."""
    category = str(template.get("category") or "").upper()
    auth = category == "AUTHENTICATION"
    media, urls, coupons = "", [], []
    for component in template.get("components") or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER" and str(component.get("format", "")).upper() in MEDIA:
            media = str(component["format"]).lower()
        elif kind == "BUTTONS" and isinstance(component.get("buttons"), list):
            for index, button in enumerate(component["buttons"]):
                if not isinstance(button, dict):
                    continue
                button_type = str(button.get("type", "")).upper()
                if button_type == "OTP" or (auth and button_type == "URL"):
                    urls.append(index)
                elif button_type == "URL" and _PLACEHOLDER.search(str(button.get("url", ""))):
                    urls.append(index)
                elif button_type == "COPY_CODE":
                    coupons.append(index)
    return Needs(media, tuple(urls), tuple(coupons), auth and bool(urls), category)


def _button(components: list[dict[str, Any]], sub_type: str, index: int) -> dict[str, Any] | None:
    for component in components:
        if (
            str(component.get("type", "")).lower() == "button"
            and str(component.get("sub_type", "")).lower() == sub_type
            and str(component.get("index", "")) == str(index)
        ):
            return component
    return None


def _first_parameter(component: dict[str, Any] | None) -> dict[str, Any] | None:
    parameters = component.get("parameters") if component else None
    if isinstance(parameters, list) and parameters and isinstance(parameters[0], dict):
        return parameters[0]
    return None


def send_problem(needs: Needs, components: list[dict[str, Any]]) -> tuple[int, str] | None:
    """(Meta's error code, details) for what this send's components lack, or None."""
    if needs.media:
        header = next((c for c in components if str(c.get("type", "")).lower() == "header"), None)
        parameter = _first_parameter(header)
        media = parameter.get(needs.media) if parameter and parameter.get("type") == needs.media else None
        if not isinstance(media, dict) or not (media.get("link") or media.get("id")):
            return 132012, f"header: expected a parameter of type {needs.media} with a link or an id"
    for index in needs.url_buttons:
        parameter = _first_parameter(_button(components, "url", index))
        if not parameter or parameter.get("type") != "text" or not parameter.get("text"):
            return 131008, f"buttons: the URL button at index {index} needs a text parameter"
    for index in needs.copy_code_buttons:
        parameter = _first_parameter(_button(components, "copy_code", index))
        if not parameter or parameter.get("type") != "coupon_code" or not parameter.get("coupon_code"):
            return 131008, f"buttons: the copy code button at index {index} needs a coupon_code parameter"
    if needs.body_code:
        body = next((c for c in components if str(c.get("type", "")).lower() == "body"), None)
        parameter = _first_parameter(body)
        if not parameter or not parameter.get("text"):
            return 131008, "body: the authentication template needs its code as the body's parameter"
    return None


class TemplateChecks:
    """The registry's templates by (name, language), rebuilt when a test sets other templates."""

    def __init__(self) -> None:
        self._key: tuple = ()
        self._needs: dict[tuple[str, str], Needs] = {}

    def _lookup(self, registry: dict[Any, list[dict[str, Any]]], template: dict[str, Any]) -> Needs | None:
        key = tuple((k, id(v), len(v)) for k, v in registry.items())
        if key != self._key:
            index: dict[tuple[str, str], Needs] = {}
            for templates in registry.values():
                for item in templates:
                    if isinstance(item, dict):
                        index.setdefault((str(item.get("name")), str(item.get("language"))), needs_of(item))
            self._key, self._needs = key, index
        return self._needs.get((template["name"], template["language"]["code"]))

    def category(self, registry: dict[Any, list[dict[str, Any]]], template: dict[str, Any]) -> str:
        """The registry's category of the sent template (upper case), "" for a template it does not hold."""
        needs = self._lookup(registry, template)
        return needs.category if needs is not None else ""

    def problem(self, registry: dict[Any, list[dict[str, Any]]], template: dict[str, Any]) -> tuple[int, str] | None:
        needs = self._lookup(registry, template)
        if needs is None or not (needs.media or needs.url_buttons or needs.copy_code_buttons):
            return None
        return send_problem(needs, template.get("components") or [])
