"""Property-based fuzzing of the API with Hypothesis (docs/api.md and docs/rules.md).

Arbitrary JSON (NUL, lone surrogates, invalid UTF-8, deep nesting, integers past 64 bits, huge
floats) in every part of the bulk body, the endpoints API and Meta's webhook, and arbitrary
paths, methods and query strings under /v1/, all with a valid token. The properties:

- no answer is a 5xx;
- every 4xx is the contract's envelope;
- whatever is accepted (202) reads back: the broadcast and every page of its recipients answer
  200, each send's meta_data equal to what was sent.

Bounded: a few hundred examples per property, well under a minute in all.
"""

import json
import string
from unittest import mock
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.core.hostile import (
    BULK,
    META_WEBHOOK,
    WEBHOOKS,
    assert_envelope,
    assert_no_500,
    client_for,
    deep_json,
    read_back,
)
from tests.events.helpers import meta_signature

# `make test-extended` (out of `make test` and CI's time budget; tests/core/test_hostile_input.py covers the same
# refusals case by case in `make test`).
pytestmark = [pytest.mark.django_db, pytest.mark.extended]

META_SECRET = "meta-app-secret"
BASE = settings(
    deadline=None,
    database=None,  # no .hypothesis folder in the tree
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the fixtures are the same for every example, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


def fuzz(examples: int) -> settings:
    return settings(BASE, max_examples=examples)


# --- strategies ------------------------------------------------------------------------------

NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "\ud83d\ude00",
    "\\u0000",
    "\\",
    '"',
    "\u2028",
    "\ufeff",
    "\U0010ffff",
    "\x7f",
    "\x1b[31m",
    "%00",
    "../..",
    "null",
    "NaN",
    "+34612345678",
    "welcome_v2",
    "1e999",
    "9" * 400,
]
# Any code point, surrogates included (the default alphabet leaves them out).
any_char = st.characters(exclude_categories=())
text = st.one_of(
    st.sampled_from(NASTY_STRINGS),
    st.text(any_char, max_size=30),
    st.text(st.sampled_from(["\x00", "\ud800", "a", "\u00e9", "\\", "/", "%"]), max_size=6),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, 10**30, -(10**30)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e19, -1e19, 9.2e18, 1e308, -1e308, 5e-324, -0.0, 0.1]),
)
leaves = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=12,
)


class Deep:
    """A placeholder for ``levels`` of nesting, written by hand at encoding time."""

    def __init__(self, levels: int, kind: str) -> None:
        self.levels, self.kind = levels, kind


deep = st.builds(Deep, st.one_of(st.integers(0, 70), st.integers(70, 1100)), st.sampled_from(["dict", "list"]))
values = st.one_of(json_values, json_values, json_values, deep)


def encode(value, *, ascii_only: bool) -> bytes:
    """JSON text of ``value``: big integers, lone surrogates (escaped, or raw and so invalid
    UTF-8) and ``Deep`` placeholders included, none of which orjson would write."""
    deeps: list[Deep] = []

    def swap(node):
        if isinstance(node, Deep):
            deeps.append(node)
            return f"__deep_{len(deeps) - 1}__"
        if isinstance(node, dict):
            return {k: swap(v) for k, v in node.items()}
        if isinstance(node, list):
            return [swap(v) for v in node]
        return node

    raw = json.dumps(swap(value), ensure_ascii=ascii_only, allow_nan=False).encode("utf-8", "surrogatepass")
    for i, node in enumerate(deeps):
        raw = raw.replace(f'"__deep_{i}__"'.encode(), deep_json(node.levels, kind=node.kind), 1)
    return raw


def mostly(good, bad):
    """Three times in four the well-formed shape, so that the parts inside it are reached."""
    return st.one_of(good, good, good, bad)


def sometimes(strategy, usual):
    """Mostly the usual (valid) value, so that what surrounds it gets checked too; else anything."""
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), strategy)


