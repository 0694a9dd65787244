"""``Idempotency-Key`` support for ``POST /v1/messages/bulk`` (docs/api.md).

A key is remembered per organization for 24 h with a hash of the request body and the 202 body
it got. The unique constraint (organization, key) is what makes it safe under concurrency: two
requests racing with one key both try to insert, the second blocks on the index until the first
commits, fails, and then replays the first one's answer.
"""

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.utils import timezone

from broadcasts.models import IdempotencyRecord
from core.errors import ApplicationError, ConflictError
from tokens.models import Organization

IDEMPOTENCY_TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
# Printable ASCII, like the IETF draft's examples (UUIDs, ULIDs); the column holds 255.
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def idempotency_key_validate(*, key: str | None) -> str | None:
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise ApplicationError(
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
            details={HEADER: ["Must be 1 to 255 printable ASCII characters without spaces."]},
        )
    return key


def request_hash(*, body: Any) -> str:
    """Hash of the parsed body with sorted keys: the same JSON with other spacing is the same body.

    The API's parser bounds the depth far below what orjson can write; a body from elsewhere
    that orjson cannot write is refused like any other invalid body.
    """
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        raise ApplicationError(
            "The request body cannot be canonicalised for its Idempotency-Key.",
            details={"body": ["Nested too deep or holds values JSON cannot represent."]},
        ) from None
    return hashlib.sha256(canonical).hexdigest()


def idempotency_cutoff(*, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - IDEMPOTENCY_TTL


def idempotency_replay(*, organization: Organization, key: str, body_hash: str) -> dict[str, Any] | None:
    """The stored 202 body for a live key with the same body; 409 for a different body."""
    record = (
        IdempotencyRecord.objects.filter(organization=organization, key=key, created_at__gte=idempotency_cutoff())
        .only("request_hash", "response_body")
        .first()
    )
    if record is None:
        return None
    if record.request_hash != body_hash:
        raise ConflictError(
            "This Idempotency-Key was already used with a different request body.",
            details={HEADER: ["Already used with a different body within 24 hours."]},
        )
    return record.response_body


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete records older than 24 h (for a periodic task); lookups ignore them anyway."""
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=idempotency_cutoff(now=now)).delete()
    return deleted
