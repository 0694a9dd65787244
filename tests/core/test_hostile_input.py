"""Hostile input over the whole API (docs/api.md and docs/rules.md): never a 500, always the envelope.

Every part of a request is attacked in turn: path segments, query parameters and cursors,
headers, content types, and bodies (shape, depth, NUL, numbers, size). What is accepted is
read back (GET the broadcast and its recipients: 200, the same meta_data).
"""

from unittest import mock

import orjson
import pytest

from broadcasts.models import Broadcast
from core.api.parsers import MAX_JSON_DEPTH
from templates_registry.models import Template
from tests.core.hostile import (
    BULK,
    DEEP,
    META_WEBHOOK,
    UNKNOWN_ID,
    WEBHOOKS,
    assert_envelope,
    assert_no_500,
    bulk_body,
    client_for,
    cursor_of,
    nest,
    post_json,
    read_back,
    with_deep,
)
from tests.events.helpers import meta_envelope, meta_signature, status_entry

pytestmark = pytest.mark.django_db

META_SECRET = "meta-app-secret"


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.API_RATE_LIMITS = "100000/min"
    settings.API_ORG_RATE_LIMITS = "100000/min"
    settings.WHATSAPP_APP_SECRET = META_SECRET
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # no DNS lookups for the hostile URLs below


@pytest.fixture(autouse=True)
def _no_dispatch():
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        yield


@pytest.fixture
def c(token):
    return client_for(token)


@pytest.fixture
def broadcast_id(c, channel, template) -> str:
    response = post_json(c, BULK, bulk_body(channel.id))
    assert response.status_code == 202, response.content
    return response.json()["broadcast_id"]


# --- path segments ---------------------------------------------------------------------------

ID_ROUTES = [
    ("get", BULK + "/{}"),
    ("get", BULK + "/{}/recipients"),
    ("post", BULK + "/{}/cancel"),
    ("post", BULK + "/{}/pause"),
    ("post", BULK + "/{}/resume"),
    ("get", WEBHOOKS + "/{}"),
    ("delete", WEBHOOKS + "/{}"),
]
BAD_IDS = [
    "%00",
    "%00" * 24,
    "fffffffffff%00ffffffffffff",
    "ffffffffffffffffffffff%00",
    "x" * 5000,
    "%ff%fe",
    "%C0%AF",
    "%E2%80%AE" * 8,
    "%F0%9F%98%80",
    "FFFFFFFFFFFFFFFFFFFFFFFF",
    UNKNOWN_ID + "0",
    UNKNOWN_ID[:-1],
    UNKNOWN_ID[:-1] + "%0A",
    "%20" + UNKNOWN_ID[1:],
    "%EF%BD%86" * 24,  # fullwidth f
    "%D9%A1" * 24,  # Arabic-Indic digit one
    "1';DROP TABLE broadcasts_send;--",
    "%25",
    "..",
    "null",
    UNKNOWN_ID,  # well formed, does not exist
]


@pytest.mark.parametrize("method,route", ID_ROUTES)
@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_a_path_id_that_names_nothing_is_404(c, method, route, bad_id):
    response = getattr(c, method)(route.format(bad_id))
    assert_envelope(response, 404, "not_found")


@pytest.mark.parametrize("method,route", ID_ROUTES)
def test_a_bad_path_id_without_a_token_is_still_401(db, method, route):
    response = getattr(client_for(None), method)(route.format("%00"))
    assert_envelope(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


UNKNOWN_PATHS = [
    "/v1",
    "/v1/",
    "/v1/nope",
    "/v1/%00",
    "/v1/messages",
    "/v1/messages/bulk/",
    "/v1/messages/bulk/x/y/z",
    f"/v1/messages/bulk/{UNKNOWN_ID}/nope",
    f"/v1/messages/bulk/{UNKNOWN_ID}/recipients/",
    f"/v1/messages/bulk/{UNKNOWN_ID}/cancel/x",
    "/v1/webhooks/whatsapp/x",
    f"/v1/webhooks/{UNKNOWN_ID}/x",
    "/v1/health/x",
    "/v1/" + "a/" * 500,
    "/v1/%ff%fe",
    "/v1//messages/bulk",
]


@pytest.mark.parametrize("path", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "head", "options"])
def test_unknown_paths_are_the_json_404(c, path, method):
    response = getattr(c, method)(path)
    assert_no_500(response)
    assert response.status_code == 404
    if method != "head":
        assert_envelope(response, 404, "not_found")


