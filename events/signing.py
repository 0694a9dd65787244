"""What a customer receives and how it is signed (CONTRACT section 9): the exact body bytes and the
``X-Webhook-Signature`` over them."""

import hashlib
import hmac

import orjson

from core.timefmt import iso_utc
from events.models import Event


def event_body(*, event: Event) -> bytes:
    """The exact bytes POSTed: identical on every retry (only the timestamp header changes)."""
    return orjson.dumps(
        {"id": event.id, "type": event.type, "created_at": iso_utc(event.created_at), "data": event.data}
    )


def signature_make(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(key = secret UTF-8, message = "<timestamp>.<raw body>")>``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"