# What a well-behaved client sends: no NUL, no lone surrogate, numbers a 64-bit reader can hold.
clean_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)
clean_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
        st.floats(min_value=-(2.0**62), max_value=2.0**62),
        st.sampled_from([-0.0, 5e-324, 1e-300, 1e18, 9.2e18, 2**64 - 1]),
        clean_text,
    ),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(clean_text, children, max_size=4)),
    max_leaves=12,
)
# meta_data is the body's 4th level: a Deep of up to 60 levels as one of its values stays within 64.
clean_meta = st.dictionaries(
    clean_text,
    st.one_of(clean_json, clean_json, st.builds(Deep, st.integers(0, 60), st.sampled_from(["dict", "list"]))),
    max_size=4,
)
VALID_NUMBERS = ["+34612345678", "+525512345678", "+14155552671", "+447400123456", "+5511987654321"]
valid_recipient = st.fixed_dictionaries(
    {"to": st.sampled_from(VALID_NUMBERS)},
    optional={
        "variables": st.fixed_dictionaries(
            {}, optional={"nombre": clean_text, "monto": clean_text, "extra": clean_text}
        ),
        "meta_data": st.one_of(st.none(), clean_meta),
    },
)
# Where a mutation may land in an otherwise valid body (index 0 of recipients always exists).
MUTATION_PATHS = [
    ("template_name",),
    ("language",),
    ("channel_id",),
    ("campaign_name",),
    ("scheduled_at",),
    ("extra",),
    ("recipients",),
    ("recipients", 0),
    ("recipients", 0, "to"),
    ("recipients", 0, "variables"),
    ("recipients", 0, "variables", "nombre"),
    ("recipients", 0, "meta_data"),
    ("recipients", 0, "meta_data", "k"),
    ("recipients", 0, "extra"),
]


def _child(node, step):
    """``node[step]`` when it exists (an earlier mutation may have replaced the parent), else None."""
    if isinstance(node, dict):
        return node.get(step)
    if isinstance(node, list) and isinstance(step, int) and step < len(node):
        return node[step]
    return None


@st.composite
def bulk_bodies(draw, channel_id: str, phone_number_id: str):
    """A valid body with 0 to 3 of its parts replaced by anything; now and then anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    body = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": draw(st.sampled_from([channel_id, phone_number_id])),
        "recipients": draw(st.lists(valid_recipient, min_size=1, max_size=4)),
    }
    if draw(st.booleans()):
        body["campaign_name"] = draw(clean_text)
    if draw(st.booleans()):
        body["scheduled_at"] = draw(
            st.sampled_from([None, "2030-01-01T00:00:00Z", "2099-01-01T00:00:00+01:00", "9999-12-31T23:59:59+14:00"])
        )
    for path in draw(st.lists(st.sampled_from(MUTATION_PATHS), max_size=3)):
        parent = body
        for step in path[:-1]:
            parent = _child(parent, step)
        if isinstance(parent, dict) or _child(parent, path[-1]) is not None:
            parent[path[-1]] = draw(values)
    return body


IDEMPOTENCY_KEYS = st.one_of(
    st.none(),
    st.none(),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40),
    st.text(st.characters(max_codepoint=0xFF), max_size=300),
)


def json_equal(a, b) -> bool:
    """Equal as JSON: a number is its decimal value, whatever its Python type. jsonb keeps the
    decimal orjson wrote (6.719614037475494e16 comes back as 67196140374754940, the same number
    for every JSON reader), but Python compares that int exactly with the float's binary value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# --- properties ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _settings(settings):
    settings.API_RATE_LIMITS = "1000000/min"
    settings.API_ORG_RATE_LIMITS = "1000000/min"
    settings.WHATSAPP_APP_SECRET = META_SECRET
    settings.WEBHOOKS_ALLOW_PRIVATE = True  # no DNS lookups for fuzzed hosts


@pytest.fixture(autouse=True)
def _no_dispatch():
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        yield


