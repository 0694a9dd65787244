"""The API's requests in the metrics: msg_http_requests_total{route, method, status} and
msg_http_request_seconds{route, method}, recorded by one middleware near the top of the chain.

``route`` is the URL pattern that answered, never the path: ``/v1/messages/bulk/{broadcast_id}``, so a label never
holds an id and the series stay a fixed set whatever clients send. Paths no route took (the JSON 404 of unknown
API paths, any other 404) are ``unmatched``; the admin's pages are one bucket (``/admin/*``), static assets another
(``/static/*``). Methods outside the standard ones are ``other``. The time is until the response is handed back
(a streamed CSV's body is not included). Recording is two writes to this process's metric files: no I/O, no lock
held across requests.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

logger = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "msg_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "msg_http_request_seconds",
    "Time to answer an HTTP request (until the response is handed to the server), by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

UNMATCHED = "unmatched"
ADMIN = "/admin/*"
STATIC = "/static/*"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def route_of(request: HttpRequest) -> str:
    """The route template that answered ``request`` (after it was answered), or a bucket."""
    match = getattr(request, "resolver_match", None)
    path = request.path_info or "/"
    if match is None:
        static = "/" + settings.STATIC_URL.lstrip("/")
        return STATIC if path.startswith(static) else UNMATCHED
    route = match.route or ""
    if route.startswith("admin/"):
        return ADMIN
    if getattr(match.func, "unknown_path", False) or "^" in route or "(?" in route:
        # The catch-all JSON 404 under /v1/, or a regular-expression route: not a template worth a series.
        return UNMATCHED
    return "/" + _CONVERTER.sub(r"{\1}", route)


class RequestMetricsMiddleware:
    """Counts and times every request by route template, method and status, errors included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        try:
            route = route_of(request)
            method = request.method if request.method in METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
            HTTP_REQUEST_SECONDS.labels(route, method).observe(elapsed)
        except Exception:  # noqa: BLE001 - metrics must never break an answer
            logger.warning("metrics: request not counted", exc_info=True)
        return response
