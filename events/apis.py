"""``/v1/webhooks``: an organization's event endpoints, their secret rotation and ping (scope ``webhooks:manage``)."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.base import ApiView
from core.api.serializers import ErrorEnvelopeSerializer
from core.timefmt import iso_utc
from events import endpoints, selectors
from events.models import EventType, WebhookEndpoint
from events.ping import endpoint_ping
from tokens.scopes import WEBHOOKS_MANAGE


def endpoint_output(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """Never the secret: it is shown once, in the 201 of the creation."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "is_active": endpoint.is_active,
        "disabled_at": iso_utc(endpoint.disabled_at),
        "consecutive_failures": endpoint.consecutive_failures,
        "previous_secret_expires_at": iso_utc(endpoint.previous_secret_expires_at),
        "created_at": iso_utc(endpoint.created_at),
    }


class EndpointInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2048, trim_whitespace=True, help_text="http(s) URL with a public host.")
    events = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_null=True,
        help_text=f"Subscribed types ({', '.join(EventType.values)}); omitted or empty = all.",
    )


class EndpointOutputSerializer(serializers.Serializer):
    """Documentation of the shape ``endpoint_output`` builds."""

    id = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    is_active = serializers.BooleanField()
    disabled_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then the secret before the last rotation signs too; null: no overlap."
    )
    created_at = serializers.DateTimeField()


class EndpointCreatedSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(help_text="Signing secret, shown only in this answer.")


class RotatedSecretSerializer(serializers.Serializer):
    id = serializers.CharField()
    secret = serializers.CharField(help_text="The new signing secret, shown only in this answer.")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="The old secret signs beside the new one until then (null: not at all)."
    )


class PingResultSerializer(serializers.Serializer):
    event_id = serializers.CharField(help_text="The ping's event id (its X-Webhook-Id and webhook-id).")
    ok = serializers.BooleanField(help_text="The endpoint answered 2xx.")
    status = serializers.IntegerField(allow_null=True, help_text="The endpoint's HTTP status; null: no answer.")
    error = serializers.CharField(allow_null=True, help_text="Why the ping failed; null when it was delivered.")
    duration_ms = serializers.IntegerField()


class EndpointListSerializer(serializers.Serializer):
    data = EndpointOutputSerializer(many=True)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorEnvelopeSerializer) for code in codes}


class WebhookEndpointListApi(ApiView):
    required_scope = WEBHOOKS_MANAGE
    InputSerializer = EndpointInputSerializer

    @extend_schema(
        operation_id="webhooks_list",
        summary="List the organization's event endpoints (without secrets)",
        responses={200: EndpointListSerializer, **_errors(401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        rows = selectors.endpoint_list(organization=request.user.organization)
        return Response({"data": [endpoint_output(e) for e in rows]})

    @extend_schema(
        operation_id="webhooks_create",
        summary="Register an event endpoint; the signing secret is shown once",
        description="At most `WEBHOOK_ENDPOINTS_MAX` (10) endpoints per organization: one more is a 409 `conflict`.",
        request=EndpointInputSerializer,
        responses={201: EndpointCreatedSerializer, **_errors(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = endpoints.endpoint_create(
            organization=request.user.organization,
            url=serializer.validated_data["url"],
            events=serializer.validated_data.get("events"),
        )
        return Response({**endpoint_output(issued.endpoint), "secret": issued.secret}, status=201)


class WebhookEndpointDetailApi(ApiView):
    required_scope = WEBHOOKS_MANAGE

    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="One event endpoint (without its secret)",
        responses={200: EndpointOutputSerializer, **_errors(401, 403, 404, 429)},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(organization=request.user.organization, endpoint_id=endpoint_id)
        return Response(endpoint_output(endpoint))

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete an event endpoint; its pending deliveries are dropped",
        responses={204: None, **_errors(401, 403, 404, 429)},
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoints.endpoint_delete(organization=request.user.organization, endpoint_id=endpoint_id)
        return Response(status=204)


class WebhookEndpointRotateSecretApi(ApiView):
    required_scope = WEBHOOKS_MANAGE

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        summary="Issue a new signing secret; the old one keeps signing beside it for the overlap (24 h)",
        request=None,
        responses={200: RotatedSecretSerializer, **_errors(401, 403, 404, 429)},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        issued = endpoints.endpoint_secret_rotate(organization=request.user.organization, endpoint_id=endpoint_id)
        return Response(
            {
                "id": issued.endpoint.id,
                "secret": issued.secret,
                "previous_secret_expires_at": iso_utc(issued.endpoint.previous_secret_expires_at),
            }
        )


class WebhookEndpointPingApi(ApiView):
    required_scope = WEBHOOKS_MANAGE

    @extend_schema(
        operation_id="webhooks_ping",
        summary="POST a signed ping event to the endpoint now and answer with what it answered",
        description="Synchronous (answers within 5 s), not queued nor retried. A failed ping (refused address, "
        "timeout, non-2xx) is still a 200 here: `ok` false, with `status` and `error` saying what happened "
        '(`"timeout"` when the endpoint has not answered within 5 s). One ping per organization at a time: another '
        "one meanwhile is a 429 with `Retry-After`.",
        request=None,
        responses={200: PingResultSerializer, **_errors(401, 403, 404, 429)},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(organization=request.user.organization, endpoint_id=endpoint_id)
        result = endpoint_ping(endpoint=endpoint)
        return Response(
            {
                "event_id": result.event_id,
                "ok": result.ok,
                "status": result.status,
                "error": result.error,
                "duration_ms": result.duration_ms,
            }
        )