@fuzz(300)
@given(data=st.data())
def test_fuzzed_bulk_bodies_never_500_and_what_is_accepted_reads_back(token, channel, template, data):
    client = client_for(token)
    body = data.draw(bulk_bodies(channel.id, channel.phone_number_id), label="body")
    raw = encode(body, ascii_only=data.draw(st.booleans(), label="ascii"))
    key = data.draw(IDEMPOTENCY_KEYS, label="idempotency_key")
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}

    response = client.post(BULK, data=raw, content_type="application/json", **headers)

    event(f"bulk {response.status_code}")
    assert_envelope(response)
    if response.status_code == 202:
        sent = orjson.loads(raw)["recipients"]
        sends = read_back(client, response.json()["broadcast_id"])
        assert len(sends) == len(sent)
        for send, recipient in zip(sends, sent, strict=True):
            assert json_equal(send["meta_data"], recipient.get("meta_data")), (send, recipient)


SEGMENTS = st.one_of(
    st.sampled_from(
        ["messages", "bulk", "recipients", "cancel", "pause", "resume", "webhooks", "whatsapp", "health", "schema"]
    ),
    st.sampled_from(["ffffffffffffffffffffffff", "%00", "", ".", "..", "%2F"]),
    text,
)
PATH_IDS = st.one_of(
    st.sampled_from(
        ["%00", "ffffffffffffffffffffffff", "fffffffffffffffffffffff%00", "FFFFFFFFFFFFFFFFFFFFFFFF", "%ff"]
    ),
    text,
)
ROUTES = [
    "messages/bulk",
    "messages/bulk/{id}",
    "messages/bulk/{id}/recipients",
    "messages/bulk/{id}/cancel",
    "messages/bulk/{id}/pause",
    "messages/bulk/{id}/resume",
    "webhooks",
    "webhooks/{id}",
    "webhooks/whatsapp",
    "health",
]
QUERY_KEYS = st.one_of(st.sampled_from(["limit", "cursor", "status", "format", "hub.mode", "hub.challenge"]), text)


def _quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@fuzz(300)
@given(data=st.data())
def test_fuzzed_paths_methods_and_queries_never_500(token, channel, template, data):
    client = client_for(token)
    # a real broadcast id now and then, so that the deeper routes are reached too
    broadcast_id = data.draw(st.sampled_from([None, "existing"]), label="use_broadcast")
    segments = data.draw(st.lists(SEGMENTS, max_size=5), label="segments")
    if broadcast_id:
        created = client.post(
            BULK,
            data=orjson.dumps(
                {
                    "template_name": "welcome_v2",
                    "language": "es",
                    "channel_id": channel.id,
                    "recipients": [{"to": "+34612345678"}],
                }
            ),
            content_type="application/json",
        )
        assert created.status_code == 202
        segments = ["messages", "bulk", created.json()["broadcast_id"], *segments[:2]]
    route = data.draw(st.sampled_from([None, *ROUTES]), label="route")
    if route is not None and not broadcast_id:
        segments = route.format(id=data.draw(PATH_IDS, label="id")).split("/")
    path = "/v1/" + "/".join(_quote(s) if s not in ("%00", "%2F") else s for s in segments)
    query = data.draw(st.lists(st.tuples(QUERY_KEYS, text), max_size=4), label="query")
    if query:
        path += "?" + "&".join(f"{_quote(k)}={_quote(v)}" for k, v in query)
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]), label="method")
    body = encode(data.draw(values, label="body"), ascii_only=True) if method in ("POST", "PUT", "PATCH") else b""

    response = client.generic(method, path, body, content_type="application/json")

    event(f"path {response.status_code}")
    assert_no_500(response)
    if response.status_code >= 400 and method != "HEAD":
        assert_envelope(response)


ENDPOINT_URLS = st.one_of(
    st.just("http://example.com/hook"),
    st.builds(lambda host, rest: f"http://{host}/{rest}", text, text),
    st.builds(lambda scheme, rest: f"{scheme}://{rest}", text, text),
    values,
)
EVENTS = st.one_of(
    st.none(),
    st.lists(st.sampled_from(["message.sent", "message.failed", "broadcast.completed"]) | text, max_size=4),
    values,
)


