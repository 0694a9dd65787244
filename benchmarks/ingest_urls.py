"""The service's URLs plus the naive peers (ingest and Meta webhook), for the benchmarks only."""

from django.urls import path

from benchmarks.naive_ingest import NaiveBulkApi
from benchmarks.naive_webhook import naive_meta_webhook
from config.urls import handler400, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as service_urlpatterns

urlpatterns = [
    path("bench/naive/messages/bulk", NaiveBulkApi.as_view()),
    path("bench/naive/webhooks/whatsapp", naive_meta_webhook),
    *service_urlpatterns,
]
