"""The receiver of Meta's webhooks, ``/v1/webhooks/whatsapp``: ``GET`` (subscription handshake) and ``POST``
(signed events), routed by ``broadcasts.status_updates.inbound``.

A plain Django view: no token authentication, no per-token throttle, no CSRF (Meta signs its
requests instead). The signature is checked on the raw bytes before anything is parsed
(``whatsapp.signatures``); the body is then read by the API's own hostile-input rules
(``core.api.parsers.json_parse``: depth, NUL). A backing service that is down is a 503 that Meta retries.
"""

import hmac
import logging
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from broadcasts.status_updates.inbound import webhook_payload_process
from core.api.exception_handler import OUTAGE_RETRY_AFTER_SECONDS, error_body, is_outage, outage_body
from core.api.parsers import InvalidJSON, json_parse
from core.errors import ApplicationError
from core.metrics import META_WEBHOOK_SECONDS
from whatsapp.signatures import signature_valid

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_HUB_SIGNATURE_256"


def _error(code: str, message: str, status: int) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


@method_decorator(csrf_exempt, name="dispatch")
class WhatsAppWebhookView(View):
    http_method_names = ["get", "post"]

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = _error("method_not_allowed", f"Method {request.method} is not allowed here.", 405)
        response["Allow"] = "GET, POST"
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        """Meta's subscription handshake: echo ``hub.challenge`` when the verify token matches."""
        expected = settings.WHATSAPP_VERIFY_TOKEN
        mode = request.GET.get("hub.mode", "")
        given = request.GET.get("hub.verify_token", "")
        if not expected or mode != "subscribe" or not hmac.compare_digest(given.encode(), expected.encode()):
            return _error("forbidden", "Verification failed.", 403)
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain; charset=utf-8")

    def post(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        try:
            return self._post(request)
        finally:
            META_WEBHOOK_SECONDS.observe(time.perf_counter() - started)

    def _post(self, request: HttpRequest) -> HttpResponse:
        try:
            body = request.body
        except RequestDataTooBig:
            return _error("request_too_large", "The request body is larger than the 10 MiB limit.", 413)
        secret = settings.WHATSAPP_APP_SECRET
        if not secret:
            # Without the app secret nothing can be verified, so nothing is accepted.
            return _error("forbidden", "Webhooks are disabled: WHATSAPP_APP_SECRET is not configured.", 403)
        if not signature_valid(body=body, header=request.META.get(SIGNATURE_HEADER, ""), secret=secret):
            return _error("invalid_signature", "Missing or invalid X-Hub-Signature-256.", 403)
        try:
            payload = json_parse(body)
        except InvalidJSON:
            return _error("invalid_json", "The request body is not valid JSON.", 400)
        except ApplicationError as exc:  # too deep, NUL: nothing Meta sends, nothing we could store
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status)
        if not isinstance(payload, dict):
            return _error("validation_error", "The webhook body must be a JSON object.", 400)
        try:
            result = webhook_payload_process(payload=payload)
        except Exception as exc:
            if not is_outage(exc):
                raise
            # Database down: Meta retries a non-2xx delivery, so the statuses are applied later.
            logger.warning("whatsapp webhook deferred, a backing service is down: %s", exc.__class__.__name__)
            response = JsonResponse(outage_body(), status=503)
            response["Retry-After"] = str(OUTAGE_RETRY_AFTER_SECONDS)
            return response
        logger.debug("whatsapp webhook applied: %s", result)
        return JsonResponse({"received": True})