@pytest.mark.parametrize(
    "method,path",
    [
        ("put", BULK),
        ("patch", BULK),
        ("delete", BULK),
        ("delete", BULK + "/{id}"),
        ("post", BULK + "/{id}"),
        ("put", BULK + "/{id}/recipients"),
        ("post", BULK + "/{id}/recipients"),
        ("get", BULK + "/{id}/cancel"),
        ("delete", BULK + "/{id}/pause"),
        ("put", BULK + "/{id}/resume"),
        ("put", WEBHOOKS),
        ("delete", WEBHOOKS),
        ("post", WEBHOOKS + "/{id}"),
        ("post", "/v1/health"),
        ("delete", META_WEBHOOK),
        ("put", META_WEBHOOK),
        ("post", "/v1/schema"),
    ],
)
def test_wrong_methods_are_405_in_the_envelope(c, broadcast_id, method, path):
    response = getattr(c, method)(path.format(id=broadcast_id))
    assert_envelope(response, 405, "method_not_allowed")


def test_unheard_of_methods_are_405(c, broadcast_id):
    for method in ("FOO", "TRACE", "PROPFIND"):
        response = c.generic(method, f"{BULK}/{broadcast_id}")
        assert_envelope(response, 405, "method_not_allowed")


# --- query parameters and cursors -------------------------------------------------------------

BAD_LIMITS = ["0", "-1", "1001", "10" * 30, str(10**30), "1e3", "1.5", "%00", "5%00", "abc", "", " 5", "%ff"]
BAD_LIMITS += ["%D9%A1", "1_0", "+5", "0x10", "5" * 5000, "NaN", "Infinity", "%E2%80%AE5"]


@pytest.mark.parametrize("limit", BAD_LIMITS)
def test_a_bad_limit_is_400_on_every_list(c, broadcast_id, limit):
    for path in (BULK, f"{BULK}/{broadcast_id}/recipients"):
        error = assert_envelope(c.get(f"{path}?limit={limit}"), 400, "validation_error")
        assert set(error["details"]) == {"limit"}


BAD_CURSOR_VALUES = [
    b"\x00",
    b'["\\u0000", "\\u0000"]',
    b'["2026-01-01T00:00:00+00:00", "\\u0000"]',
    b'["\\u0000", "ffffffffffffffffffffffff"]',
    b'["2026-01-01T00:00:00", "ffffffffffffffffffffffff"]',  # naive
    b'["9999-12-31T23:59:59-23:59", "ffffffffffffffffffffffff"]',
    b'["0001-01-01T00:00:00+23:59", "x"]',
    b'["2026-01-01T00:00:00+00:00", "FFFFFFFFFFFFFFFFFFFFFFFF"]',
    b'["2026-01-01T00:00:00+00:00"]',
    b'["2026-01-01T00:00:00+00:00", "ffffffffffffffffffffffff", 1]',
    b"[18446744073709551615]",
    b"[-1]",
    b"[2147483648]",
    b"[1e400]",
    b"[1.5]",
    b"[true]",
    b'["1"]',
    b"[null]",
    b"[[[[[[[[[[1]]]]]]]]]]",
    b'{"a": 1}',
    b"1",
    b"null",
    b"",
    b"\xff\xfe\xfd",
    b"[\xed\xa0\x80]",
]
BAD_CURSOR_TEXTS = ["%00", "!!!!", "a", "=", "====", "a" * 201, "%ff", "Zm9v%00", "W10", "W10=" * 60, " W10"]


