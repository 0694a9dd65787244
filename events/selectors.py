"""Reads of outbound-event endpoints, always scoped to one organization."""

from django.db.models import QuerySet

from core.errors import NotFoundError
from events.models import WebhookEndpoint
from tokens.models import Organization


def endpoint_list(*, organization: Organization) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(organization=organization, deleted_at__isnull=True).order_by(
        "created_at", "id"
    )


def endpoint_get(*, organization: Organization, endpoint_id: str) -> WebhookEndpoint:
    """Another organization's endpoint does not exist for this one: 404, never a hint."""
    endpoint = endpoint_list(organization=organization).filter(id=endpoint_id).first()
    if endpoint is None:
        raise NotFoundError("Webhook endpoint not found.")
    return endpoint
