"""The single place that shapes API errors into the contract's envelope (CONTRACT section 7).

{"error": {"code": "...", "message": "...", "details": {...}}}
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import ApplicationError

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


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


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
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "The request body is larger than the 10 MiB limit."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if not isinstance(exc, exceptions.APIException):
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("internal_error", "An unexpected error occurred; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    code = next((c for klass, c in _CODES if isinstance(exc, klass)), None)
    if code is None:
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
    headers: dict[str, str] = {}
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        # CONTRACT 3: every 401 carries the challenge "WWW-Authenticate: Bearer".
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or "Bearer"
        exc.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))

    if isinstance(exc, exceptions.ValidationError):
        details = _flatten(exc.detail)
        message = "The request is invalid; see details."
    else:
        details = {}
        message = str(exc.detail) if not isinstance(exc.detail, (list, dict)) else "Request failed."
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)