@pytest.mark.parametrize("cursor", [cursor_of(v) for v in BAD_CURSOR_VALUES] + BAD_CURSOR_TEXTS)
def test_a_cursor_this_api_did_not_write_is_400_on_every_list(c, broadcast_id, cursor):
    for path in (BULK, f"{BULK}/{broadcast_id}/recipients"):
        response = c.get(path, {"cursor": cursor}) if "%" not in cursor else c.get(f"{path}?cursor={cursor}")
        error = assert_envelope(response, 400, "validation_error")
        assert set(error["details"]) == {"cursor"}, error


def test_the_cursors_this_api_writes_still_page(c, channel, template):
    for _ in range(3):
        assert post_json(c, BULK, bulk_body(channel.id)).status_code == 202
    page = c.get(BULK, {"limit": 2}).json()
    rest = c.get(BULK, {"limit": 2, "cursor": page["next_cursor"]})
    assert rest.status_code == 200 and len(rest.json()["data"]) == 1


@pytest.mark.parametrize("status", ["%00", "sent%00", "%ff", "x" * 10000, "", "SENT,READ", "%C3%9F", "pending "])
def test_a_bad_status_filter_is_400(c, broadcast_id, status):
    error = assert_envelope(c.get(f"{BULK}/{broadcast_id}/recipients?status={status}"), 400, "validation_error")
    assert set(error["details"]) == {"status"}


def test_too_many_query_fields_is_400(c, broadcast_id):
    query = "&".join(f"f{i}=1" for i in range(1200))
    for path in (BULK, f"{BULK}/{broadcast_id}/recipients", WEBHOOKS):
        assert_envelope(c.get(f"{path}?{query}"), 400)


@pytest.mark.parametrize(
    "query", ["%00=%00", "limit", "limit=&limit=", "cursor=&limit=5", "%ff%fe=%ff", "a=" + "b" * 100000]
)
def test_odd_query_strings_never_500(c, broadcast_id, query):
    for path in (BULK, f"{BULK}/{broadcast_id}", f"{BULK}/{broadcast_id}/recipients", WEBHOOKS, "/v1/health"):
        assert_envelope(c.get(f"{path}?{query}"))


# --- headers ---------------------------------------------------------------------------------

BAD_AUTHORIZATION = [
    "Bearer",
    "Bearer ",
    "Bearer \x00",
    "Bearer kbai_pk_" + "A" * 40 + "\x00",
    "Bearer kbai_pk_" + "\u00c3\u00a9" * 20,  # UTF-8 "é" read as latin-1, as WSGI hands it over
    "Bearer kbai_pk_" + "A" * 100_000,
    "Bearer " + "A" * 1_000_000,
    "Basic dXNlcjpwYXNz",
    "Bearer a b",
    "\x00",
    "\x7f",
    "Bearer\tkbai_pk_" + "A" * 40,
    "bearer kbai_pk_",
    "Bearer kbai_pk_" + "A" * 40 + "\n",
    "Bearer kbai_pk_" + "A" * 40 + "\u2028",
]


@pytest.mark.parametrize("header", BAD_AUTHORIZATION)
def test_a_bad_authorization_header_is_401(db, channel, header):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=header)
    for response in (
        client.get(BULK),
        post_json(client, BULK, bulk_body(channel.id)),
        client.get(f"{BULK}/{UNKNOWN_ID}"),
        client.get(WEBHOOKS),
    ):
        assert_envelope(response, 401, "unauthorized")
        assert response["WWW-Authenticate"].startswith("Bearer")


BAD_IDEMPOTENCY_KEYS = ["", " ", "a b", "\x00", "key\x00", "\u00c3\u00a9", "\t", "k" * 256, "k" * 100_000, "\x7f", "\n"]


