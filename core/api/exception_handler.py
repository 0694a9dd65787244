"""The single place that shapes API errors into the contract's envelope (docs/api.md).

{"error": {"code": "...", "message": "...", "details": {...}, "request_id": "..."}}

``request_id`` is the request's ``X-Request-Id`` (core.middleware), so a client can quote it and an
operator find the request's log lines.
"""

import logging
from typing import Any

import orjson
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.http import Http404
from kombu.exceptions import OperationalError as BrokerError
from psycopg import InterfaceError as PsycopgInterfaceError
from psycopg import OperationalError as PsycopgOperationalError
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import ApplicationError, RateLimitedError
from core.logging import request_id_get

logger = logging.getLogger(__name__)

# DRF exception class -> (contract code, HTTP status); the first match wins.
_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.ParseError, "invalid_json"),
    (exceptions.ValidationError, "validation_error"),
    (exceptions.NotAuthenticated, "unauthorized"),
    (exceptions.AuthenticationFailed, "unauthorized"),
    (exceptions.PermissionDenied, "insufficient_scope"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "rate_limited"),
]


# A server we depend on is down or unreachable (docs/rules.md): the request could not be served now and
# may be retried as it is. ``psycopg``'s own classes too: a raw cursor's ``copy()`` is not wrapped
# by Django's error translation. Nothing else becomes a 503: a bug must stay visible as a 500.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    DjangoOperationalError,
    DjangoInterfaceError,
    PsycopgOperationalError,
    PsycopgInterfaceError,
    RedisError,
    BrokerError,
)
# Seconds a client is asked to wait before retrying a 503: a Redis or PostgreSQL restart takes a few.
OUTAGE_RETRY_AFTER_SECONDS = 5


class ErrorResponse(Response):
    """An error is JSON whatever the view renders otherwise (the schema's YAML, the docs' HTML) and
    whatever the client accepts: the envelope of docs/api.md, never content-negotiated away."""

    @property
    def rendered_content(self) -> bytes:
        self["Content-Type"] = "application/json"
        return orjson.dumps(self.data)


def is_outage(exc: BaseException | None) -> bool:
    """True for an error that means PostgreSQL, Redis or the broker cannot be reached right now."""
    while exc is not None:
        if isinstance(exc, OUTAGE_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def outage_body() -> dict[str, Any]:
    return error_body(
        "service_unavailable",
        "A backing service (database or Redis) is unavailable; retry shortly.",
        {"retry_after_seconds": OUTAGE_RETRY_AFTER_SECONDS},
    )


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope; inside a request it carries the request's id (every builder of an error goes through here)."""
    body: dict[str, Any] = {"code": code, "message": message, "details": details or {}}
    request_id = request_id_get()
    if request_id is not None:
        body["request_id"] = request_id
    return {"error": body}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turns DRF's nested error detail into ``{"path.to[3].field": ["message", ...]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                path = prefix or "body"
            elif isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.setdefault(prefix or "body", []).extend(str(item) for item in detail)
        else:
            for i, item in enumerate(detail):
                if item:
                    out.update(_flatten(item, f"{prefix}[{i}]"))
    else:
        out.setdefault(prefix or "body", []).append(str(detail))
    return out


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        # Every 503 (health, outages) tells the client when to come back.
        retry = {"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)} if exc.status == 503 else None
        if isinstance(exc, RateLimitedError):
            retry = {"Retry-After": str(exc.retry_after_seconds)}
        return ErrorResponse(error_body(exc.code, exc.message, exc.details), status=exc.status, headers=retry)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return ErrorResponse(
            error_body("request_too_large", "The request body is larger than the 10 MiB limit."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, SuspiciousOperation):
        # Too many query/form fields, a malformed multipart body, ...: the request's fault.
        return ErrorResponse(error_body("bad_request", str(exc) or "The request could not be understood."), status=400)
    if not isinstance(exc, exceptions.APIException):
        if is_outage(exc):
            # Fail closed: without its database or Redis (throttle counters) the API cannot serve
            # the request safely; the client retries it unchanged.
            logger.warning("API request refused, a backing service is down: %s", exc.__class__.__name__)
            return ErrorResponse(outage_body(), status=503, headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)})
        logger.exception("Unhandled API error", exc_info=exc)
        return ErrorResponse(
            error_body("internal_error", "An unexpected error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = next((c for klass, c in _CODES if isinstance(exc, klass)), None)
    if code is None:
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
    headers: dict[str, str] = {}
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # docs/api.md: every 401 carries the challenge "WWW-Authenticate: Bearer".
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or "Bearer"
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    details: dict[str, Any] = {}
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        retry_after = max(1, int(exc.wait + 0.999))
        headers["Retry-After"] = str(retry_after)
        # whose limit: "token" or "org" (core.api.throttling.RateLimited)
        details = {"retry_after_seconds": retry_after, "limit": getattr(exc, "scope", "token")}

    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        message = "The request is invalid; see details."
    else:
        message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else "Request failed."
    return ErrorResponse(error_body(code, message, details), status=exc.status_code, headers=headers)
