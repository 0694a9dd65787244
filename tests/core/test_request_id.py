"""X-Request-Id (docs/operations.md): taken from the request when sane, else new; on every response; in every error
envelope as ``error.request_id``; on the log lines written while the request is served."""

import hashlib
import hmac
import io
import json
import logging
import re
import socket

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from core.logging import ContextFilter, JsonFormatter, RedactFilter

pytestmark = pytest.mark.django_db

GENERATED = re.compile(r"[0-9a-f]{32}")
APP_SECRET = "request-id-app-secret"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _signed(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("given", ["abc", "req-2026-05-01/42:x", "A" * 128, "!~{}\"'\\"])
def test_a_sane_request_id_is_kept_on_the_response_and_in_the_envelope(anon_api, given):
    response = anon_api.get("/v1/no/such/path", HTTP_X_REQUEST_ID=given)
    assert response.status_code == 404
    assert response["X-Request-Id"] == given
    assert response.json()["error"]["request_id"] == given


@pytest.mark.parametrize("given", ["A" * 129, "has space", "tab\tin", "nul\x00", "caf\u00e9", "\x7f", ""])
def test_an_insane_or_empty_request_id_is_replaced_by_a_new_one(anon_api, given):
    response = anon_api.get("/v1/no/such/path", HTTP_X_REQUEST_ID=given)
    assert GENERATED.fullmatch(response["X-Request-Id"]), response["X-Request-Id"]
    assert response.json()["error"]["request_id"] == response["X-Request-Id"]


def test_without_one_every_request_gets_its_own(anon_api):
    ids = {anon_api.get("/v1/health")["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5 and all(GENERATED.fullmatch(i) for i in ids)


def _responses(api, anon_api, token_without_scope, settings):
    """(what, expected status, response) for every kind of answer the service gives."""
    client = Client(raise_request_exception=False)
    yield "health", 200, anon_api.get("/v1/health")
    yield "docs", 200, anon_api.get("/v1/docs")
    yield "schema", 200, anon_api.get("/v1/schema")
    yield "admin login", 200, client.get("/admin/login/")
    yield "admin redirect", 302, client.get("/admin/")
    yield "HTML 404 outside the API", 404, client.get("/nothing-here")
    yield "list", 200, api.get("/v1/messages/bulk")
    yield "validation", 400, api.get("/v1/messages/bulk", {"limit": 0})
    yield "invalid json", 400, api.post("/v1/messages/bulk", b"{nope", content_type="application/json")
    yield "no token", 401, anon_api.get("/v1/messages/bulk")
    yield "bad token", 401, APIClient(HTTP_AUTHORIZATION="Bearer kbai_pk_" + "x" * 40).get("/v1/messages/bulk")
    yield "missing scope", 403, token_without_scope.get("/v1/webhooks")
    yield "unknown broadcast", 404, api.get("/v1/messages/bulk/" + "0" * 24)
    yield "unknown path", 404, api.post("/v1/nothing")
    yield "method", 405, api.delete("/v1/messages/bulk")
    too_big = b"x" * (10 * 1024 * 1024 + 10)
    yield "body too large", 413, api.post("/v1/messages/bulk", too_big, content_type="application/json")
    yield "media type", 415, api.post("/v1/messages/bulk", b"a=b", content_type="text/plain")
    down = f"redis://127.0.0.1:{_closed_port()}/0"
    with override_settings(CELERY_BROKER_URL=down, REDIS_URL=down):
        yield "broker down", 503, anon_api.get("/v1/health")
    settings.WHATSAPP_APP_SECRET = APP_SECRET
    body = b'{"object": "whatsapp_business_account", "entry": []}'
    signed = {"HTTP_X_HUB_SIGNATURE_256": _signed(body)}
    webhook = "/v1/webhooks/whatsapp"
    yield "Meta webhook", 200, client.post(webhook, body, content_type="application/json", **signed)
    yield "Meta webhook unsigned", 403, client.post(webhook, body, content_type="application/json")
    yield "Meta webhook method", 405, client.put(webhook, body, content_type="application/json")
    yield "Meta handshake", 403, client.get(webhook, {"hub.mode": "subscribe"})
    with override_settings(ROOT_URLCONF="tests.core.error_urls"):
        yield "plain view fails", 500, client.get("/v1/test/boom-django")
        yield "API view fails", 500, client.get("/v1/test/boom-drf")
    settings.API_RATE_LIMITS = "1/min"
    api.get("/v1/messages/bulk")
    yield "rate limited", 429, api.get("/v1/messages/bulk")


def test_every_response_carries_it_and_every_envelope_repeats_it(api, anon_api, make_token, settings):
    token_without_scope = APIClient(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['messages:bulk'])}")
    for what, status, response in _responses(api, anon_api, token_without_scope, settings):
        assert response.status_code == status, (what, response.content[:300])
        request_id = response.get("X-Request-Id")
        assert request_id and GENERATED.fullmatch(request_id), what
        if status >= 400 and response.get("Content-Type", "").startswith("application/json"):
            error = json.loads(response.content)["error"]
            assert error["request_id"] == request_id, what
            assert set(error) == {"code", "message", "details", "request_id"}, what
        elif status >= 400:
            assert what == "HTML 404 outside the API", what  # only there is an error not JSON


def test_the_request_log_lines_carry_the_request_id(anon_api):
    # given the configured filters and JSON formatter on a handler of our own
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        # when a request is answered 404 (django.request logs it after the middleware chain returned)
        response = anon_api.get("/v1/no/such/path", HTTP_X_REQUEST_ID="trace-me-1")
        # and a line is logged outside any request
        logging.getLogger("tests.outside").warning("not in a request")
    finally:
        root.removeHandler(handler)
    assert response.status_code == 404
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    not_found = [line for line in lines if line["logger"] == "django.request"]
    assert not_found and not_found[0]["request_id"] == "trace-me-1"
    assert not_found[0]["message"] == "Not Found: /v1/no/such/path"
    outside = [line for line in lines if line["logger"] == "tests.outside"]
    assert outside == [{**outside[0], "request_id": None}]
