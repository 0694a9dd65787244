from django.urls import path

from broadcasts.api import meta_webhooks, suppressions, views

urlpatterns = [
    path("messages/bulk", views.BroadcastCollectionApi.as_view(), name="bulk-collection"),
    path("messages/bulk/<str:broadcast_id>", views.BroadcastDetailApi.as_view(), name="bulk-detail"),
    path("messages/bulk/<str:broadcast_id>/recipients", views.BroadcastRecipientsApi.as_view(), name="bulk-recipients"),
    path("messages/bulk/<str:broadcast_id>/cancel", views.BroadcastCancelApi.as_view(), name="bulk-cancel"),
    path("messages/bulk/<str:broadcast_id>/pause", views.BroadcastPauseApi.as_view(), name="bulk-pause"),
    path("messages/bulk/<str:broadcast_id>/resume", views.BroadcastResumeApi.as_view(), name="bulk-resume"),
    path("messages/bulk/<str:broadcast_id>/retry", views.BroadcastRetryApi.as_view(), name="bulk-retry"),
    # Consent (docs/rules.md).
    path("suppressions", suppressions.SuppressionCollectionApi.as_view(), name="suppressions"),
    path("suppressions/<str:to>", suppressions.SuppressionDetailApi.as_view(), name="suppression"),
    path("contacts/<str:to>", suppressions.ContactDetailApi.as_view(), name="contact"),
    # Meta's webhooks (statuses and template updates): signed by Meta, no token.
    path("webhooks/whatsapp", meta_webhooks.WhatsAppWebhookView.as_view(), name="whatsapp-webhook"),
]
