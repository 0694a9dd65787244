"""OpenAPI schema and readable docs, served by the service itself without a token."""

import re
from unittest import mock

import orjson
import pytest

import config
from broadcasts.api import serializers as s
from tests.broadcasts.test_api_create import URL, payload, post


def test_schema_describes_every_bulk_operation(anon_api, db):
    response = anon_api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = orjson.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["version"] == config.__version__  # the service's own version, as GET /v1/health says
    paths = schema["paths"]
    assert set(paths["/v1/messages/bulk"]) >= {"get", "post"}
    create = paths["/v1/messages/bulk"]["post"]
    assert set(create["responses"]) >= {"202", "400", "401", "403", "409", "413", "415", "429"}
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    for suffix in (
        "{broadcast_id}",
        "{broadcast_id}/recipients",
        "{broadcast_id}/cancel",
        "{broadcast_id}/pause",
        "{broadcast_id}/resume",
    ):
        assert f"/v1/messages/bulk/{suffix}" in paths
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
    assert "ErrorEnvelope" in schema["components"]["schemas"]


def test_docs_page_loads_nothing_from_elsewhere(anon_api, db):
    response = anon_api.get("/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert re.findall(r"(?:https?:)?//[^\"' )]+", html) == []
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts and all(src.startswith("/") for src in scripts)
    for src in scripts:
        asset = anon_api.get(src)
        assert asset.status_code == 200
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content])[:100]


@pytest.mark.parametrize(
    "representation,serializer",
    [("broadcast", s.BroadcastDetailSerializer), ("recipient", s.SendSerializer)],
)
def test_documented_shapes_match_what_is_returned(api, channel, template, representation, serializer):
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        broadcast_id = post(api, payload(channel, n=1)).json()["broadcast_id"]
    if representation == "broadcast":
        returned = api.get(f"{URL}/{broadcast_id}").json()
        assert set(returned["counts"]) == set(s.CountsSerializer().fields)
    else:
        returned = api.get(f"{URL}/{broadcast_id}/recipients").json()["data"][0]
    assert set(returned) == set(serializer().fields)


@pytest.mark.parametrize("path", ["/v1/schema", "/v1/docs", "/v1/health"])
def test_public_pages_ignore_a_bad_token(anon_api, db, path):
    # given a client that sends a token the service does not know
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer kbai_pk_" + "x" * 43)
    # when it asks for a page that needs no token, then the token is not checked at all
    assert anon_api.get(path).status_code == 200


def test_the_schema_is_built_once_per_process(anon_api, db):
    from drf_spectacular.generators import SchemaGenerator

    from core.api.schema_view import schema_cache_clear

    schema_cache_clear()
    accept = {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}
    with mock.patch.object(
        SchemaGenerator, "get_schema", autospec=True, side_effect=SchemaGenerator.get_schema
    ) as built:
        first = anon_api.get("/v1/schema", **accept)
        second = anon_api.get("/v1/schema", {"version": "x", "lang": "de"}, **accept)
        yaml = anon_api.get("/v1/schema")
    assert built.call_count == 1
    assert first.status_code == second.status_code == yaml.status_code == 200
    assert first.content == second.content
    assert yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert b"openapi:" in yaml.content
