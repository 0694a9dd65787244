"""/v1/webhooks: create (secret once), list (no secrets), delete; scope, isolation, URL rules."""

import pytest

from events.models import WebhookEndpoint

URL = "/v1/webhooks"


def test_create_list_delete(api, allow_private):
    # When an endpoint is created
    response = api.post(URL, {"url": "http://127.0.0.1:8080/hooks", "events": ["message.failed"]}, format="json")
    assert response.status_code == 201
    created = response.json()
    assert created["url"] == "http://127.0.0.1:8080/hooks"
    assert created["events"] == ["message.failed"]
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    # Then the list shows it without its secret
    listed = api.get(URL)
    assert listed.status_code == 200
    [item] = listed.json()["data"]
    assert item["id"] == created["id"] and "secret" not in item
    assert created["secret"] not in listed.content.decode()
    # And deleting it removes it
    assert api.delete(f"{URL}/{created['id']}").status_code == 204
    assert api.get(URL).json()["data"] == []
    assert api.delete(f"{URL}/{created['id']}").status_code == 404


def test_events_default_to_all(api, allow_private):
    response = api.post(URL, {"url": "https://127.0.0.1/h"}, format="json")
    assert response.status_code == 201
    assert response.json()["events"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http:///nohost"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://[::1"}, "url"),
        ({"url": "https://127.0.0.1/x", "events": ["message.sent", "message.bogus"]}, "events"),
        ({"url": "https://127.0.0.1/x", "events": "message.sent"}, "events"),
        ({"url": 5}, "url"),
    ],
)
def test_invalid_bodies_are_400_and_store_nothing(api, allow_private, body, field):
    response = api.post(URL, body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(key.startswith(field) for key in error["details"])
    assert not WebhookEndpoint.objects.exists()


def test_invalid_json_is_400(api):
    response = api.generic("POST", URL, b"{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://localhost:8000/x",
        "https://10.1.2.3/x",
        "https://192.168.0.10/x",
        "https://172.16.5.4/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fe80::1]/x",
        "http://0.0.0.0/x",
        "http://100.64.0.1/x",
        "http://240.0.0.1/x",
        "http://224.0.0.1/x",
        "http://2130706433/x",
    ],
)
def test_private_and_reserved_addresses_are_refused(api, url):
    response = api.post(URL, {"url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert "url" in response.json()["error"]["details"]
    assert not WebhookEndpoint.objects.exists()


def test_public_addresses_are_accepted(api):
    response = api.post(URL, {"url": "https://93.184.215.14/hooks"}, format="json")
    assert response.status_code == 201


def test_a_name_that_does_not_resolve_yet_is_accepted(api):
    # Registration accepts it (a new DNS record, a resolver hiccup); every delivery checks it again.
    response = api.post(URL, {"url": "https://hooks.customer.invalid/whatsapp"}, format="json")
    assert response.status_code == 201


def test_private_addresses_allowed_with_the_setting(api, allow_private):
    assert api.post(URL, {"url": "http://localhost:8000/x"}, format="json").status_code == 201


def test_scope_webhooks_manage_is_required(make_token, anon_api):
    token = make_token(scopes=["messages:bulk"])
    anon_api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert anon_api.get(URL).status_code == 403
    assert anon_api.post(URL, {"url": "https://93.184.215.14/x"}, format="json").status_code == 403
    anon_api.credentials()
    response = anon_api.get(URL)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_other_organizations_endpoints_do_not_exist(api, other_org, make_token, anon_api, allow_private):
    theirs = anon_api
    theirs.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(organization=other_org)}")
    created = theirs.post(URL, {"url": "http://127.0.0.1:1/x"}, format="json").json()
    assert api.get(URL).json()["data"] == []
    assert api.get(f"{URL}/{created['id']}").status_code == 404
    assert api.delete(f"{URL}/{created['id']}").status_code == 404
    assert WebhookEndpoint.objects.get(id=created["id"]).deleted_at is None


def test_the_schema_describes_the_endpoints_api(anon_api, db):
    import orjson

    schema = orjson.loads(anon_api.get("/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    assert set(schema["paths"]["/v1/webhooks"]) >= {"get", "post"}
    assert "201" in schema["paths"]["/v1/webhooks"]["post"]["responses"]
    assert set(schema["paths"]["/v1/webhooks/{endpoint_id}"]) >= {"get", "delete"}
