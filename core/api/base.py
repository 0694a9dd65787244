"""The base of every token-protected API view."""

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.ids import is_object_id


class ExactContentNegotiation(DefaultContentNegotiation):
    """A body is parsed only when its Content-Type names the parser's type exactly (parameters
    aside): DRF's default reads ``*/*`` or ``application/*`` as JSON; here they are 415."""

    def select_parser(self, request: Request, parsers: list) -> Any:
        media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
        return next((parser for parser in parsers if parser.media_type == media_type), None)


class ApiView(APIView):
    """Checks the ids in the path once the caller is known, before any handler or query sees them.

    Every URL argument named ``*_id`` is one of our ObjectIds (24 lowercase hex characters). A
    segment of any other shape (NUL, non-hex, 5000 characters, ...) names nothing that can exist:
    404 ``not_found``, after authentication (so a request without a token still gets its 401)
    and without a query (PostgreSQL refuses NUL in text, and a bad id must not cost a lookup).
    """

    content_negotiation_class = ExactContentNegotiation

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        for name, value in kwargs.items():
            if name.endswith("_id") and not is_object_id(value):
                raise NotFoundError()
