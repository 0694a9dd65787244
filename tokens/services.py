"""Access tokens: creation, authentication and revocation."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError
from tokens.models import AccessToken, Organization
from tokens.scopes import KNOWN_SCOPES

TOKEN_PREFIX = "kbai_pk_"
TOKEN_RE = re.compile(r"^kbai_pk_[A-Za-z0-9_-]{32,128}$")
# last_used_at is written at most once a minute per token, not on every request.
LAST_USED_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class IssuedToken:
    token: AccessToken
    secret: str  # the whole "kbai_pk_..." string; shown once, never stored


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def scopes_parse(raw: str | list[str]) -> list[str]:
    """Validates a comma-separated (or list) scope set; unknown scopes are an error."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = [s.strip() for s in items if s.strip()]
    if not scopes:
        raise ApplicationError("At least one scope is required.", details={"scopes": ["Required."]})
    unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
    if unknown:
        raise ApplicationError(
            f"Unknown scope(s): {', '.join(unknown)}. Known scopes: {', '.join(KNOWN_SCOPES)}.",
            details={"scopes": [f"Unknown scope: {s}" for s in unknown]},
        )
    return list(dict.fromkeys(scopes))


def token_create(
    *,
    organization: Organization,
    scopes: list[str] | str,
    name: str = "",
    expires_at: datetime | None = None,
    created_by=None,
) -> IssuedToken:
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = AccessToken.objects.create(
        organization=organization,
        name=name,
        scopes=scopes_parse(scopes),
        token_hash=token_hash(raw),
        prefix=raw[: AccessToken.PREFIX_LENGTH],
        expires_at=expires_at,
        created_by=created_by,
    )
    return IssuedToken(token=token, secret=raw)


def token_authenticate(*, raw: str) -> AccessToken | None:
    """The live token for ``raw``, or None when it is malformed, unknown, revoked or expired."""
    if not TOKEN_RE.match(raw):
        return None
    token = AccessToken.objects.select_related("organization").filter(token_hash=token_hash(raw)).first()
    if token is None or token.is_revoked or token.is_expired():
        return None
    _touch_last_used(token)
    return token


def _touch_last_used(token: AccessToken) -> None:
    # cache.add is atomic: one process per minute per token wins and writes.
    if cache.add(f"token-last-used:{token.pk}", 1, timeout=LAST_USED_RESOLUTION_SECONDS):
        now = timezone.now()
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def token_revoke(*, token_or_prefix: str) -> AccessToken:
    """Revokes a token given whole or by its 16-character display prefix."""
    value = token_or_prefix.strip()
    if len(value) > AccessToken.PREFIX_LENGTH:
        matches = AccessToken.objects.filter(token_hash=token_hash(value))
    else:
        matches = AccessToken.objects.filter(prefix=value)
    found = list(matches[:2])
    if not found:
        raise ApplicationError("No token matches that value.", code="not_found", status=404)
    if len(found) > 1:
        raise ApplicationError(
            "That prefix matches more than one token; give the whole token.", code="conflict", status=409
        )
    token = found[0]
    if token.revoked_at is None:
        AccessToken.objects.filter(Q(pk=token.pk), Q(revoked_at__isnull=True)).update(revoked_at=timezone.now())
        token.refresh_from_db()
    return token