@fuzz(150)
@given(data=st.data())
def test_fuzzed_endpoint_bodies_never_500_and_what_is_created_reads_back(token, data):
    client = client_for(token)
    body = data.draw(
        st.one_of(
            st.fixed_dictionaries({"url": ENDPOINT_URLS}, optional={"events": EVENTS, "extra": values}),
            values,
        ),
        label="body",
    )
    response = client.post(WEBHOOKS, data=encode(body, ascii_only=True), content_type="application/json")
    event(f"endpoints {response.status_code}")
    assert_envelope(response)
    if response.status_code == 201:
        endpoint_id = response.json()["id"]
        assert client.get(f"{WEBHOOKS}/{endpoint_id}").status_code == 200
        listing = client.get(WEBHOOKS)
        assert listing.status_code == 200 and endpoint_id in {e["id"] for e in listing.json()["data"]}


def meta_status():
    return st.fixed_dictionaries(
        {
            "id": st.one_of(st.just("wamid.fuzz"), text, values),
            "status": mostly(st.sampled_from(["delivered", "read", "failed", "sent"]), text),
        },
        optional={
            "timestamp": st.one_of(st.integers(-(2**70), 2**70).map(str), values),
            "recipient_id": values,
            "errors": st.one_of(
                st.lists(
                    st.fixed_dictionaries(
                        {}, optional={"code": values, "title": values, "message": values, "error_data": values}
                    ),
                    max_size=2,
                ),
                values,
            ),
            "pricing": values,
            "biz_opaque_callback_data": values,
            "conversation": values,
        },
    )


def meta_change():
    status_value = st.fixed_dictionaries(
        {"statuses": mostly(st.lists(meta_status(), min_size=1, max_size=4), values)},
        optional={"metadata": values, "messaging_product": values, "messages": values, "contacts": values},
    )
    template_value = st.fixed_dictionaries(
        {},
        optional={
            "event": st.sampled_from(["APPROVED", "PAUSED", "DISABLED", "REJECTED"]) | text,
            "message_template_id": values,
            "message_template_name": sometimes(values, "welcome_v2"),
            "message_template_language": sometimes(values, "es"),
            "reason": values,
        },
    )
    return st.one_of(
        st.fixed_dictionaries({"field": st.just("messages"), "value": status_value}),
        st.fixed_dictionaries({"field": st.just("messages"), "value": status_value}),
        st.fixed_dictionaries({"field": st.just("message_template_status_update"), "value": template_value}),
        st.fixed_dictionaries({"field": text, "value": values}),
        values,
    )


@fuzz(200)
@given(data=st.data())
def test_fuzzed_signed_meta_webhooks_are_2xx_or_4xx(channel, template, data):
    entry = st.fixed_dictionaries(
        {
            "id": sometimes(values, channel.waba_id),
            "changes": mostly(st.lists(meta_change(), min_size=1, max_size=3), values),
        },
        optional={"time": values},
    )
    payload = data.draw(
        mostly(
            st.fixed_dictionaries(
                {"object": st.just("whatsapp_business_account"), "entry": st.lists(entry, min_size=1, max_size=3)}
            ),
            values,
        ),
        label="payload",
    )
    raw = encode(payload, ascii_only=data.draw(st.booleans(), label="ascii"))
    response = client_for(None).post(
        META_WEBHOOK,
        data=raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=meta_signature(raw, META_SECRET),
    )
    assert_envelope(response)


@fuzz(100)
@given(
    authorization=st.one_of(
        st.text(st.characters(max_codepoint=0xFF), max_size=200).map(lambda t: "Bearer " + t),
        st.text(st.characters(max_codepoint=0xFF), max_size=200),
        st.text(string.ascii_letters + string.digits + "_-", min_size=32, max_size=140).map(
            lambda t: "Bearer kbai_pk_" + t
        ),
    )
)
def test_fuzzed_authorization_headers_are_401(db, authorization):
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.get(BULK)
    assert_envelope(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