@pytest.mark.parametrize("key", BAD_IDEMPOTENCY_KEYS)
def test_a_bad_idempotency_key_is_400(c, channel, template, key):
    response = post_json(c, BULK, bulk_body(channel.id), HTTP_IDEMPOTENCY_KEY=key)
    error = assert_envelope(response, 400, "validation_error")
    assert set(error["details"]) == {"Idempotency-Key"}
    assert Broadcast.objects.count() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "application/jsonx",
        "application/json\x00",
        "text/json",
        "text/plain",
        "application/*",
        "*/*",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "\u00c3\u00a9",
        "application/json" + "x" * 10_000,
        "application/xml",
    ],
)
def test_other_content_types_are_415(c, channel, template, content_type):
    bodies = {BULK: orjson.dumps(bulk_body(channel.id)), WEBHOOKS: b'{"url": "http://example.com/"}'}
    for path, body in bodies.items():
        response = c.generic("POST", path, body, content_type=content_type)
        assert_envelope(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "APPLICATION/JSON", "application/json; charset=nope", "application/json;;;"],
)
def test_json_content_types_with_parameters_are_read(c, channel, template, content_type):
    response = c.post(BULK, data=orjson.dumps(bulk_body(channel.id)), content_type=content_type)
    assert_envelope(response, 202)


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "\x00", "*/*;q=abc", "application/json;q=0"])
def test_odd_accept_headers_never_500(c, broadcast_id, accept):
    for response in (c.get(BULK, HTTP_ACCEPT=accept), c.get(f"{BULK}/{broadcast_id}", HTTP_ACCEPT=accept)):
        assert_envelope(response)


def test_huge_and_control_headers_elsewhere_never_500(c, broadcast_id):
    headers = {
        "HTTP_X_REQUEST_ID": "\x00" + "r" * 100_000,
        "HTTP_USER_AGENT": "\u00c3\u00a9\x01",
        "HTTP_X_FORWARDED_FOR": "not-an-ip, \x00",
        "HTTP_COOKIE": "sessionid=\x00; csrftoken=" + "x" * 10_000,
        "HTTP_RANGE": "bytes=-1-",
    }
    assert_envelope(c.get(f"{BULK}/{broadcast_id}/recipients", **headers), 200)


# --- bulk bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"null", b"[]", b"[{}]", b"1", b"-0", b'"x"', b"true", b"\xef\xbb\xbf{}", b"\xff\xfe{\x00}", b"NaN"],
)
def test_bodies_that_are_not_objects_are_400(c, raw):
    for path in (BULK, WEBHOOKS):
        assert_envelope(post_json(c, path, raw=raw), 400)


def _deep_meta(levels: int) -> dict:
    # meta_data is the body's 4th level (body, recipients, recipient, meta_data): ``levels`` more below it
    return nest(levels, kind="dict")


@pytest.mark.parametrize("idempotency", [False, True])
def test_meta_data_nested_just_under_the_limit_is_accepted_and_read_back(c, channel, template, idempotency):
    meta = _deep_meta(MAX_JSON_DEPTH - 3)  # its innermost object sits at exactly the limit
    extra = {"HTTP_IDEMPOTENCY_KEY": "deep-1"} if idempotency else {}
    response = post_json(c, BULK, bulk_body(channel.id, [{"to": "+34612345678", "meta_data": meta}]), **extra)
    assert_envelope(response, 202)
    sends = read_back(c, response.json()["broadcast_id"])
    assert sends[0]["meta_data"] == meta
    if idempotency:  # and the replay of the same body too
        again = post_json(c, BULK, bulk_body(channel.id, [{"to": "+34612345678", "meta_data": meta}]), **extra)
        assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH - 3, MAX_JSON_DEPTH, 254, 255, 300, 1000, 1023, 1100, 100_000])
