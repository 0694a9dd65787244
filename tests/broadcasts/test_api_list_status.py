"""GET /v1/messages/bulk?status=...: the broadcast list of one status, in any case (docs/api.md)."""

import pytest

from broadcasts.models import Broadcast, BroadcastStatus
from tests.broadcasts.test_api_create import URL
from tests.broadcasts.test_api_read import _no_dispatch, create  # noqa: F401  (the fixture is autouse)


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [b["broadcast_id"] for b in response.json()["data"]]


@pytest.fixture
def three(api, channel, template) -> dict[str, str]:
    """A PENDING, a COMPLETED and an IN_PROGRESS broadcast: status -> id."""
    made = {}
    for status in (BroadcastStatus.PENDING, BroadcastStatus.COMPLETED, BroadcastStatus.IN_PROGRESS):
        broadcast = create(api, channel, n=1)
        Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
        made[status] = broadcast.id
    return made


@pytest.mark.parametrize("given", ["completed", "COMPLETED", "Completed"])
def test_the_status_filter_takes_any_case(api, three, given):
    assert _ids(api.get(URL, {"status": given})) == [three[BroadcastStatus.COMPLETED]]


def test_in_progress_and_an_empty_match(api, three):
    assert _ids(api.get(URL, {"status": "in_progress"})) == [three[BroadcastStatus.IN_PROGRESS]]
    assert _ids(api.get(URL, {"status": "cancelled"})) == []
    # without the filter: all three, newest first
    assert _ids(api.get(URL)) == list(three.values())[::-1]


def test_the_filter_pages_with_its_cursor(api, channel, template):
    # given 5 completed broadcasts between failed ones
    completed = []
    for i in range(10):
        broadcast = create(api, channel, n=1)
        status = BroadcastStatus.COMPLETED if i % 2 else BroadcastStatus.FAILED
        Broadcast.objects.filter(pk=broadcast.pk).update(status=status)
        if i % 2:
            completed.append(broadcast.id)
    # when paged two at a time with the filter
    seen, cursor = [], None
    while True:
        response = api.get(URL, {"status": "completed", "limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += _ids(response)
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    # then every completed one once, newest first, and nothing else
    assert seen == completed[::-1]


@pytest.mark.parametrize("given", ["done", "", "completed,failed", "PENDINGX", "\x00"])
def test_an_unknown_status_is_400(api, db, given):
    response = api.get(URL, {"status": given})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "completed" in error["details"]["status"][0]
