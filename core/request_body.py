"""Every request body under /v1/ bounded before anything parses it (docs/api.md: 413 ``request_too_large``).

Django reads ``wsgi.input`` only up to ``Content-Length`` and ignores chunked bodies; DRF reads a
declared body whole into memory before its parser sees it. So ``BodySizeLimitMiddleware``
(core.middleware) runs this for every request under /v1/, before authentication and routing:

- a declared ``Content-Length`` over ``API_MAX_BODY_BYTES`` is refused from the header alone;
- a chunked body (no ``Content-Length``) is read at most ``API_MAX_BODY_BYTES`` + 1 bytes; one
  byte too many and it is refused; otherwise it is handed on as an ordinary body of known length,
  so every parser downstream (DRF's, the bulk views', Meta's webhook) reads it.

Before answering 413 the rest of the body is drained, in small reads thrown away, up to
``DRAIN_LIMIT``: a server that closes a socket with unread data makes the kernel send a reset,
and the client then sees "connection reset" instead of our 413.
"""

import io

from django.conf import settings
from django.http import HttpRequest

from core.errors import ApplicationError

READ_CHUNK = 256 * 1024
# Bytes we are willing to read and throw away so that the client can read the 413. Beyond this
# the connection is closed without draining (the client may see a reset; such a client is
# sending over 6 times the documented limit).
DRAIN_LIMIT = 64 * 1024 * 1024
_MIB = 1024 * 1024


def _too_large(limit: int) -> ApplicationError:
    size = f"{limit // _MIB} MiB" if limit % _MIB == 0 else f"{limit}-byte"
    return ApplicationError(
        f"The request body is larger than the {size} limit.",
        code="request_too_large",
        status=413,
        details={"body": [f"At most {limit} bytes."]},
    )


def _drain(stream, budget: int) -> None:
    while budget > 0:
        chunk = stream.read(min(READ_CHUNK, budget))
        if not chunk:
            return
        budget -= len(chunk)


def _declared_length(request: HttpRequest) -> int | None:
    header = request.META.get("CONTENT_LENGTH") or ""
    if not header:
        return None
    if not header.isascii() or not header.strip().isdigit():
        raise ApplicationError(
            "Invalid Content-Length header.", code="bad_request", details={"Content-Length": ["Not a number."]}
        )
    return int(header)


def body_bound(request: HttpRequest) -> None:
    """Refuses (413) a body over ``API_MAX_BODY_BYTES`` without keeping it; a chunked body within
    the limit is read and left on the request as if it had declared its length."""
    if hasattr(request, "_body"):
        return
    limit = settings.API_MAX_BODY_BYTES
    length = _declared_length(request)
    if length is not None:
        if length > limit:
            # Django's LimitedStream stops at Content-Length: safe to drain through it.
            _drain(request, min(length, DRAIN_LIMIT))
            raise _too_large(limit)
        return
    if "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return
    stream = request.META["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        parts.clear()
        _drain(stream, DRAIN_LIMIT)
        raise _too_large(limit)
    body = b"".join(parts)
    # Now an ordinary body of known length: Django's ``request.body`` and DRF's stream both read it.
    request._body = body
    request._stream = io.BytesIO(body)
    request.META["CONTENT_LENGTH"] = str(len(body))


def body_read(request: HttpRequest) -> bytes:
    """The raw body, at most ``API_MAX_BODY_BYTES``; 413 ``request_too_large`` beyond."""
    body_bound(request)
    return request.body