@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("idempotency", [False, True])
def test_meta_data_nested_past_the_limit_is_400(c, channel, template, levels, kind, idempotency):
    # meta_data (level 4) {"x": <levels>} reaches level 4 + levels: past the limit for every levels here
    extra = {"HTTP_IDEMPOTENCY_KEY": f"deep-{levels}"} if idempotency else {}
    raw = with_deep(bulk_body(channel.id, [{"to": "+34612345678", "meta_data": {"x": DEEP}}]), levels, kind=kind)
    error = assert_envelope(post_json(c, BULK, raw=raw, **extra), 400)
    if 4 + levels <= 1024:
        assert error["code"] == "validation_error"
        (path,) = error["details"]
        assert path.startswith("recipients[0].meta_data.x")
        assert error["details"][path] == [f"Nested deeper than {MAX_JSON_DEPTH} levels."]
    else:  # past orjson's own 1024 levels: not even parsed
        assert error["code"] == "invalid_json"
    assert Broadcast.objects.count() == 0


@pytest.mark.parametrize(
    "where",
    ["top", "variables", "recipient", "recipients", "template_name", "scheduled_at"],
)
def test_deep_nesting_anywhere_in_the_body_is_400(c, channel, template, where):
    body = bulk_body(channel.id)
    if where == "top":
        body["extra"] = DEEP
    elif where == "variables":
        body["recipients"][0]["variables"]["nombre"] = DEEP
    elif where == "recipient":
        body["recipients"][0]["extra"] = DEEP
    elif where == "recipients":
        body["recipients"].append(DEEP)
    else:
        body[where] = DEEP
    raw = with_deep(body, 300, kind="list")
    for extra in ({}, {"HTTP_IDEMPOTENCY_KEY": f"k-{where}"}):
        error = assert_envelope(post_json(c, BULK, raw=raw, **extra), 400, "validation_error")
        assert next(iter(error["details"].values())) == [f"Nested deeper than {MAX_JSON_DEPTH} levels."]


NUL_FIELDS = [
    ("template_name", "welcome\x00v2"),
    ("language", "e\x00s"),
    ("channel_id", "\x00"),
    ("campaign_name", "Promo\x00"),
    ("scheduled_at", "2030-01-01T00:00:00\x00+00:00"),
]


@pytest.mark.parametrize("field,value", NUL_FIELDS)
def test_nul_in_a_top_level_string_is_400_naming_it(c, channel, template, field, value):
    error = assert_envelope(post_json(c, BULK, bulk_body(channel.id, **{field: value})), 400)
    assert field in error["details"] or error["code"] in ("channel_not_found", "template_not_found")


@pytest.mark.parametrize(
    "recipient,path",
    [
        ({"to": "+34612345678\x00"}, "recipients[0].to"),
        ({"to": "\x00"}, "recipients[0].to"),
        ({"to": "+34612345678", "variables": {"nombre": "A\x00na"}}, "recipients[0].variables.nombre"),
        ({"to": "+34612345678", "variables": {"nom\x00bre": "Ana"}}, "recipients[0].variables"),
        ({"to": "+34612345678", "meta_data": {"k": "v\x00"}}, "recipients[0].meta_data"),
        ({"to": "+34612345678", "meta_data": {"k\x00": "v"}}, "recipients[0].meta_data"),
        ({"to": "+34612345678", "meta_data": {"k": [[{"z": "\x00"}]]}}, "recipients[0].meta_data"),
    ],
)
def test_nul_in_a_recipient_is_400_naming_its_path(c, channel, template, recipient, path):
    for extra in ({}, {"HTTP_IDEMPOTENCY_KEY": "nul"}):
        error = assert_envelope(post_json(c, BULK, bulk_body(channel.id, [recipient]), **extra), 400)
        assert path in error["details"], error


def test_nul_in_ignored_fields_is_harmless(c, channel, template):
    body = bulk_body(channel.id, [{"to": "+34612345678", "extra\x00": "\x00"}], **{"x\x00": "\x00"})
    response = post_json(c, BULK, body, HTTP_IDEMPOTENCY_KEY="ignored-nul")
    assert_envelope(response, 202)
    read_back(c, response.json()["broadcast_id"])


