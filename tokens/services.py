"""Organizations and access tokens: creation, authentication and revocation."""

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from core.errors import ApplicationError
from tokens import limits
from tokens.models import AccessToken, Organization
from tokens.scopes import KNOWN_SCOPES

TOKEN_PREFIX = "kbai_pk_"
TOKEN_RE = re.compile(r"^kbai_pk_[A-Za-z0-9_-]{32,128}$")
# last_used_at is written at most once a minute per token, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedToken:
    token: AccessToken
    secret: str  # the whole "kbai_pk_..." string; shown once, never stored


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def organization_get_or_create(*, name: str) -> tuple[Organization, bool]:
    """The organization called ``name``, created when missing (bootstrap commands, demo seed)."""
    clean = (name or "").strip()
    if not clean:
        raise ApplicationError("The organization name must not be blank.", details={"org": ["Required."]})
    if len(clean) > Organization._meta.get_field("name").max_length:
        raise ApplicationError("The organization name is too long (200 characters at most).")
    return Organization.objects.get_or_create(name=clean)


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
    """Issues a token; the secret is returned once and only its SHA-256 is stored."""
    if expires_at is not None and timezone.is_naive(expires_at):
        raise ApplicationError("expires_at must carry a time zone offset.", details={"expires_at": ["Naive."]})
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
    token_touch(token=token)
    return token


def token_touch(*, token: AccessToken, now: datetime | None = None) -> bool:
    """Refreshes ``last_used_at`` at most once a minute; True when this call wrote it.

    The row we just read tells whether a write is due, so most requests cost no query at all; the
    conditional UPDATE makes concurrent requests in different processes write once between them.
    """
    now = now or timezone.now()
    threshold = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > threshold:
        return False
    written = (
        AccessToken.objects.filter(pk=token.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold))
        .update(last_used_at=now)
    )
    if written:
        token.last_used_at = now
    return bool(written)


def token_revoke(*, token_or_prefix: "str | AccessToken") -> AccessToken:
    """Revokes a token given as a row, whole, or by its 16-character display prefix.

    Revoking an already revoked token keeps its first revocation time (idempotent).
    """
    if isinstance(token_or_prefix, AccessToken):
        token = token_or_prefix
    else:
        token = _token_find(value=token_or_prefix)
    if token.revoked_at is None:
        AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
    return token


def _token_find(*, value: str) -> AccessToken:
    value = (value or "").strip()
    if not value.startswith(TOKEN_PREFIX) or len(value) < AccessToken.PREFIX_LENGTH:
        raise ApplicationError(
            f"Give the whole token or its first {AccessToken.PREFIX_LENGTH} characters ('{TOKEN_PREFIX}' and 8 more).",
            details={"token": ["Malformed."]},
        )
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
    return found[0]


def organization_messaging_limit_set(*, organization: Organization, limit: int | None) -> bool:
    """Set the organization's messaging limit (docs/rules.md; None = unlimited) through its one writer
    (tokens/limits.py: a change starts the count afresh and wakes the sends waiting for the limit).
    Returns whether it changed."""
    changed = limits.organization_limit_set(organization_id=organization.id, limit=limit)
    if changed:
        organization.refresh_from_db(fields=["messaging_limit", "messaging_limit_set_at"])
    return changed
