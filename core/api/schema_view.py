"""GET /v1/schema, built once per process: the OpenAPI document depends only on the code (routes, serializers,
settings), never on the request, so generating it again (~45 ms) and rendering it (YAML ~85 ms) for each request
was pure cost. The rendered bytes are kept per format (YAML by default, JSON for
``Accept: application/vnd.oai.openapi+json``), so a request costs a dictionary lookup. ``?version=`` and ``?lang=``
change nothing: the API has one version and English docs, and a query string must not make a request cost more
than another."""

from __future__ import annotations

import threading
from typing import Any

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SCHEMA_KWARGS, SpectacularAPIView

_lock = threading.Lock()
_schema: dict[str, Any] | None = None
_rendered: dict[str, tuple[bytes, str]] = {}


class CachedSchemaView(SpectacularAPIView):
    @extend_schema(**SCHEMA_KWARGS)  # as drf-spectacular's own view: the schema route is not in the schema
    def get(self, request, *args, **kwargs) -> HttpResponse:
        global _schema
        renderer = request.accepted_renderer
        key = f"{type(renderer).__name__}:{renderer.media_type}"
        cached = _rendered.get(key)
        if cached is None:
            with _lock:
                if _schema is None:
                    generator = self.generator_class(urlconf=self.urlconf, api_version=None, patterns=self.patterns)
                    _schema = generator.get_schema(request=request, public=self.serve_public)
                content = renderer.render(_schema, renderer.media_type, self.get_renderer_context())
                charset = f"; charset={renderer.charset}" if renderer.charset else ""
                cached = _rendered[key] = (content, renderer.media_type + charset)
        content, content_type = cached
        response = HttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="{self._get_filename(request, None)}"'
        return response


def schema_cache_clear() -> None:
    """Forget the built schema (tests that change routes or settings)."""
    global _schema
    with _lock:
        _schema = None
        _rendered.clear()
