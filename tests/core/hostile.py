"""Shared helpers of the hostile-input suites: the envelope check, nesting, cursors, bodies."""

import base64
from typing import Any

import orjson
from rest_framework.test import APIClient

BULK = "/v1/messages/bulk"
WEBHOOKS = "/v1/webhooks"
META_WEBHOOK = "/v1/webhooks/whatsapp"
UNKNOWN_ID = "ffffffffffffffffffffffff"


def client_for(token: str | None) -> APIClient:
    """A client that returns a server error as a response instead of raising it in the test."""
    client = APIClient(raise_request_exception=False)
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_no_500(response, *, outage: bool = False) -> None:
    """No 5xx; with ``outage`` (a server was stopped on purpose) a 503 is the one allowed."""
    allowed = response.status_code < 500 or (outage and response.status_code == 503)
    assert allowed, (response.status_code, response.content[:2000])


def assert_envelope(
    response, status: int | None = None, code: str | None = None, *, outage: bool = False
) -> dict[str, Any]:
    """Not a 5xx (but the 503 of an ``outage``); an error is the contract's JSON envelope.
    Returns the error object (or {})."""
    assert_no_500(response, outage=outage)
    if status is not None:
        assert response.status_code == status, (response.status_code, response.content[:2000])
    if response.status_code < 400:
        return {}
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = orjson.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"code", "message", "details"} <= set(error), error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def nest(levels: int, leaf: Any = 1, *, kind: str = "dict") -> Any:
    """``levels`` arrays or objects around ``leaf`` (0 levels: the leaf itself)."""
    value = leaf
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def bulk_body(channel_id: str, recipients: list[dict] | None = None, /, **overrides) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel_id,
        "recipients": recipients
        if recipients is not None
        else [{"to": "+34612345678", "variables": {"nombre": "Ana", "monto": "10"}}],
    }
    body.update(overrides)
    return body


def post_json(client: APIClient, path: str, body: Any = None, *, raw: bytes | None = None, **extra):
    data = raw if raw is not None else orjson.dumps(body)
    return client.post(path, data=data, content_type=extra.pop("content_type", "application/json"), **extra)


def read_back(client: APIClient, broadcast_id: str) -> list[dict[str, Any]]:
    """GET the broadcast and every page of its recipients: each 200; returns the sends."""
    response = client.get(f"{BULK}/{broadcast_id}")
    assert response.status_code == 200, response.content[:2000]
    sends: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = client.get(f"{BULK}/{broadcast_id}/recipients", {"cursor": cursor} if cursor else {})
        assert response.status_code == 200, response.content[:2000]
        page = response.json()
        sends.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return sends


DEEP = "__DEEP__"


def deep_json(levels: int, *, kind: str = "dict", leaf: bytes = b"1") -> bytes:
    """The text of ``levels`` nested objects (``{"a": ...}``) or arrays around ``leaf``: written by
    hand, since orjson writes at most 254 levels."""
    opener, closer = (b'{"a":', b"}") if kind == "dict" else (b"[", b"]")
    return opener * levels + leaf + closer * levels


def with_deep(body: Any, levels: int, *, kind: str = "dict") -> bytes:
    """``body`` as JSON with its ``DEEP`` placeholder string replaced by ``deep_json(levels)``."""
    return orjson.dumps(body).replace(f'"{DEEP}"'.encode(), deep_json(levels, kind=kind))
