"""What a template's components need at send time (docs/api.md and docs/rules.md): its header format and its buttons.

Pure Meta knowledge over the components as ``GET /{waba_id}/message_templates`` returns them:

- the header's ``format``: TEXT (placeholders filled from variables), IMAGE / VIDEO / DOCUMENT (a media object must
  be sent: ``header_media``), LOCATION (not supported by the bulk API: no parameter is sent);
- each button of the BUTTONS component, by its index (its position, 0-based, as Meta counts it at send time):
  a URL button whose ``url`` holds a ``{{1}}`` placeholder takes the URL's dynamic suffix; a COPY_CODE button (a
  marketing coupon) takes the coupon code; an OTP button of an AUTHENTICATION template (Meta creates it as ``OTP``
  and shows it as ``URL`` afterwards) takes the one-time code, which is also the body's ``{{1}}``. Quick replies,
  phone numbers and static URLs take nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

MEDIA_FORMATS = frozenset({"IMAGE", "VIDEO", "DOCUMENT"})
HEADER_FORMATS = frozenset({"TEXT", "IMAGE", "VIDEO", "DOCUMENT", "LOCATION"})
# Kinds of button parameter (ButtonSpec.kind).
URL = "url"  # the dynamic suffix of a URL button
COPY_CODE = "copy_code"  # a marketing coupon code
OTP = "otp"  # the one-time code of an authentication template (copy-code, one-tap or zero-tap button)
STATIC = "static"  # a button that takes no parameter (quick reply, phone number, static URL, ...)
# Meta's bounds: a URL button's whole URL is at most 2000 characters; coupon codes and one-time codes at most 15.
URL_MAX_CHARS = 2000
COPY_CODE_MAX_CHARS = 15
OTP_MAX_CHARS = 15
_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z0-9_]+\s*\}\}")


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """One button of a template: its index, Meta's type, and what parameter it takes at send time."""

    index: int
    type: str  # Meta's button type, upper case (URL, COPY_CODE, OTP, QUICK_REPLY, PHONE_NUMBER, ...)
    kind: str  # URL, COPY_CODE, OTP or STATIC above
    max_chars: int = 0  # the longest value its parameter may be (0 when it takes none)

    @property
    def dynamic(self) -> bool:
        return self.kind != STATIC

    @property
    def label(self) -> str:
        """How an error names it: "URL button", "copy-code button", "one-time-code button"."""
        return {URL: "URL button", COPY_CODE: "copy-code button", OTP: "one-time-code button"}.get(
            self.kind, f"{self.type} button"
        )


def _components(components: Any) -> Iterable[dict[str, Any]]:
    return (c for c in components if isinstance(c, dict)) if isinstance(components, list) else ()


def header_format(components: Any) -> str:
    """The header's format (TEXT, IMAGE, VIDEO, DOCUMENT, LOCATION), or "" for a template without a header."""
    for component in _components(components):
        if str(component.get("type", "")).upper() == "HEADER":
            value = str(component.get("format") or "TEXT").upper()
            return value if value in HEADER_FORMATS else "TEXT"
    return ""


def template_buttons(components: Any, *, category: str = "") -> tuple[ButtonSpec, ...]:
    """The template's buttons in index order, each with the parameter it takes."""
    authentication = str(category or "").upper() == "AUTHENTICATION"
    for component in _components(components):
        if str(component.get("type", "")).upper() != "BUTTONS":
            continue
        buttons = component.get("buttons")
        if not isinstance(buttons, list):
            return ()
        specs = []
        for index, button in enumerate(buttons):
            kind_of = str(button.get("type", "")).upper() if isinstance(button, dict) else ""
            url = button.get("url") if isinstance(button, dict) and isinstance(button.get("url"), str) else ""
            if kind_of == "OTP" or (authentication and kind_of == "URL"):
                specs.append(ButtonSpec(index, kind_of, OTP, OTP_MAX_CHARS))
            elif kind_of == "URL" and _PLACEHOLDER.search(url):
                static_part = len(_PLACEHOLDER.sub("", url))
                specs.append(ButtonSpec(index, kind_of, URL, max(1, URL_MAX_CHARS - static_part)))
            elif kind_of == "COPY_CODE":
                specs.append(ButtonSpec(index, kind_of, COPY_CODE, COPY_CODE_MAX_CHARS))
            else:
                specs.append(ButtonSpec(index, kind_of or "UNKNOWN", STATIC))
        return tuple(specs)
    return ()


def otp_index(buttons: Sequence[ButtonSpec]) -> int | None:
    """The index of the button carrying an authentication template's one-time code, or None."""
    return next((b.index for b in buttons if b.kind == OTP), None)
