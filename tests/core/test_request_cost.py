"""No header, query or cursor makes a request cost more than a normal one of the same size (docs/operations.md):
the request id header, the user agent, Accept (content negotiation), the query string and the pagination cursor
each get the shapes that make backtracking parsers work hardest. CPU time of this process (the server side of the
test client; PostgreSQL's work is another process), the least of several rounds."""

import pytest
from rest_framework.test import APIClient

from tests.core.test_log_cost import cpu_seconds

pytestmark = pytest.mark.django_db
SIZE = 8000
SHAPES = {
    "dots": "a.",
    "equals": "=",
    "pairs": "a=a&",
    "one long token": "x",
    "latin-1": "é.ß-",
    "commas and semicolons": "a;q=1,",
    "media ranges": "*/*;",
    "quotes and backslashes": '"\\',
}
NORMAL = {
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 ",
    "HTTP_X_REQUEST_ID": "5f0c2d9e8a7b4c1d",
    "HTTP_ACCEPT": "application/json, text/plain;q=0.9, */*;q=0.8, ",
    "QUERY_STRING": "status=sent&limit=100&",
    "cursor": "WzE3MDAwMDAwMDAsIjY3NDZmMGExYzNiMmExZjBlOWQ4YzdiNiJd",
}


def _fill(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture
def client(token, settings) -> APIClient:
    settings.API_RATE_LIMITS = "1000000/min"
    settings.API_ORG_RATE_LIMITS = "1000000/min"
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def _request(client: APIClient, part: str, value: str):
    if part == "cursor":
        return client.get("/v1/messages/bulk", {"cursor": value})
    return client.get("/v1/messages/bulk", **{part: value})


@pytest.mark.parametrize("part", list(NORMAL))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_no_shape_of_a_header_query_or_cursor_costs_more_than_a_normal_one(client, part, shape):
    size = 4000 if part in ("QUERY_STRING", "cursor") else SIZE
    normal, hostile = _fill(NORMAL[part], size), _fill(SHAPES[shape], size)
    assert _request(client, part, normal).status_code < 500
    response = _request(client, part, hostile)
    assert response.status_code < 500
    ratio = cpu_seconds(lambda: _request(client, part, hostile), repetitions=4) / cpu_seconds(
        lambda: _request(client, part, normal), repetitions=4
    )
    assert ratio < 3, f"{part} shaped as {shape}: {ratio:.1f} times a normal request"
