from django.urls import path

from whatsapp.webhooks import WhatsAppWebhookView

urlpatterns = [
    path("webhooks/whatsapp", WhatsAppWebhookView.as_view(), name="whatsapp-webhook"),
]
