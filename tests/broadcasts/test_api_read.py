"""GET /v1/messages/bulk/{id}, the list and the recipients listing (docs/api.md)."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from broadcasts.counts import counts_rebuild
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.test_api_create import URL, payload, post


@pytest.fixture(autouse=True)
def _no_dispatch():
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        yield


def create(api, channel, n=5, **overrides) -> Broadcast:
    response = post(api, payload(channel, n=n, **overrides))
    assert response.status_code == 202, response.content
    return Broadcast.objects.get(pk=response.json()["broadcast_id"])


def set_statuses(broadcast: Broadcast, statuses: list[str]) -> None:
    for index, status in enumerate(statuses):
        fields = {"status": status}
        if status == SendStatus.FAILED:
            fields.update(error_code="131026", error_message="Message undeliverable.", error_retryable=False)
        Send.objects.filter(broadcast=broadcast, index=index).update(**fields)
    # Written behind the engine's back: the kept counts are recounted (what the engine does as it goes).
    counts_rebuild(broadcast_ids=[broadcast.id])


def test_status_has_every_field_and_counts_adding_up(api, channel, template):
    # given a broadcast whose 10 sends are in every status
    broadcast = create(api, channel, n=10, campaign_name="Promo")
    set_statuses(broadcast, ["SENT", "DELIVERED", "DELIVERED", "READ", "FAILED", "FAILED", "CANCELLED", "PENDING"])

    # when read
    response = api.get(f"{URL}/{broadcast.id}")

    # then every field of the contract, counts per status adding up to the total
    assert response.status_code == 200
    data = response.json()
    assert data["broadcast_id"] == broadcast.id and data["campaign_name"] == "Promo"
    assert data["status"] == "PENDING" and data["template_name"] == "welcome_v2" and data["language"] == "es"
    assert data["channel_id"] == channel.id and data["total_recipients"] == 10
    assert data["counts"] == {"pending": 3, "sent": 1, "delivered": 2, "read": 1, "failed": 2, "cancelled": 1}
    assert sum(data["counts"].values()) == data["total_recipients"]
    # failed / (total - pending - cancelled) = 2 / 6
    assert data["error_rate"] == 0.3333
    assert data["scheduled_at"] is None and data["started_at"] is None and data["completed_at"] is None
    assert data["created_at"].endswith("Z")
    assert datetime.fromisoformat(data["created_at"]) == broadcast.created_at
    assert data["paused_reason"] is None


def test_error_rate_is_zero_when_nothing_was_attempted(api, channel, template):
    broadcast = create(api, channel, n=2)
    data = api.get(f"{URL}/{broadcast.id}").json()
    assert data["error_rate"] == 0 and data["counts"]["pending"] == 2


def test_paused_broadcast_shows_its_reason(api, channel, template):
    broadcast = create(api, channel)
    reason = {"code": "131031", "message": "Business account locked."}
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.PAUSED, paused_reason=reason)
    assert api.get(f"{URL}/{broadcast.id}").json()["paused_reason"] == reason


def test_timestamps_are_utc(api, channel, template):
    broadcast = create(api, channel)
    started = datetime(2026, 11, 27, 14, 3, 0, tzinfo=UTC)
    Broadcast.objects.filter(pk=broadcast.pk).update(started_at=started, completed_at=started + timedelta(seconds=5))
    data = api.get(f"{URL}/{broadcast.id}").json()
    assert data["started_at"] == "2026-11-27T14:03:00Z" and data["completed_at"] == "2026-11-27T14:03:05Z"


def test_another_organizations_broadcast_is_404(api, channel, template, other_org, make_token):
    broadcast = create(api, channel)
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(organization=other_org)}")
    for path in ("", "/recipients"):
        response = other.get(f"{URL}/{broadcast.id}{path}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    for action in ("cancel", "pause", "resume"):
        assert other.post(f"{URL}/{broadcast.id}/{action}").status_code == 404
    assert other.get(URL).json() == {"data": [], "next_cursor": None}


def test_unknown_broadcast_is_404(api, db):
    assert api.get(f"{URL}/ffffffffffffffffffffffff").status_code == 404
    assert api.get(f"{URL}/not-an-id-at-all").status_code == 404


def test_list_is_newest_first_with_a_cursor(api, channel, template):
    # given 5 broadcasts created a minute apart
    ids = []
    for minute in range(5):
        broadcast = create(api, channel, n=1)
        Broadcast.objects.filter(pk=broadcast.pk).update(created_at=timezone.now() + timedelta(minutes=minute))
        ids.append(broadcast.id)

    # when listed two at a time
    seen, cursor, pages = [], None, 0
    while True:
        response = api.get(URL, {"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        body = response.json()
        seen += [b["broadcast_id"] for b in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    # then each comes once, newest first, with its counts
    assert seen == ids[::-1] and pages == 3
    assert api.get(URL).json()["data"][0]["counts"]["pending"] == 1


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "x"},
        {"cursor": "garbage!"},
        {"cursor": "WzFd"},
        {"cursor": "WyJ4IiwieSJd"},
    ],
)
def test_list_bad_limit_or_cursor_is_400(api, db, params):
    response = api.get(URL, params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_list_default_limit_is_50(api, channel, template):
    broadcast = create(api, channel, n=1)
    Broadcast.objects.bulk_create(
        [
            Broadcast(
                organization=broadcast.organization,
                channel=channel,
                template=broadcast.template,
                template_name="welcome_v2",
                language="es",
                campaign_name=f"c{i}",
                total_recipients=0,
            )
            for i in range(60)
        ]
    )
    body = api.get(URL).json()
    assert len(body["data"]) == 50 and body["next_cursor"]
    assert len(api.get(URL, {"limit": 100}).json()["data"]) == 61


def test_recipients_in_request_order_with_fields(api, channel, template):
    # given a broadcast whose second send failed at Meta
    broadcast = create(api, channel, n=3)
    Send.objects.filter(broadcast=broadcast, index=0).update(
        message_id="wamid.A", attempts=2, unknown_outcomes=1, meta_status="held_for_quality_assessment"
    )
    set_statuses(broadcast, ["SENT", "FAILED"])

    response = api.get(f"{URL}/{broadcast.id}/recipients")

    assert response.status_code == 200
    data = response.json()
    assert data["next_cursor"] is None
    first, second, third = data["data"]
    assert [r["index"] for r in data["data"]] == [0, 1, 2]
    assert first["status"] == "SENT" and first["message_id"] == "wamid.A" and first["attempts"] == 2
    assert first["meta_status"] == "held_for_quality_assessment" and first["unknown_outcomes"] == 1
    assert third["meta_status"] is None and third["unknown_outcomes"] == 0
    assert first["error"] is None and first["variables"] == {"nombre": "Ana 0", "monto": "10"}
    assert first["meta_data"] == {"customer": 0} and first["updated_at"].endswith("Z")
    assert second["error"] == {"code": "131026", "message": "Message undeliverable.", "retryable": False}
    assert third["status"] == "PENDING" and third["message_id"] is None
    assert set(first) == {
        "index",
        "to",
        "user_id",
        "status",
        "message_id",
        "attempts",
        "error",
        "variables",
        "meta_data",
        "updated_at",
        "pricing",
        "meta_status",
        "unknown_outcomes",
    }


@pytest.mark.parametrize("status", ["failed", "FAILED", "Failed"])
def test_recipients_status_filter_takes_any_case(api, channel, template, status):
    broadcast = create(api, channel, n=6)
    set_statuses(broadcast, ["FAILED", "SENT", "FAILED", "SENT", "FAILED"])
    data = api.get(f"{URL}/{broadcast.id}/recipients", {"status": status}).json()["data"]
    assert [r["index"] for r in data] == [0, 2, 4]


def test_recipients_pages_with_cursor(api, channel, template):
    broadcast = create(api, channel, n=7)
    set_statuses(broadcast, ["FAILED"] * 7)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "status": "failed", **({"cursor": cursor} if cursor else {})}
        body = api.get(f"{URL}/{broadcast.id}/recipients", params).json()
        seen += [r["index"] for r in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(7))


@pytest.mark.parametrize(
    "params", [{"status": "lost"}, {"limit": 0}, {"limit": 1001}, {"cursor": "%%%"}, {"cursor": "WyJ4Il0"}]
)
def test_recipients_bad_parameters_are_400(api, channel, template, params):
    broadcast = create(api, channel, n=1)
    response = api.get(f"{URL}/{broadcast.id}/recipients", params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_every_endpoint_needs_a_token_and_the_bulk_scope(anon_api, make_token, channel, template):
    # given a token without messages:bulk
    limited = APIClient()
    limited.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(scopes=['templates:read'])}")
    calls = [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}/x"),
        ("get", f"{URL}/x/recipients"),
        ("post", f"{URL}/x/cancel"),
        ("post", f"{URL}/x/pause"),
        ("post", f"{URL}/x/resume"),
    ]
    for method, path in calls:
        # then without a token: 401 with WWW-Authenticate; with the wrong scope: 403
        response = getattr(anon_api, method)(path)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == "unauthorized"
        response = getattr(limited, method)(path)
        assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