@pytest.mark.parametrize(
    "raw_string",
    [
        b'"\\ud800"',
        b'"\\udfff"',
        b'"\\ud800\\u0041"',
        b'"\xed\xa0\x80"',
        b'"\xc0\xaf"',
        b'"\xff"',
        b'"\x01"',
        b'"\x1f"',
    ],
)
def test_lone_surrogates_and_invalid_utf8_are_invalid_json(c, channel, template, raw_string):
    raw = orjson.dumps(bulk_body(channel.id, [{"to": "+34612345678", "meta_data": {"k": "PLACEHOLDER"}}]))
    raw = raw.replace(b'"PLACEHOLDER"', raw_string)
    for path in (BULK, WEBHOOKS):
        assert_envelope(post_json(c, path, raw=raw), 400, "invalid_json")


@pytest.mark.parametrize(
    "meta",
    [
        {"n": 18446744073709551615},
        {"n": -9223372036854775808},
        {"n": 9223372036854775807},
        {"n": 9.2e18},
        {"n": -9.2e18},
        {"n": 1e-320},
        {"n": -0.0},
        {"n": 0.1},
        {"s": "\u2028\u2029\ufeff\uffff\U0010ffff\x01\x1f\x7f"},
        {"s": "\\u0000", "t": "\\"},
        {"": {"": [None, True, False, "", 0]}},
        {"emoji": "\U0001f600" * 100},
    ],
)
def test_odd_but_storable_meta_data_is_read_back_unchanged(c, channel, template, meta):
    response = post_json(c, BULK, bulk_body(channel.id, [{"to": "+34612345678", "meta_data": meta}]))
    assert_envelope(response, 202)
    assert read_back(c, response.json()["broadcast_id"])[0]["meta_data"] == meta


@pytest.mark.parametrize(
    "raw_number", [b"1e19", b"-1e19", b"1.7976931348623157e308", b"18446744073709551616", b"1" + b"0" * 300, b"9.3e18"]
)
def test_meta_data_numbers_that_cannot_be_read_back_are_400(c, channel, template, raw_number):
    raw = orjson.dumps(bulk_body(channel.id, [{"to": "+34612345678", "meta_data": {"n": 0}}]))
    raw = raw.replace(b'{"n":0}', b'{"n":' + raw_number + b"}")
    error = assert_envelope(post_json(c, BULK, raw=raw), 400, "validation_error")
    assert "recipients[0].meta_data" in error["details"]


@pytest.mark.parametrize(
    "raw_number", [b"1e400", b"-1e400", b"1" + b"0" * 400, b"NaN", b"Infinity", b"-Infinity", b"0x10", b"01", b"+1"]
)
def test_numbers_json_does_not_have_are_invalid_json(c, channel, template, raw_number):
    raw = orjson.dumps(bulk_body(channel.id, [{"to": "+34612345678", "meta_data": {"n": 0}}]))
    raw = raw.replace(b'{"n":0}', b'{"n":' + raw_number + b"}")
    assert_envelope(post_json(c, BULK, raw=raw), 400, "invalid_json")


@pytest.mark.parametrize("value", [10**18, 1e308, -1, 0.5, True, None, [], {}, "x" * 1025])
def test_variables_that_are_not_short_strings_are_400(c, channel, template, value):
    body = bulk_body(channel.id, [{"to": "+34612345678", "variables": {"nombre": value, "monto": "1"}}])
    error = assert_envelope(post_json(c, BULK, body), 400, "validation_error")
    assert any(path.startswith("recipients[0].variables") for path in error["details"])


@pytest.mark.parametrize(
    "value",
    [10**18, 1e308, -0.0, True, None, [], {}, "", " ", "x" * 10_000, "\u00e9" * 600, "\U0001f600" * 300],
)
@pytest.mark.parametrize("field", ["template_name", "language", "channel_id", "campaign_name", "scheduled_at"])
def test_odd_top_level_values_never_500(c, channel, template, field, value):
    response = post_json(c, BULK, bulk_body(channel.id, **{field: value}))
    assert_envelope(response)
    if response.status_code == 202:
        read_back(c, response.json()["broadcast_id"])


