"""Per-token request limits (API_RATE_LIMITS) on the bulk API: 429 rate_limited with Retry-After."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.api.throttling import rate_limits_parse
from tests.throttle_support import MID_HOUR, _pinned_clock, client_for  # noqa: F401 (the fixture is autouse)

URL = "/v1/messages/bulk"


def test_limits_are_parsed_with_several_windows():
    assert rate_limits_parse("60/min,1000/hour") == [(60, 60), (1000, 3600)]
    assert rate_limits_parse(" 5/s , 10/5s, 2/day ,3/minutes") == [(5, 1), (10, 5), (2, 86400), (3, 60)]
    with pytest.raises(ImproperlyConfigured):
        rate_limits_parse("lots/min")


def test_the_request_over_the_limit_is_429_with_retry_after(api, settings):
    # given a limit of 3 a minute read at request time
    settings.API_RATE_LIMITS = "3/min,1000/hour"
    assert [api.get(URL).status_code for _ in range(3)] == [200, 200, 200]

    # when the 4th comes within the minute
    response = api.get(URL)

    # then 429 in the envelope, with a Retry-After within the window
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) == 60


def test_every_window_applies(api, settings):
    settings.API_RATE_LIMITS = "100/min,2/hour"
    assert [api.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert int(api.get(URL).headers["Retry-After"]) == 1800


def test_limits_are_per_token(make_token, settings, db):
    settings.API_RATE_LIMITS = "2/min"
    first, second = client_for(make_token()), client_for(make_token())
    assert [first.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert second.get(URL).status_code == 200


def test_refused_requests_do_not_use_up_longer_windows(api, settings):
    settings.API_RATE_LIMITS = "1/min,3/hour"
    assert [api.get(URL).status_code for _ in range(5)] == [200, 429, 429, 429, 429]
    # a looser minute limit: the hour window only saw the one accepted request
    settings.API_RATE_LIMITS = "100/min,3/hour"
    assert [api.get(URL).status_code for _ in range(3)] == [200, 200, 429]


def test_schema_and_docs_are_not_throttled_per_token(api, settings):
    settings.API_RATE_LIMITS = "1/min"
    assert api.get(URL).status_code == 200
    assert api.get(URL).status_code == 429
    assert api.get("/v1/schema").status_code == 200
    assert api.get("/v1/docs").status_code == 200
