from django.urls import path

from events.apis import (
    WebhookEndpointDetailApi,
    WebhookEndpointListApi,
    WebhookEndpointPingApi,
    WebhookEndpointRotateSecretApi,
)

urlpatterns = [
    path("webhooks", WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path("webhooks/<str:endpoint_id>", WebhookEndpointDetailApi.as_view(), name="webhook-endpoint"),
    path(
        "webhooks/<str:endpoint_id>/rotate-secret",
        WebhookEndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("webhooks/<str:endpoint_id>/ping", WebhookEndpointPingApi.as_view(), name="webhook-endpoint-ping"),
]
