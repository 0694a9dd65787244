"""The receiver of Meta's webhooks: ``GET`` (subscription handshake) and ``POST`` (signed events).

A plain Django view: no token authentication, no per-token throttle, no CSRF (Meta signs its
requests instead). The signature is checked on the raw bytes before anything is parsed.
"""

import hashlib
import hmac
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from core.api.exception_handler import OUTAGE_RETRY_AFTER_SECONDS, error_body, is_outage, outage_body
from core.api.parsers import InvalidJSON, json_parse
from core.errors import ApplicationError
from whatsapp.services import webhook_payload_process

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "HTTP_X_HUB_SIGNATURE_256"


def signature_valid(*, body: bytes, header: str, secret: str) -> bool:
    """``sha256=<hex HMAC-SHA256(body, app secret)>``, compared in constant time."""
    if not secret or not header.startswith("sha256="):
        return False
    given = header.removeprefix("sha256=").strip().lower()
    # compare_digest refuses non-ASCII str (TypeError): such a header is simply a wrong signature.
    if not given.isascii():
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.encode())


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