@pytest.mark.parametrize(
    "recipients",
    [
        None,
        {},
        "x",
        [None],
        [[]],
        [1],
        [{"to": None}],
        [{"to": 34612345678}],
        [{"to": ["+34612345678"]}],
        [{"to": "+" + "9" * 10_000}],
        [{"to": "+\u0663\u0664\u0666\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668"}],
        [{"to": "+34612345678", "variables": "x"}],
        [{"to": "+34612345678", "variables": {str(i): "v" for i in range(5000)}}],
        [{"to": "+34612345678", "meta_data": []}],
        [{"to": "+34612345678", "meta_data": "x" * 10_000}],
        [{"to": "+34612345678", "meta_data": {"k": "x" * 5000}}],
        [{"to": "+34612345678"}] * 5001,
    ],
)
def test_odd_recipients_never_500(c, channel, template, recipients):
    response = post_json(c, BULK, bulk_body(channel.id, recipients))
    assert_envelope(response)
    if response.status_code == 202:
        read_back(c, response.json()["broadcast_id"])


def test_a_long_template_name_without_campaign_name_gets_a_generated_name_that_fits(c, channel):
    # given an approved template whose name takes the whole column
    name = "t" * Template._meta.get_field("name").max_length
    Template.objects.create(
        waba_id=channel.waba_id, name=name, language="es", status=Template.Status.APPROVED, category="MARKETING"
    )
    # when a broadcast names no campaign
    response = post_json(c, BULK, bulk_body(channel.id, [{"to": "+34612345678"}], template_name=name))
    # then it is accepted with a generated name cut to fit the column, and reads back
    assert_envelope(response, 202)
    broadcast = Broadcast.objects.get(pk=response.json()["broadcast_id"])
    assert len(broadcast.campaign_name) <= Broadcast._meta.get_field("campaign_name").max_length
    assert broadcast.campaign_name.startswith("ttt") and broadcast.campaign_name.endswith(" UTC")
    assert c.get(f"{BULK}/{broadcast.id}").json()["campaign_name"] == broadcast.campaign_name


# --- the webhook endpoints API (/v1/webhooks) ----------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://\x00/"},
        {"url": "http://example.com/\x00"},
        {"url": "\x00"},
        {"url": "http://" + "a" * 3000 + ".com/"},
        {"url": "http://" + "a." * 1000 + "com/"},
        {"url": "http://[::1"},
        {"url": "http://example.com:99999/"},
        {"url": "http://example.com:-1/"},
        {"url": "http://\u00fc\u00f1\u00ee.example/"},
        {"url": "http://xn--/"},
        {"url": "javascript:alert(1)"},
        {"url": "http:///path"},
        {"url": "http://user:pass@/"},
        {"url": 12},
        {"url": None},
        {"url": ["http://example.com/"]},
        {"url": "http://example.com/", "events": "message.sent"},
        {"url": "http://example.com/", "events": ["\x00"]},
        {"url": "http://example.com/", "events": [{"a": 1}]},
        {"url": "http://example.com/", "events": ["x" * 10_000]},
        {"url": "http://example.com/", "events\x00": []},
        {},
    ],
)
def test_hostile_webhook_endpoint_bodies_are_4xx(c, body):
    response = post_json(c, WEBHOOKS, body)
    assert_envelope(response)
    assert response.status_code in (201, 400), response.content


def test_deep_and_nul_webhook_endpoint_bodies_are_400(c):
    deep = b'{"url": "http://example.com/", "events": ' + b"[" * 300 + b"]" * 300 + b"}"
    error = assert_envelope(post_json(c, WEBHOOKS, raw=deep), 400, "validation_error")
    assert list(error["details"]) == ["events" + "[0]" * (MAX_JSON_DEPTH - 1)]
    error = assert_envelope(post_json(c, WEBHOOKS, {"url": "http://example.com/", "x": {"y": "\x00"}}), 400)
    assert error["details"] == {"x.y": ["May not contain NUL characters."]}


# --- Meta's webhook (/v1/webhooks/whatsapp) ----------------------------------------------------------


