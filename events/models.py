"""Outbound customer events (docs/api.md): endpoints, events, and their delivery state.

The delivery state lives in rows, not in the broker: a beat sweeper finds due deliveries again,
so a lost Celery message only delays an event.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.crypto import EncryptedTextField
from core.ids import object_id
from tokens.models import Organization


class EventType(models.TextChoices):
    MESSAGE_SENT = "message.sent"
    MESSAGE_DELIVERED = "message.delivered"
    MESSAGE_READ = "message.read"
    MESSAGE_FAILED = "message.failed"
    BROADCAST_PAUSED = "broadcast.paused"
    BROADCAST_COMPLETED = "broadcast.completed"
    BROADCAST_CANCELLED = "broadcast.cancelled"
    SUPPRESSION_ADDED = "suppression.added"
    SUPPRESSION_REMOVED = "suppression.removed"
    # Sent on request to one endpoint (POST /v1/webhooks/{id}/ping), whatever it subscribes to; never stored.
    PING = "ping"


def event_id() -> str:
    return f"evt_{object_id()}"


class WebhookEndpoint(models.Model):
    """A customer URL that receives the organization's events, signed with its own secret."""

    id = models.CharField(primary_key=True, max_length=24, default=object_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=2048)  # validated by services.endpoint_url_validate
    # Subscribed event types; empty = every type.
    events = models.JSONField(default=list, blank=True)
    # The HMAC key, so stored reversibly: encrypted at rest (core.crypto); shown once at creation, never again.
    secret = EncryptedTextField(editable=False)
    # The secret before the last rotation, still signing (beside ``secret``) until ``previous_secret_expires_at``.
    previous_secret = EncryptedTextField(null=True, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    # Failed attempts in a row; a success resets it, 50 disables the endpoint.
    consecutive_failures = models.PositiveIntegerField(default=0)
    # DELETE is soft so a publisher holding a cached endpoint list never writes a dangling row.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["organization", "created_at"], name="endpoint_org_created")]

    def __str__(self) -> str:
        return f"{self.url} ({self.id})"

    def subscribes_to(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


class Event(models.Model):
    """Something that happened, once, with a stable id that every retry repeats."""

    id = models.CharField(primary_key=True, max_length=28, default=event_id, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32, choices=EventType.choices)
    data = models.JSONField()
    # Events of one subject (a message, a broadcast) are delivered in (sequence, creation) order.
    ordering_key = models.CharField(max_length=64)
    sequence = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class EventDelivery(models.Model):
    """One event to one endpoint, and its retry state as data."""

    # No index of its own: the (event, endpoint) unique constraint leads with it (one index less per insert).
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    # Copied from the event so the "nothing earlier pending" check needs no join.
    ordering_key = models.CharField(max_length=64)
    sequence = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker holds the delivery until then; past it, another worker may take it over.
    locked_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_unique_event_endpoint")]
        indexes = [
            # The worker and the sweeper: an endpoint's due deliveries.
            models.Index(
                fields=["endpoint", "next_attempt_at"], name="delivery_pending_due", condition=Q(status="pending")
            ),
            # Ordering: is an earlier event of the same subject still pending for this endpoint?
            models.Index(
                fields=["endpoint", "ordering_key", "sequence", "id"],
                name="delivery_pending_order",
                condition=Q(status="pending"),
            ),
        ]
        verbose_name_plural = "event deliveries"

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} {self.status}"


class DeliveryAttempt(models.Model):
    """One POST to an endpoint: kept for the admin, so a customer's failures can be explained."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.delivery_id} @ {self.attempted_at:%Y-%m-%d %H:%M:%S} {self.status_code or self.error[:40]}"
