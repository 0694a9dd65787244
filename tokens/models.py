from django.conf import settings
from django.db import models
from django.utils import timezone

# Meta's messaging-limit tiers (docs/rules.md): unique users per moving 24 h for the business portfolio.
MESSAGING_LIMITS = (250, 2000, 10000, 100000)


class Organization(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # The business portfolio's messaging limit (docs/rules.md): null = unlimited (broadcasts/rules/messaging_limit.py).
    messaging_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        choices=[(n, f"{n:,} unique users / 24 h") for n in MESSAGING_LIMITS],
        help_text="Meta's business-portfolio tier; empty = unlimited.",
    )
    # When the limit last changed: its count in Redis starts afresh (rebuilt from the sends) at each change.
    messaging_limit_set_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The marketing frequency cap: at most this many MARKETING sends per number (or BSUID) per
    # ``marketing_frequency_days`` days (both null: off), across broadcasts and channels.
    marketing_frequency_cap = models.PositiveSmallIntegerField(null=True, blank=True)
    marketing_frequency_days = models.PositiveSmallIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class AccessToken(models.Model):
    """A personal access token ``kbai_pk_<secret>``. Only the SHA-256 of the whole token is stored."""

    PREFIX_LENGTH = 16  # "kbai_pk_" and 8 characters of the secret, as the admin shows it

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=200, blank=True)
    scopes = models.JSONField(default=list)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        # The seed calls it developer.manage_tokens; here it is tokens.manage_tokens.
        permissions = [("manage_tokens", "Can create, list and revoke API tokens")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])