def _signed(client, raw: bytes):
    return client.post(
        META_WEBHOOK,
        data=raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature(raw, META_SECRET),
    )


@pytest.mark.parametrize(
    "header",
    [
        "sha256=\u00e9" * 3,
        "sha256=" + "\u00c3\u00a9" * 32,
        "sha256=\x00",
        "sha256=" + "0" * 100_000,
        "\u00e9",
        "sha256= " + "0" * 64,
        "SHA256=" + "0" * 64,
    ],
)
def test_a_non_ascii_or_odd_signature_is_403(db, header):
    client = client_for(None)
    response = client.post(META_WEBHOOK, data=b"{}", content_type="application/json", HTTP_X_HUB_SIGNATURE_256=header)
    assert_envelope(response, 403, "invalid_signature")


def _status_body(**entry) -> dict:
    return meta_envelope(statuses=[status_entry("wamid.x", "delivered") | entry])


@pytest.mark.parametrize(
    "payload",
    [
        _status_body(id="wamid.\x00"),
        _status_body(id="\x00"),
        _status_body(id="w" * 10_000),
        _status_body(id=12),
        _status_body(id={"a": 1}),
        _status_body(status="\x00"),
        _status_body(status="failed", errors=[{"code": "\x00", "title": "\x00", "message": "\x00"}]),
        _status_body(status="failed", errors=[{"code": 1e30, "title": ["x"], "error_data": {"details": {"a": 1}}}]),
        _status_body(status="failed", errors="x"),
        _status_body(timestamp="9" * 5000),
        _status_body(timestamp=-1e20),
        _status_body(timestamp=-(2**63)),
        _status_body(timestamp="NaN"),
        _status_body(timestamp=1e308),
        _status_body(biz_opaque_callback_data="\x00"),
        _status_body(pricing={"category": "\x00"}),
        _status_body(id="wamid.nomatch", status="read", recipient_id="\x00"),
        meta_envelope(
            field="message_template_status_update", value={"event": "APPROVED", "message_template_id": "\x00"}
        ),
        meta_envelope(field="message_template_status_update", value={"event": "PAUSED", "message_template_id": 1e30}),
        meta_envelope(
            field="message_template_status_update",
            value={"event": "DISABLED", "message_template_name": "\x00", "message_template_language": "\x00"},
        ),
        meta_envelope(field="message_template_status_update", value={"event": ["x"], "message_template_id": {"a": 1}}),
        meta_envelope(field="\x00", value={"\x00": "\x00"}),
        meta_envelope(field="messages", value={"statuses": [None] * 1000}, waba_id="\x00"),
        {
            "entry": [
                {
                    "id": {"a": 1},
                    "changes": [{"field": "message_template_status_update", "value": {"event": "APPROVED"}}],
                }
            ]
        },
        {
            "object": "\x00",
            "entry": [{"changes": [{"field": "messages", "value": {"statuses": [{"id": "\x00"}] * 3}}]}],
        },
    ],
)
def test_signed_but_malformed_meta_webhooks_are_2xx_or_4xx(db, payload):
    response = _signed(client_for(None), orjson.dumps(payload))
    assert_envelope(response)


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH - 10, MAX_JSON_DEPTH + 1, 254, 300, 1000, 2000])
def test_signed_deep_meta_webhooks_are_2xx_or_4xx(db, levels):
    body = meta_envelope(statuses=[status_entry("wamid.deep", "read", x=DEEP)])
    raw = with_deep(body, levels, kind="list")
    response = _signed(client_for(None), raw)
    assert_envelope(response)
    # the status entry is the envelope's 7th level: x adds ``levels`` more
    assert response.status_code == (200 if levels + 7 <= MAX_JSON_DEPTH else 400)


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"null", b"\xff", b'"\\ud800"', b"{}" * 1000, b'{"a": NaN}'])
def test_signed_unparseable_meta_webhooks_are_400(db, raw):
    assert_envelope(_signed(client_for(None), raw), 400)
