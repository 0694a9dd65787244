"""GET /metrics: the Prometheus text format, no token, answered only to REMOTE_ADDRs in METRICS_ALLOWED_CIDRS.

Anyone else gets the JSON 404 of any unknown path, not a 403: the endpoint is not part of the public API, and
from outside it must look like nothing is there (a 403 would confirm it exists and invite guessing around the
address check). REMOTE_ADDR is the socket's peer: behind a reverse proxy every request comes from the proxy, so the
operator scrapes each process directly (its own port, on a private interface) rather than through the proxy.
"""

from __future__ import annotations

import ipaddress
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST

from core.api.exception_handler import error_body
from core.metrics import metrics_exposition

logger = logging.getLogger(__name__)


def address_allowed(remote_addr: str | None) -> bool:
    """True when the address is in METRICS_ALLOWED_CIDRS (an IPv4-mapped IPv6 address counts as its IPv4)."""
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    candidates = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in network
        for candidate in candidates
        for network in settings.METRICS_ALLOWED_NETWORKS
        if candidate.version == network.version
    )


@csrf_exempt  # a refused POST must look like any unknown path's (404), not a CSRF 403
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not address_allowed(request.META.get("REMOTE_ADDR")):
        logger.info("metrics: refused to %s (not in METRICS_ALLOWED_CIDRS)", request.META.get("REMOTE_ADDR"))
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            error_body("method_not_allowed", f"Method {request.method} is not allowed here."), status=405
        )
        response["Allow"] = "GET, HEAD"
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
