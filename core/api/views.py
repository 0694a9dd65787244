"""Django-level fallbacks so that nothing under /v1/ ever answers with an HTML page."""

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from core.api.exception_handler import OUTAGE_RETRY_AFTER_SECONDS, error_body, is_outage, outage_body


def _is_api(request: HttpRequest) -> bool:
    return request.path == "/v1" or request.path.startswith("/v1/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


@csrf_exempt
def unknown_api_path(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """The last route under /v1/: any method on any path no other route took is a JSON 404.

    A route rather than only ``handler404``: that handler is skipped while DEBUG is on (the demo). Exempt from
    CSRF as every API view is (a bearer token, no cookie, authenticates the API): else a POST, PUT, PATCH or
    DELETE to an unknown path would meet Django's HTML 403 before the 404.
    """
    return JsonResponse(error_body("not_found", f"No API resource at {request.path!r}."), status=404)


# Request metrics count what this route answers as "unmatched", not as a route of its own.
unknown_api_path.unknown_path = True  # type: ignore[attr-defined]


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        # Django calls this handler inside its ``except``: the exception is still the current one.
        if is_outage(sys.exc_info()[1]):
            response = JsonResponse(outage_body(), status=503)
            response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
            return response
        body = error_body("internal_error", "An unexpected error occurred; it has been logged.")
        return JsonResponse(body, status=500)
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
    from django.views.defaults import bad_request as default_bad_request

    return default_bad_request(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal (``CSRF_FAILURE_VIEW``): every API view is exempt, so under /v1/ this only answers if a
    view forgot to be; then it is still the envelope, not Django's HTML page."""
    if _is_api(request):
        return JsonResponse(error_body("forbidden", "The request was refused (CSRF)."), status=403)
    from django.views.csrf import csrf_failure as default_csrf_failure

    return default_csrf_failure(request, reason)
