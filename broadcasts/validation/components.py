"""``header_media`` and ``buttons`` well formed, before the template is known (docs/api.md): the broadcast's
``header_media`` and each recipient's own ``header_media`` and ``buttons``. Whether they fit the template is
``template_checks``'s."""

import re
from typing import Any
from urllib.parse import urlsplit

from broadcasts.validation.errors import Errors, error_add

# header_media (docs/api.md): Meta fetches a link over HTTPS; media ids are numbers; a document's filename is shown.
MEDIA_TYPES = ("image", "video", "document")
MEDIA_FIELDS = frozenset({"type", "link", "id", "filename"})
MAX_MEDIA_LINK = 2048
MAX_MEDIA_ID = 64
MAX_MEDIA_FILENAME = 240
# buttons: Meta allows at most 10 buttons; a value is bounded by its button's kind (whatsapp.template_components),
# and before the template is known by the longest any kind allows (a URL button's whole URL: 2000).
MAX_BUTTONS = 10
MAX_BUTTON_VALUE = 2000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def header_media_clean(errors: Errors, path: str, value: Any) -> dict[str, str] | None:
    """A well-formed ``{"type", "link" | "id", "filename"?}``, or None (absent, null, or with its errors added)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        error_add(errors, path, 'Must be an object {"type", "link" or "id", "filename"?}.')
        return None
    before = len(errors)
    for key in sorted(k for k in value if k not in MEDIA_FIELDS)[:10]:
        error_add(errors, f"{path}.{key[:64]}", "Unknown field.")
    kind = value.get("type")
    if kind is None:
        error_add(errors, f"{path}.type", "This field is required.")
    elif kind not in MEDIA_TYPES:
        error_add(errors, f"{path}.type", "Must be one of image, video, document.")
    link, media_id = value.get("link"), value.get("id")
    if link is not None and media_id is not None:
        error_add(errors, path, "Give exactly one of link and id, not both.")
    elif link is None and media_id is None:
        error_add(errors, path, "Give exactly one of link and id.")
    elif link is not None:
        problem = _media_link_problem(link)
        if problem:
            error_add(errors, f"{path}.link", problem)
    elif not isinstance(media_id, str) or not media_id.isascii() or not media_id.isdigit():
        error_add(errors, f"{path}.id", "Must be Meta's media id: a string of digits.")
    elif len(media_id) > MAX_MEDIA_ID:
        error_add(errors, f"{path}.id", f"At most {MAX_MEDIA_ID} characters.")
    filename = value.get("filename")
    if filename is not None:
        if kind != "document":
            error_add(errors, f"{path}.filename", "Only a document has a filename.")
        elif not isinstance(filename, str) or not filename.strip():
            error_add(errors, f"{path}.filename", "Must be a non-empty string.")
        elif len(filename) > MAX_MEDIA_FILENAME:
            error_add(errors, f"{path}.filename", f"At most {MAX_MEDIA_FILENAME} characters.")
        elif _CONTROL.search(filename):
            error_add(errors, f"{path}.filename", "May not contain control characters.")
    if len(errors) != before:
        return None
    media = {"type": kind, "id": media_id} if media_id is not None else {"type": kind, "link": link}
    if filename is not None:
        media["filename"] = filename
    return media


def _media_link_problem(link: Any) -> str | None:
    if not isinstance(link, str):
        return "Must be a string: an https URL."
    if len(link) > MAX_MEDIA_LINK:
        return f"At most {MAX_MEDIA_LINK} characters."
    if _CONTROL.search(link) or " " in link:
        return "Must be an https URL without spaces or control characters."
    try:
        parts = urlsplit(link)
        host = parts.hostname
    except ValueError:
        return "Must be an https URL."
    if parts.scheme.lower() != "https" or not host:
        return "Must be an https URL (Meta fetches the media over HTTPS)."
    return None


def buttons_clean(errors: Errors, path: str, value: Any) -> dict[str, str] | None:
    """Button parameters by index ``{"0": "..."}`` with string values, or None (absent, null or invalid)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        error_add(errors, path, 'Must be an object of strings by button index, e.g. {"0": "ABC123"}.')
        return None
    if len(value) > MAX_BUTTONS:
        error_add(errors, path, f"At most {MAX_BUTTONS} buttons.")
        return None
    ok = True
    for key, text in value.items():
        if not (key.isascii() and key.isdigit() and len(key) <= 2 and int(key) < MAX_BUTTONS and str(int(key)) == key):
            error_add(errors, f"{path}.{key[:16]}", f"Keys are button indexes: 0 to {MAX_BUTTONS - 1}.")
            ok = False
        elif not isinstance(text, str):
            error_add(errors, f"{path}.{key}", "Must be a string.")
            ok = False
        elif not text.strip():
            error_add(errors, f"{path}.{key}", "May not be blank.")
            ok = False
        elif len(text) > MAX_BUTTON_VALUE:
            error_add(errors, f"{path}.{key}", f"At most {MAX_BUTTON_VALUE} characters.")
            ok = False
        elif _CONTROL.search(text):
            error_add(errors, f"{path}.{key}", "May not contain control characters.")
            ok = False
    return value if ok else None
