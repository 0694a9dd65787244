from django.urls import path

from events.apis import WebhookEndpointDetailApi, WebhookEndpointListApi

urlpatterns = [
    path("webhooks", WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path("webhooks/<str:endpoint_id>", WebhookEndpointDetailApi.as_view(), name="webhook-endpoint"),
]
