"""The models of what we know of a person, per organization: marketing holds (131049), customer-service windows,
the suppression list, Meta's wa_id ~ BSUID pairs and the last preference applied. Part of the broadcasts app
(broadcasts/models.py imports them); their rules are in broadcasts/rules/."""

from django.db import models
from django.utils import timezone

from templates_registry.models import Channel
from tokens.models import Organization


class MarketingHold(models.Model):
    """Meta's per-user marketing limit (error 131049) on one number of an organization: no MARKETING template is
    posted to it before ``until`` (broadcasts/rules/marketing_holds.py). One row per (organization, number): a new
    failure moves ``until`` forward, never back."""

    # No index of its own: the unique (organization, to) leads with it, and a planner given an organization-only
    # index may read every hold of a big organization to find a batch's numbers.
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="marketing_holds", db_index=False
    )
    to = models.CharField(max_length=140)  # E.164 or a BSUID, as the sends store it
    # The failure that started the hold (the POST's answer, or the failed status webhook's timestamp).
    failed_at = models.DateTimeField()
    until = models.DateTimeField()

    class Meta:
        constraints = [
            # The gate's lookup (organization, numbers of a batch) and the upsert's conflict target.
            models.UniqueConstraint(fields=["organization", "to"], name="marketing_hold_unique_number"),
        ]

    def __str__(self) -> str:
        return f"{self.to} held until {self.until.isoformat()}"


class CustomerWindow(models.Model):
    """When a customer last wrote to a channel (Meta's incoming ``messages`` webhooks): the customer-service window
    (docs/rules.md) is open for CUSTOMER_SERVICE_WINDOW_SECONDS after it. One row per (channel, number), upserted."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="customer_windows")
    number = models.CharField(max_length=140)  # E.164 ("+" and the digits Meta sent as `from`), or a BSUID
    last_inbound_at = models.DateTimeField()

    class Meta:
        constraints = [
            # The gate's lookup (channel, number IN batch) and the upsert's conflict target.
            models.UniqueConstraint(fields=["channel", "number"], name="customer_window_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.number} -> {self.channel_id} at {self.last_inbound_at}"


class SuppressionSource(models.TextChoices):
    API = "api"
    USER_PREFERENCES = "user_preferences"
    ERROR_131050 = "131050"


class Suppression(models.Model):
    """A number of an organization that must not get MARKETING templates (rules/suppressions.py).

    Looked up by ``to_hash`` (SHA-256 of the E.164 number), so that an erased contact (``DELETE /v1/contacts/{to}``,
    which blanks ``to``) stays suppressed."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="suppressions")
    to = models.CharField(max_length=140, blank=True)  # E.164 or a BSUID; "" once the contact was erased
    to_hash = models.CharField(max_length=64)
    reason = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, choices=SuppressionSource.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the gate's index: one probe per number of a batch, (organization, to_hash) = ANY(...).
            models.UniqueConstraint(fields=["organization", "to_hash"], name="suppression_unique_number_per_org"),
        ]
        indexes = [
            # GET /v1/suppressions: newest first, by cursor.
            models.Index(fields=["organization", "-created_at", "-id"], name="suppression_org_created"),
        ]

    def __str__(self) -> str:
        return f"{self.to or '(erased)'} ({self.source})"


class ContactIdentity(models.Model):
    """One pair Meta gave for a user of an organization: its WhatsApp id (``wa_id``, the phone form, with the E.164
    ``number`` we sent to when known) and its business-scoped user id (``user_id``, BSUID). Kept from every place
    Meta names both (answers' ``contacts[]``, statuses, incoming messages, preference updates), so that a message
    naming only one of them reaches the other (rules/identities.py)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="identities", db_index=False)
    user_id = models.CharField(max_length=140)
    wa_id = models.CharField(max_length=32)
    number = models.CharField(max_length=20, blank=True)  # E.164 when one of our sends names it
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Lookup by BSUID (a username-only webhook) and the upsert's conflict target.
            models.UniqueConstraint(fields=["organization", "user_id", "wa_id"], name="contact_identity_unique"),
        ]
        indexes = [models.Index(fields=["organization", "wa_id"], name="contact_identity_wa_id")]

    def __str__(self) -> str:
        return f"{self.user_id} ~ {self.wa_id}"


class UserPreference(models.Model):
    """The last ``user_preferences`` update applied for a number or BSUID of an organization, by Meta's timestamp: an
    older one that arrives later (or a replay) changes nothing (rules/suppressions.py)."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="user_preferences", db_index=False
    )
    subject_hash = models.CharField(max_length=64)  # suppressions.number_hash of the E.164 number or BSUID
    value = models.CharField(max_length=16)  # Meta's word: "stop" or "resume"
    at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "subject_hash"], name="user_preference_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.value} at {self.at.isoformat()}"
