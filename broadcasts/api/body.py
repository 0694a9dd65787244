"""Reading a request body with a hard bound, before anything else looks at the request.

Django reads ``wsgi.input`` only up to ``Content-Length`` and ignores chunked bodies; DRF would
read a declared 1 GB body into memory. Here a body larger than ``API_MAX_BODY_BYTES`` is refused
with 413 from its header when it declares its length, and after at most that many bytes (plus
one) when it is chunked. Before answering 413 the rest of the body is drained up to
``DRAIN_LIMIT``: a server that closes a socket with unread data makes the kernel send a reset,
and the client then sees "connection reset" instead of our 413.
"""

from django.conf import settings
from django.http import HttpRequest

from core.errors import ApplicationError

_CHUNK = 256 * 1024
# Bytes we are willing to read and throw away so that the client can read the 413. Beyond this
# the connection is closed without draining (the client may see a reset; such a client is
# sending over 6 times the documented limit).
DRAIN_LIMIT = 64 * 1024 * 1024


def _too_large(limit: int) -> ApplicationError:
    return ApplicationError(
        f"The request body is larger than the {limit // (1024 * 1024)} MiB limit.",
        code="request_too_large",
        status=413,
        details={"body": [f"At most {limit} bytes."]},
    )


def _drain(stream, budget: int) -> None:
    while budget > 0:
        chunk = stream.read(min(_CHUNK, budget))
        if not chunk:
            return
        budget -= len(chunk)


def body_read(request: HttpRequest) -> bytes:
    """The raw body, at most ``API_MAX_BODY_BYTES``; 413 ``request_too_large`` beyond."""
    limit = settings.API_MAX_BODY_BYTES
    header = request.META.get("CONTENT_LENGTH") or ""
    if header:
        try:
            length = int(header)
        except ValueError:
            raise ApplicationError(
                "Invalid Content-Length header.", code="bad_request", details={"Content-Length": ["Not a number."]}
            ) from None
        if length > limit:
            # Django's LimitedStream stops at Content-Length: safe to drain through it.
            _drain(request, min(length, DRAIN_LIMIT))
            raise _too_large(limit)
        return request.body
    if "chunked" not in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return b""
    stream = request.META["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        _drain(stream, DRAIN_LIMIT)
        raise _too_large(limit)
    return b"".join(parts)
