"""Per-organization request limits (API_ORG_RATE_LIMITS, docs/api.md) beside the per-token ones: every token of
an organization counts against one budget, so more tokens buy no more requests; another organization is not
touched. Counted in Redis (the tests' real one), shared by every web process."""

import pytest
from django.core.cache import cache

from tests.core.hostile import assert_envelope
from tests.throttle_support import MID_HOUR, _pinned_clock, client_for  # noqa: F401 (the fixture is autouse)

pytestmark = pytest.mark.django_db
URL = "/v1/messages/bulk"


def test_tokens_of_one_organization_share_its_limit_and_another_organization_is_unaffected(
    make_token, other_org, settings
):
    settings.API_RATE_LIMITS = "100/min"
    settings.API_ORG_RATE_LIMITS = "5/min"
    tokens = [client_for(make_token()) for _ in range(3)]

    # 5 requests spread over 3 tokens, each far under its own limit, use up the organization's minute
    assert [tokens[i % 3].get(URL).status_code for i in range(5)] == [200] * 5
    for client in tokens:
        refused = client.get(URL)
        error = assert_envelope(refused, 429, "rate_limited")
        assert error["details"] == {"retry_after_seconds": 60, "limit": "org"}
        assert "organization" in error["message"]
        assert refused["Retry-After"] == "60"
        assert refused["RateLimit"] == '"org-min";r=0;t=60'
    # a new token of the same organization buys nothing
    assert client_for(make_token()).get(URL).status_code == 429

    # another organization's tokens are not touched
    other = client_for(make_token(organization=other_org))
    assert [other.get(URL).status_code for _ in range(5)] == [200] * 5
    assert other.get(URL).status_code == 429


def test_the_token_limit_still_applies_under_the_organization_limit(api, settings):
    settings.API_RATE_LIMITS = "2/min"
    settings.API_ORG_RATE_LIMITS = "100/min"
    assert [api.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    error = api.get(URL).json()["error"]
    assert error["details"]["limit"] == "token"


def test_requests_refused_for_the_token_do_not_use_up_the_organization(make_token, settings):
    settings.API_RATE_LIMITS = "1/min"
    settings.API_ORG_RATE_LIMITS = "3/min"
    busy = client_for(make_token())
    assert [busy.get(URL).status_code for _ in range(10)] == [200] + [429] * 9
    # the organization saw one accepted request: two more tokens still get theirs
    assert client_for(make_token()).get(URL).status_code == 200
    assert client_for(make_token()).get(URL).status_code == 200
    assert client_for(make_token()).get(URL).status_code == 429


def test_the_counts_live_in_redis_not_in_the_process(make_token, org, settings):
    settings.API_ORG_RATE_LIMITS = "4/min"
    client_for(make_token()).get(URL)
    client_for(make_token()).get(URL)
    # read straight from the Redis server, as another web process would
    key = cache.make_and_validate_key(f"throttle:org:{org.pk}:60:{int(MID_HOUR // 60)}")
    assert int(cache._cache.get_client(key).get(key)) == 2
    client = client_for(make_token())
    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_an_empty_setting_turns_the_organization_limit_off(make_token, settings):
    settings.API_RATE_LIMITS = "100/min"
    settings.API_ORG_RATE_LIMITS = ""
    clients = [client_for(make_token()) for _ in range(2)]
    assert all(c.get(URL).status_code == 200 for c in clients for _ in range(3))
    assert "org-" not in clients[0].get(URL)["RateLimit-Policy"]
