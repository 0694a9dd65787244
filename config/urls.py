from django.contrib import admin
from django.urls import include, path, re_path

from broadcasts.admin_overview import overview_view
from broadcasts.api.docs import ApiDocsView
from core.api.metrics import metrics_view
from core.api.schema_view import CachedSchemaView
from core.api.views import unknown_api_path

urlpatterns = [
    # Before the admin's own catch-all: the operator's overview (broadcasts/admin_overview.py), staff only.
    path("admin/overview/", admin.site.admin_view(overview_view), name="admin_overview"),
    path("admin/", admin.site.urls),
    # Prometheus scrape, loopback (METRICS_ALLOWED_CIDRS) only: core/api/metrics.py.
    path("metrics", metrics_view, name="metrics"),
    # Built once per process (core/api/schema_view.py).
    path("v1/schema", CachedSchemaView.as_view(), name="schema"),
    path("v1/docs", ApiDocsView.as_view(url_name="schema"), name="docs"),
    path("v1/", include("core.urls")),
    # Before events.urls: broadcasts own /v1/webhooks/whatsapp (Meta's), which /v1/webhooks/<id> would shadow.
    path("v1/", include("broadcasts.urls")),
    path("v1/", include("events.urls")),
    # Last: every other path under /v1/ (any method) is the JSON 404 of docs/api.md.
    re_path(r"^v1(?:/.*)?$", unknown_api_path),
]

handler400 = "core.api.views.bad_request"
handler404 = "core.api.views.not_found"
handler500 = "core.api.views.server_error"
