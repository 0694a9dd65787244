"""Readable API docs (Redoc) with every asset served by this service: no CDN, no web fonts."""

from drf_spectacular.views import SpectacularRedocView


class ApiDocsView(SpectacularRedocView):
    # drf-spectacular's own page links Google Fonts; ours is the same page without them.
    template_name = "api_docs/redoc.html"
