"""A URL conf for tests: the project's routes plus two views that fail with secrets in their exception message
(a plain Django view, answered by handler500, and a DRF view, answered by the API's exception handler)."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.views import APIView

# Shaped like the real thing, so that only the shape-based redaction can catch them (none is configured anywhere).
LEAKED_API_TOKEN = "kbai_pk_" + "Lk3dTokenSecretValue0123456789abcdefXYZ"
LEAKED_ACCESS_TOKEN = "EAAGleakedGraphAccessToken0123456789abcdef"
LEAKED_ENDPOINT_SECRET = "whsec_leakedEndpointSecret0123456789abcd="
LEAKED_ENCRYPTED = "enc1:gAAAAABleakedFernetBlob0123456789abcdef_-=="
LEAKS = (LEAKED_API_TOKEN, LEAKED_ACCESS_TOKEN, LEAKED_ENDPOINT_SECRET, LEAKED_ENCRYPTED)


def _message(where: str) -> str:
    return (
        f"boom-{where}: Graph refused access_token={LEAKED_ACCESS_TOKEN} for {LEAKED_API_TOKEN} "
        f"(endpoint {LEAKED_ENDPOINT_SECRET}, stored {LEAKED_ENCRYPTED}, header 'Bearer {LEAKED_ACCESS_TOKEN}')"
    )


def boom_django(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(_message("django"))


class BoomApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []

    def get(self, request: Request) -> HttpResponse:
        raise RuntimeError(_message("drf"))


urlpatterns = [
    path("v1/test/boom-django", boom_django),
    path("v1/test/boom-drf", BoomApi.as_view()),
    path("", include("config.urls")),
]

handler400 = "core.api.views.bad_request"
handler404 = "core.api.views.not_found"
handler500 = "core.api.views.server_error"
