"""Every error under /v1/ is the JSON envelope whatever the method (docs/api.md), with CSRF enforced as a browser-less
client meets it: the test client skips CSRF checks unless asked, which once hid Django's HTML 403 on a POST, PUT,
PATCH or DELETE to an unknown path."""

import pytest
from django.test import Client, override_settings

from tests.core.hostile import UNKNOWN_ID, assert_envelope
from tests.core.routes import METHODS, UNROUTED, api_routes, handled_methods

pytestmark = pytest.mark.django_db

UNKNOWN = [
    UNROUTED,
    "/v1/suppressions/..%2F..%2Fx",
    "/v1/suppressions/../../x",
    "/v1/contacts/..%2F..%2Fadmin%2F",
    f"/v1/webhooks/{UNKNOWN_ID}/..%2F..%2Fmessages%2Fbulk",
    "/v1/messages/bulk/%2e%2e/%2e%2e/x",
    "/v1",
    "/v1/",
]


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.API_RATE_LIMITS = "100000/min"
    settings.API_ORG_RATE_LIMITS = "100000/min"


def strict_client(token: str | None = None) -> Client:
    """Django's client enforcing CSRF, with or without a token; a 500 is answered, not raised."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return Client(enforce_csrf_checks=True, raise_request_exception=False, **headers)


def _check(response, status: int, code: str, method: str) -> None:
    assert response.status_code == status, (method, response.status_code, response.content[:300])
    if method != "HEAD":
        assert_envelope(response, status, code)


@pytest.mark.parametrize("path", UNKNOWN)
@pytest.mark.parametrize("method", METHODS)
def test_an_unknown_path_is_the_json_404_for_every_method_with_or_without_a_token(token, path, method):
    for client in (strict_client(token), strict_client()):
        _check(client.generic(method, path), 404, "not_found", method)


def _unhandled() -> list[tuple[str, str]]:
    return [
        (method, path)
        for path, view_class in api_routes()
        for method in (*METHODS, "TRACE", "PROPFIND")
        if method not in handled_methods(view_class)
    ]


@pytest.mark.parametrize(("method", "path"), _unhandled())
def test_a_method_a_route_does_not_take_is_the_json_405(token, method, path):
    response = strict_client(token).generic(method, path)
    _check(response, 405, "method_not_allowed", method)


@pytest.mark.parametrize("method", METHODS)
def test_a_bad_host_is_the_json_400(token, method):
    response = strict_client(token).generic(method, "/v1/suppressions", HTTP_HOST="evil.example")
    _check(response, 400, "bad_request", method)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_view_that_is_not_csrf_exempt_still_answers_the_envelope(method):
    # tests/core/error_urls.py adds a plain Django view under /v1/: not exempt, so CSRF refuses it first.
    with override_settings(ROOT_URLCONF="tests.core.error_urls"):
        response = strict_client().generic(method, "/v1/test/boom-django")
    _check(response, 403, "forbidden", method)


@pytest.mark.parametrize("path", ["/v1/test/boom-django", "/v1/test/boom-drf"])
def test_a_server_error_under_v1_is_the_json_500(path):
    with override_settings(ROOT_URLCONF="tests.core.error_urls"):
        response = strict_client().get(path)
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "internal_error"


def test_outside_v1_django_keeps_its_own_pages():
    response = strict_client().post("/admin/login/", {"username": "x"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
