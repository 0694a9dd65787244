"""msg_http_requests_total and msg_http_request_seconds: by route template (never an id), method and status."""

import pytest

from core.request_metrics import route_of
from tests.metrics_support import scrape, value

OBJECT_ID = "0123456789abcdef01234567"


@pytest.fixture
def token_header(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_requests_are_labelled_by_route_template_and_status(client, db, token_header):
    before = scrape(client)
    assert client.get(f"/v1/messages/bulk/{OBJECT_ID}", **token_header).status_code == 404
    assert client.get(f"/v1/messages/bulk/{OBJECT_ID}/recipients", **token_header).status_code == 404
    assert client.get("/v1/messages/bulk", **token_header).status_code == 200
    assert client.get("/v1/no/such/thing/12345").status_code == 404
    assert client.get("/nothing-here-either").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    detail = "/v1/messages/bulk/{broadcast_id}"
    assert delta("msg_http_requests_total", route=detail, method="GET", status="404") == 1
    assert delta("msg_http_requests_total", route=detail + "/recipients", method="GET", status="404") == 1
    assert delta("msg_http_requests_total", route="/v1/messages/bulk", method="GET", status="200") == 1
    assert delta("msg_http_requests_total", route="unmatched", method="GET", status="404") == 2
    assert delta("msg_http_request_seconds_count", route=detail, method="GET") == 1
    assert delta("msg_http_request_seconds_bucket", route=detail, method="GET", le="+Inf") == 1
    # no label anywhere holds a path's id or an unknown path
    routes = {dict(labels).get("route", "") for (name, labels) in after if name.startswith("msg_http_")}
    assert not any(OBJECT_ID in r or "12345" in r or "nothing-here" in r for r in routes)


def test_odd_methods_are_bucketed(client, db):
    before = scrape(client)
    client.generic("BREW", "/v1/health/live")
    after = scrape(client)
    labels = {"route": "/v1/health/live", "method": "other"}
    assert value(after, "msg_http_requests_total", **labels) - value(before, "msg_http_requests_total", **labels) == 1


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/messages/bulk/" + OBJECT_ID + "/cancel", "/v1/messages/bulk/{broadcast_id}/cancel"),
        ("/v1/webhooks/whatsapp", "/v1/webhooks/whatsapp"),
        ("/admin/broadcasts/broadcast/" + OBJECT_ID + "/change/", "/admin/*"),
        ("/static/admin/css/base.css", "/static/*"),
        ("/v1/unknown/" + OBJECT_ID, "unmatched"),
        ("/metrics", "/metrics"),
    ],
)
def test_route_of(path, route, rf):
    from django.urls import Resolver404, resolve

    request = rf.get(path)
    try:
        request.resolver_match = resolve(path)
    except Resolver404:
        request.resolver_match = None
    assert route_of(request) == route
