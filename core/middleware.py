"""Request-wide middleware: the request id (docs/operations.md), the body size limit and the rate-limit headers
(docs/api.md)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import LazyObject

from core import logging as core_logging
from core import request_body
from core.api import throttling
from core.api.exception_handler import error_body
from core.errors import ApplicationError

REQUEST_ID_HEADER = "X-Request-Id"
# A client's id is kept when it is 1-128 visible ASCII characters (no space, no control character): safe to log and
# to echo in a header. Anything else is replaced by a new id.
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def request_id_from(request: HttpRequest) -> str:
    """The request's ``X-Request-Id`` when given and sane, else a new one (32 hex characters)."""
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    if given and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """First in the chain: every response (API, admin, health, webhooks, every error) carries ``X-Request-Id``,
    and every log line written while the request is served carries it as ``request_id``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request)
        request.request_id = request_id
        token = core_logging.request_id_set(request_id)
        try:
            response = self.get_response(request)
        finally:
            core_logging.request_id_reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class BodySizeLimitMiddleware:
    """Right after the request id: no body under /v1/ over ``API_MAX_BODY_BYTES`` reaches a view, a parser or
    authentication (core/request_body.py). Whatever the method and whether a route exists: a 413 never depends on
    the token, the path or the view, and a new endpoint is covered without doing anything."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            try:
                request_body.body_bound(request)
            except ApplicationError as exc:
                return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status)
        return self.get_response(request)


class RateLimitHeadersMiddleware:
    """``RateLimit-Policy`` and ``RateLimit`` on every response to a request made with a valid token, 429s included.

    The throttle leaves what it counted on the request; a response the throttle never saw (a 403 for a missing
    scope is decided before throttling) reads the counters once.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        state = getattr(request, throttling.REQUEST_ATTRIBUTE, None)
        if state is None:
            # DRF puts the authenticated principal on the Django request; a session user stays a lazy object,
            # untouched (no session query for this).
            user = request.__dict__.get("user")
            token = None if isinstance(user, LazyObject) else getattr(user, "token", None)
            if token is not None and getattr(token, "pk", None) is not None:
                try:
                    state = throttling.rate_limit_peek(token.pk, getattr(token, "organization_id", None))
                except Exception:  # noqa: BLE001 - headers are informative; a cache outage must not fail the answer
                    state = None
        if state is not None:
            for name, value in throttling.rate_limit_headers(state).items():
                response[name] = value
        return response
