"""The recipients listing's two formats, JSON pages and CSV: chosen by ``?format=`` or, without it, by the
Accept header (docs/api.md)."""

from typing import Any

from rest_framework import exceptions
from rest_framework.request import Request

from core.api.base import ExactContentNegotiation
from core.errors import ApplicationError


class RecipientsNegotiation(ExactContentNegotiation):
    """``?format=`` is the recipients view's own parameter (json | csv), read by the view: not DRF's renderer
    override (which would answer an unknown one with a bare 404). ``Accept: text/csv`` is the view's to honour
    too: the JSON renderer stays selected (errors are JSON envelopes whatever was asked), and the view streams the
    CSV itself."""

    settings = type("NoFormatOverride", (), {"URL_FORMAT_OVERRIDE": None})()

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> Any:
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except exceptions.NotAcceptable:
            if "csv" not in _accepted(request.META.get("HTTP_ACCEPT", "")):
                raise
            return renderers[0], renderers[0].media_type


RECIPIENT_FORMATS = ("json", "csv")
_ACCEPT_FORMATS = {"application/json": "json", "text/csv": "csv", "*/*": "json", "application/*": "json"}


def _accepted(header: str) -> list[str]:
    """The formats an Accept header names, most preferred first (by q, then order): ["csv", "json"], ...; media
    types of neither are left out, as are those with q=0. Bounded work: at most the first 32 entries are read."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):
        media_type, *params = (piece.strip() for piece in part.split(";"))
        found = _ACCEPT_FORMATS.get(media_type.lower())
        if found is None:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, position, found))
    return [found for _, _, found in sorted(ranked)]


def format_of(request: Request) -> str:
    """``?format=`` when given (json | csv, any case; anything else is a 400), else what Accept prefers of
    application/json and text/csv; JSON by default."""
    value = request.query_params.get("format")
    if value is not None:
        if value.lower() in RECIPIENT_FORMATS:
            return value.lower()
        raise ApplicationError(
            "Invalid format.", details={"format": ["Must be one of: " + ", ".join(RECIPIENT_FORMATS) + "."]}
        )
    accepted = _accepted(request.META.get("HTTP_ACCEPT", ""))
    return accepted[0] if accepted else "json"
