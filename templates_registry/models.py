from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from core.crypto import EncryptedTextField
from core.ids import object_id
from tokens.models import Organization
from whatsapp.template_components import ButtonSpec, header_format, template_buttons


class Channel(models.Model):
    """A WhatsApp Business phone number the organization sends from."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=200, blank=True)
    phone_number_id = models.CharField(max_length=64, unique=True)
    waba_id = models.CharField(max_length=64, db_index=True)
    # The Graph API access token: write-only in the admin, never logged or serialized; encrypted at rest.
    access_token = EncryptedTextField()
    # Meta's default throughput is 80 messages per second per phone number; upgraded numbers reach 1000.
    max_mps = models.PositiveIntegerField(default=80, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    # Onboarded to Meta's Marketing Messages API: MARKETING templates go to /marketing_messages (docs/rules.md).
    marketing_messages = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Number health from Meta's phone_number_quality_update (docs/rules.md): the last event (FLAGGED, UNFLAGGED,
    # ONBOARDING, THROUGHPUT_UPGRADE, ...), the messaging-limit tier it named (TIER_2K, ...) and when it came.
    quality_event = models.CharField(max_length=64, blank=True, editable=False)
    quality_limit_tier = models.CharField(max_length=32, blank=True, editable=False)
    quality_updated_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.name or f"{self.phone_number_id} ({self.id})"


class Template(models.Model):
    """A message template of a WhatsApp Business account (WABA), as Meta knows it."""

    class Status(models.TextChoices):
        APPROVED = "APPROVED"
        PENDING = "PENDING"
        REJECTED = "REJECTED"
        PAUSED = "PAUSED"
        DISABLED = "DISABLED"
        IN_APPEAL = "IN_APPEAL"
        PENDING_DELETION = "PENDING_DELETION"
        DELETED = "DELETED"
        LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
        ARCHIVED = "ARCHIVED"

    class Category(models.TextChoices):
        MARKETING = "MARKETING"
        UTILITY = "UTILITY"
        AUTHENTICATION = "AUTHENTICATION"

    class Quality(models.TextChoices):
        GREEN = "GREEN"
        YELLOW = "YELLOW"
        RED = "RED"
        UNKNOWN = "UNKNOWN"

    class ParameterFormat(models.TextChoices):
        NAMED = "NAMED"
        POSITIONAL = "POSITIONAL"

    waba_id = models.CharField(max_length=64)
    meta_id = models.CharField(max_length=64, blank=True, db_index=True)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=20)
    status = models.CharField(max_length=32, default=Status.APPROVED)
    category = models.CharField(max_length=32, blank=True)
    # Meta's quality score (message_template_quality_update); "" until Meta sends one.
    quality = models.CharField(max_length=16, blank=True)
    # The last message_template_status_update applied: Meta's own word (FLAGGED, PAUSED, ...), its reason, and the
    # entry's time (Unix seconds), so that an older update arriving later changes nothing.
    status_event = models.CharField(max_length=32, blank=True)
    status_reason = models.CharField(max_length=255, blank=True)
    status_event_time = models.BigIntegerField(null=True, blank=True)
    parameter_format = models.CharField(max_length=16, choices=ParameterFormat.choices, default=ParameterFormat.NAMED)
    components = models.JSONField(default=list)
    header_variables = models.JSONField(default=list)
    body_variables = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["waba_id", "name", "language"], name="template_unique_per_waba_language")
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}] {self.status}"

    @property
    def header_format(self) -> str:
        """TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION (from Meta's components), "" without a header."""
        return header_format(self.components)

    @property
    def buttons(self) -> tuple[ButtonSpec, ...]:
        """The template's buttons by index, each with the parameter it takes at send time (from its components)."""
        return template_buttons(self.components, category=self.category)

    @property
    def variables(self) -> list[str]:
        """Every variable a recipient must supply, header first, without repeats."""
        seen: dict[str, None] = dict.fromkeys(self.header_variables)
        seen.update(dict.fromkeys(self.body_variables))
        return list(seen)
