"""The service's URLs plus the naive baseline, for benchmarks/bench_ingest.py only."""

from django.urls import path

from benchmarks.naive_ingest import NaiveBulkApi
from config.urls import handler400, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as service_urlpatterns

urlpatterns = [path("bench/naive/messages/bulk", NaiveBulkApi.as_view()), *service_urlpatterns]
