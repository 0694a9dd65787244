"""What a customer receives and how it is signed (docs/api.md): the exact body bytes, the secrets, and the
two signature schemes over them, side by side on every POST:

* ours: ``X-Webhook-Id``, ``X-Webhook-Timestamp``, ``X-Webhook-Signature: v1=<hex HMAC-SHA256(key = the secret's
  UTF-8 bytes, message = "<timestamp>.<raw body>")>``;
* Standard Webhooks (https://www.standardwebhooks.com, what the ``standardwebhooks`` and svix verifiers check):
  ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256(key = base64-decoded part of
  the secret after "whsec_", message = "<id>.<timestamp>.<raw body>")>``.

During a secret rotation's overlap both headers carry one signature per secret, newest first, space-separated.
"""

import base64
import binascii
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Sequence
from datetime import datetime

import orjson

from core.timefmt import iso_utc
from events.models import Event, WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def event_body(*, event: Event) -> bytes:
    """The exact bytes POSTed: identical on every retry (only the timestamp header changes)."""
    return orjson.dumps(
        {"id": event.id, "type": event.type, "created_at": iso_utc(event.created_at), "data": event.data}
    )


def secret_generate() -> str:
    """``whsec_`` + standard base64 of 32 random bytes: the form the Standard Webhooks libraries read."""
    return SECRET_PREFIX + base64.b64encode(random_secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key: the part after ``whsec_``, base64-decoded.

    Secrets issued before the Standard Webhooks headers were ``whsec_`` + url-safe base64 without padding
    (``secrets.token_urlsafe(32)``); they decode here with either alphabet, padding or not, to their 32 bytes.
    (Such a secret without ``-`` or ``_`` is the same string in both alphabets, so a Standard Webhooks library
    reads it as it is; one with them is read by those libraries only as key bytes, see docs/webhooks.md.)
    """
    encoded = secret.removeprefix(SECRET_PREFIX).strip().rstrip("=")
    try:
        return base64.b64decode(encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        # Not base64 at all (never issued by us): the bytes themselves, so that signing never fails.
        return encoded.encode("utf-8")


def signature_make(*, secret: str, timestamp: int, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256(key = secret UTF-8, message = "<timestamp>.<raw body>")>``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def standard_signature_make(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256(key = standard_key(secret), message = "<id>.<timestamp>.<raw body>")>``."""
    digest = hmac.new(standard_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signing_secrets(*, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The endpoint's current secret, then its previous one while the rotation's overlap lasts."""
    current = [endpoint.secret]
    previous = endpoint.previous_secret
    expires_at = endpoint.previous_secret_expires_at
    if previous and expires_at is not None and now < expires_at and previous != endpoint.secret:
        current.append(previous)
    return current


def signature_headers(*, secrets: Sequence[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The six signature headers of one POST, one signature per secret (newest first) in each scheme."""
    if not secrets:
        raise ValueError("At least one secret is needed to sign.")
    return {
        "X-Webhook-Id": message_id,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": " ".join(signature_make(secret=s, timestamp=timestamp, body=body) for s in secrets),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature_make(secret=s, message_id=message_id, timestamp=timestamp, body=body) for s in secrets
        ),
    }
