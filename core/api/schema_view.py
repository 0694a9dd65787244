"""GET /v1/schema, built once per process: the OpenAPI document depends only on the code (routes, serializers,
settings), never on the request, so generating it again (~45 ms) for each request was pure cost. Rendered bytes are
kept per format (YAML by default, JSON for ``Accept: application/vnd.oai.openapi+json``), so a request costs a
dictionary lookup. ``?version=`` and ``?lang=`` change nothing: the API has one version and English docs, and a
query string must not make a request cost more than another."""

from __future__ import annotations

import threading
from typing import Any

from drf_spectacular.views import SpectacularAPIView
from rest_framework.response import Response

_lock = threading.Lock()
_schema: dict[str, Any] | None = None


class CachedSchemaView(SpectacularAPIView):
    def get(self, request, *args, **kwargs) -> Response:
        return self._get_schema_response(request)

    def _get_schema_response(self, request) -> Response:
        global _schema
        if _schema is None:
            with _lock:
                if _schema is None:
                    generator = self.generator_class(urlconf=self.urlconf, api_version=None, patterns=self.patterns)
                    _schema = generator.get_schema(request=request, public=self.serve_public)
        return Response(
            data=_schema, headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, None)}"'}
        )


def schema_cache_clear() -> None:
    """Forget the built schema (tests that change routes or settings)."""
    global _schema
    with _lock:
        _schema = None
