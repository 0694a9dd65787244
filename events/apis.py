"""``/v1/webhooks``: an organization's event endpoints (scope ``webhooks:manage``)."""

from typing import Any

from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from events import selectors, services
from events.models import WebhookEndpoint
from tokens.scopes import WEBHOOKS_MANAGE


def endpoint_output(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """Never the secret: it is shown once, in the 201 of the creation."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": endpoint.events,
        "is_active": endpoint.is_active,
        "disabled_at": services._iso(endpoint.disabled_at),
        "consecutive_failures": endpoint.consecutive_failures,
        "created_at": services._iso(endpoint.created_at),
    }


class WebhookEndpointListApi(APIView):
    required_scope = WEBHOOKS_MANAGE

    class InputSerializer(serializers.Serializer):
        url = serializers.CharField(max_length=2048, trim_whitespace=True)
        events = serializers.ListField(child=serializers.CharField(max_length=64), required=False, allow_null=True)

    def get(self, request: Request) -> Response:
        endpoints = selectors.endpoint_list(organization=request.user.organization)
        return Response({"data": [endpoint_output(e) for e in endpoints]})

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        issued = services.endpoint_create(
            organization=request.user.organization,
            url=serializer.validated_data["url"],
            events=serializer.validated_data.get("events"),
        )
        return Response({**endpoint_output(issued.endpoint), "secret": issued.secret}, status=201)


class WebhookEndpointDetailApi(APIView):
    required_scope = WEBHOOKS_MANAGE

    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = selectors.endpoint_get(organization=request.user.organization, endpoint_id=endpoint_id)
        return Response(endpoint_output(endpoint))

    def delete(self, request: Request, endpoint_id: str) -> Response:
        services.endpoint_delete(organization=request.user.organization, endpoint_id=endpoint_id)
        return Response(status=204)
