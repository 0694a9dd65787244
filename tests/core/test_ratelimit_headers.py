"""RateLimit-Policy and RateLimit (IETF draft-ietf-httpapi-ratelimit-headers, structured fields) on every
authenticated response, 429s included, for the tightest of the token's limits, its organization's among them
(docs/api.md)."""

import re

import pytest
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient

from core.api.throttling import WindowCount, rate_limit_headers

pytestmark = pytest.mark.django_db
URL = "/v1/messages/bulk"
RATELIMIT = re.compile(r'"(?P<name>[a-z0-9-]+)";r=(?P<r>\d+);t=(?P<t>\d+)')
# The organization's windows follow the token's in the policy.
ORG = ', "org-min";q=300;w=60, "org-hour";q=5000;w=3600'


@pytest.fixture(autouse=True)
def _org_limits(settings):
    settings.API_ORG_RATE_LIMITS = "300/min,5000/hour"


def _parsed(response) -> tuple[str, int, int]:
    match = RATELIMIT.fullmatch(response["RateLimit"])
    assert match, response["RateLimit"]
    return match["name"], int(match["r"]), int(match["t"])


def test_the_policy_names_every_limit_and_ratelimit_counts_down_to_the_429(api, settings):
    settings.API_RATE_LIMITS = "3/min,10/hour"
    seen = []
    for _ in range(3):
        response = api.get(URL)
        assert response.status_code == 200
        assert response["RateLimit-Policy"] == '"min";q=3;w=60, "hour";q=10;w=3600' + ORG
        seen.append(_parsed(response))
    assert [(name, r) for name, r, _t in seen] == [("min", 2), ("min", 1), ("min", 0)]
    assert all(1 <= t <= 60 for _name, _r, t in seen)

    # the 4th is refused and says so, with the wait of Retry-After
    refused = api.get(URL)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert refused["RateLimit-Policy"] == '"min";q=3;w=60, "hour";q=10;w=3600' + ORG
    name, remaining, reset = _parsed(refused)
    assert (name, remaining) == ("min", 0)
    assert reset == int(refused["Retry-After"])
    # a refused request is not counted: the next one still sees the same hour budget
    assert api.get(URL).status_code == 429


def test_the_tightest_limit_is_the_one_with_the_fewest_left(api, settings):
    settings.API_RATE_LIMITS = "100/min,2/hour"
    first = api.get(URL)
    assert first["RateLimit-Policy"] == '"min";q=100;w=60, "hour";q=2;w=3600' + ORG
    assert _parsed(first)[:2] == ("hour", 1)
    name, remaining, reset = _parsed(api.get(URL))
    assert (name, remaining) == ("hour", 0) and 1 <= reset <= 3600
    refused = api.get(URL)
    assert refused.status_code == 429 and _parsed(refused)[:2] == ("hour", 0)
    assert _parsed(refused)[2] == int(refused["Retry-After"])


def test_every_authenticated_answer_carries_them_errors_too(api, make_token, settings):
    settings.API_RATE_LIMITS = "50/min"
    responses = {
        "400": api.get(URL, {"limit": 0}),
        "404 broadcast": api.get(f"{URL}/{'0' * 24}"),
        "404 path": api.get("/v1/nothing"),  # a route outside DRF: no token is read, no headers
        "405": api.delete(URL),
        "415": api.post(URL, b"x", content_type="text/plain"),
    }
    for what in ("400", "404 broadcast", "405", "415"):
        assert responses[what]["RateLimit-Policy"] == '"min";q=50;w=60' + ORG, what
    assert "RateLimit" not in responses["404 path"]
    # each counted once: 4 DRF requests so far
    assert _parsed(api.get(URL))[1] == 50 - 5

    # a 403 (missing scope) is decided before the throttle: its headers are read from the counters
    limited = APIClient(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['messages:bulk'])}")
    limited.get(URL)
    forbidden = limited.get("/v1/webhooks")
    assert forbidden.status_code == 403
    assert forbidden["RateLimit-Policy"] == '"min";q=50;w=60' + ORG
    assert _parsed(forbidden)[:2] == ("min", 49)


@pytest.mark.parametrize("authorization", [None, "Bearer kbai_pk_" + "x" * 40, "Basic abc"])
def test_no_headers_without_a_valid_token(authorization):
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    for response in (client.get(URL), client.get("/v1/health")):
        assert "RateLimit" not in response and "RateLimit-Policy" not in response


def test_the_headers_also_come_from_a_cache_other_than_redis(api, settings, tmp_path):
    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": str(tmp_path)}}
    settings.API_RATE_LIMITS = "2/min"
    with override_settings(CACHES=locmem):
        assert type(caches["default"]).__name__ == "LocMemCache"
        assert _parsed(api.get(URL))[:2] == ("min", 1)
        assert _parsed(api.get(URL))[:2] == ("min", 0)
        refused = api.get(URL)
        assert refused.status_code == 429 and _parsed(refused)[:2] == ("min", 0)


def test_header_values_for_odd_windows():
    windows = [
        WindowCount(limit=10, window=5, used=3, reset=4.2),
        WindowCount(limit=5, window=86400, used=5, reset=0.1),
    ]
    assert rate_limit_headers(windows) == {
        "RateLimit-Policy": '"5s";q=10;w=5, "day";q=5;w=86400',
        "RateLimit": '"day";r=0;t=1',
    }
    assert rate_limit_headers([]) == {}
