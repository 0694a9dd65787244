"""Django-level fallbacks so that nothing under /v1/ ever answers with an HTML page."""

from django.http import HttpRequest, HttpResponse, JsonResponse

from core.api.exception_handler import error_body


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/v1/"):
        body = error_body("internal_error", "An unexpected error occurred; it has been logged.")
        return JsonResponse(body, status=500)
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/v1/"):
        return JsonResponse(error_body("bad_request", "The request could not be understood."), status=400)
    from django.views.defaults import bad_request as default_bad_request

    return default_bad_request(request, exception)
