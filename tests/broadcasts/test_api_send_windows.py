"""POST /v1/messages/bulk with ``send_window`` and ``recipients[i].timezone`` (docs/api.md): every bad input a 400 at
its path with nothing stored (the dry run too); the window kept as given and shown by GET; each send's zone resolved
once at ingest in the documented order; ``waiting.send_window`` and ``eta`` from the rule, also before the engine
looked at the sends."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from broadcasts.models import Broadcast, Send
from tests.broadcasts.test_api_create import URL, payload, post, stored

WINDOW = {"start": "09:00", "end": "21:00"}
pytestmark = pytest.mark.django_db


@pytest.fixture
def dispatched():
    with mock.patch("broadcasts.services.enqueue_dispatch") as enqueue:
        yield enqueue


def details_of(response) -> dict:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return error["details"]


@pytest.mark.parametrize(
    "window,path",
    [
        ("09:00-21:00", "send_window"),
        ([], "send_window"),
        ({"end": "21:00"}, "send_window.start"),
        ({"start": "09:00"}, "send_window.end"),
        ({"start": "9:00", "end": "21:00"}, "send_window.start"),
        ({"start": "24:00", "end": "21:00"}, "send_window.start"),
        ({"start": "09:60", "end": "21:00"}, "send_window.start"),
        ({"start": "09:00:00", "end": "21:00"}, "send_window.start"),
        ({"start": 900, "end": "21:00"}, "send_window.start"),
        ({"start": "09:00", "end": "２１:00"}, "send_window.end"),
        ({"start": "09:00", "end": "09:00"}, "send_window.end"),
        ({"start": "09:00", "end": "21:00", "days": ["mon", "tue", "funday"]}, "send_window.days[2]"),
        ({"start": "09:00", "end": "21:00", "days": ["Mon"]}, "send_window.days[0]"),
        ({"start": "09:00", "end": "21:00", "days": [1]}, "send_window.days[0]"),
        ({"start": "09:00", "end": "21:00", "days": []}, "send_window.days"),
        ({"start": "09:00", "end": "21:00", "days": "mon"}, "send_window.days"),
        ({"start": "09:00", "end": "21:00", "timezone": "Mars/Olympus"}, "send_window.timezone"),
        ({"start": "09:00", "end": "21:00", "timezone": "europe/madrid"}, "send_window.timezone"),
        ({"start": "09:00", "end": "21:00", "timezone": 1}, "send_window.timezone"),
        ({"start": "09:00", "end": "21:00", "timezone": "Europe/Madrid\x00"}, "send_window.timezone"),
        ({"start": "09:00", "end": "21:00", "timezone": "../../etc/passwd"}, "send_window.timezone"),
        ({"start": "09:00", "end": "21:00", "tz": "UTC"}, "send_window.tz"),
    ],
)
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bad_window_is_a_400_at_its_path_and_nothing_is_stored(api, channel, template, window, path, dry_run):
    details = details_of(post(api, payload(channel, send_window=window, dry_run=dry_run)))
    assert list(details) == [path]
    assert stored() == (0, 0, 0)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", 7, "UTC+1", "America/Mexico_city", "+01:00"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_a_bad_recipient_timezone_is_a_400_at_its_path(api, channel, template, zone, dry_run):
    body = payload(channel, n=3, send_window=WINDOW, dry_run=dry_run)
    body["recipients"][2]["timezone"] = zone
    assert list(details_of(post(api, body))) == ["recipients[2].timezone"]
    assert stored() == (0, 0, 0)


def test_every_bad_field_is_reported_at_once(api, channel, template):
    body = payload(channel, n=2, send_window={"start": "25:00", "end": "x", "days": ["mon", "xx"], "timezone": "Y"})
    body["recipients"][1]["timezone"] = "Nowhere/Else"
    assert set(details_of(post(api, body))) == {
        "send_window.start",
        "send_window.end",
        "send_window.days[1]",
        "send_window.timezone",
        "recipients[1].timezone",
    }
    assert stored() == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_zones_are_resolved_once_at_ingest_in_order(api, channel, template, dispatched):
    body = payload(channel, n=4, send_window=WINDOW)
    body["recipients"][0]["to"] = "+12125550123"
    body["recipients"][0]["timezone"] = "Asia/Tokyo"  # the recipient's own zone first
    body["recipients"][1]["to"] = "+12125550124"  # New York by its number
    body["recipients"][2]["to"] = "+34912345678"  # Madrid by its number
    body["recipients"][3] = {"user_id": "BR.1234567890", "variables": {"nombre": "Ana", "monto": "1"}}
    assert post(api, body).status_code == 202
    zones = list(Send.objects.order_by("index").values_list("time_zone", flat=True))
    assert zones == ["Asia/Tokyo", "America/New_York", "Europe/Madrid", "America/Sao_Paulo"]

    # the window's own zone comes before the number's
    body["send_window"] = {**WINDOW, "timezone": "Europe/Lisbon"}
    response = post(api, body)
    assert response.status_code == 202
    broadcast_id = response.json()["broadcast_id"]
    zones = list(Send.objects.filter(broadcast_id=broadcast_id).order_by("index").values_list("time_zone", flat=True))
    assert zones == ["Asia/Tokyo", "Europe/Lisbon", "Europe/Lisbon", "Europe/Lisbon"]


@pytest.mark.django_db(transaction=True)
def test_without_a_window_no_zone_is_stored_and_get_shows_null(api, channel, template, dispatched):
    response = post(api, payload(channel, n=2))
    assert response.status_code == 202
    assert set(Send.objects.values_list("time_zone", flat=True)) == {""}
    data = api.get(f"{URL}/{response.json()['broadcast_id']}").json()
    assert data["send_window"] is None
    assert data["waiting"]["send_window"] == 0


@pytest.mark.django_db(transaction=True)
def test_get_shows_the_window_as_given_and_what_waits_for_it(api, channel, template, dispatched):
    # Monday 2026-12-07 12:00 UTC: 13:00 in Madrid (open), 07:00 in New York (opens 14:00 UTC), 21:00 in Tokyo
    # (closed until 00:00 UTC).
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    window = {"start": "09:00", "end": "21:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    body = payload(channel, n=6, send_window=window)
    numbers = ["+34912345671", "+34912345672", "+12125550101", "+12125550102", "+12125550103", "+819012345678"]
    for recipient, number in zip(body["recipients"], numbers, strict=True):
        recipient["to"] = number
    with mock.patch("broadcasts.services.timezone.now", return_value=now):
        response = post(api, body)
    assert response.status_code == 202
    broadcast = Broadcast.objects.get(id=response.json()["broadcast_id"])
    assert broadcast.send_window == window
    Broadcast.objects.filter(id=broadcast.id).update(status="IN_PROGRESS", started_at=now)
    with mock.patch("broadcasts.api.views.timezone.now", return_value=now):
        data = api.get(f"{URL}/{broadcast.id}").json()
    assert data["send_window"] == window
    assert data["waiting"] == {"schedule": 0, "throughput": 2, "messaging_limit": 0, "send_window": 4, "retry": 0}
    # the last: Tokyo's one send when Tuesday's window opens there (00:00 UTC), at the cap
    eta = datetime.fromisoformat(data["eta"])
    assert now + timedelta(hours=12) <= eta <= now + timedelta(hours=12, seconds=1)


def test_the_dry_run_eta_waits_for_the_window(api, channel, template):
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    body = payload(channel, n=2, dry_run=True, send_window={"start": "09:00", "end": "21:00"})
    body["recipients"][0]["to"] = "+34912345671"  # open now
    body["recipients"][1]["to"] = "+525512345678"  # 06:00 in Mexico City: opens at 15:00 UTC
    with mock.patch("broadcasts.previews.timezone.now", return_value=now):
        response = post(api, body)
    assert response.status_code == 200, response.content
    eta = datetime.fromisoformat(response.json()["eta"])
    assert now + timedelta(hours=3) <= eta <= now + timedelta(hours=3, seconds=1)
    body.pop("send_window")
    with mock.patch("broadcasts.previews.timezone.now", return_value=now):
        plain = datetime.fromisoformat(post(api, body).json()["eta"])
    assert plain <= now + timedelta(seconds=1)
    assert stored() == (0, 0, 0)


def test_the_admin_broadcast_page_shows_its_window(admin_client, channel, template, dispatched):
    from django.urls import reverse

    window = {"start": "22:00", "end": "06:00", "days": ["fri", "sat"], "timezone": "Europe/Madrid"}
    with_window = post_ok(admin_client, channel, send_window=window)
    without = post_ok(admin_client, channel)
    page = admin_client.get(reverse("admin:broadcasts_broadcast_change", args=[with_window])).content.decode()
    assert "Send window" in page and "22:00-06:00 fri,sat (Europe/Madrid)" in page
    page = admin_client.get(reverse("admin:broadcasts_broadcast_change", args=[without])).content.decode()
    assert "Send window" in page and "22:00-06:00" not in page


def post_ok(_client, channel, **overrides) -> str:
    from broadcasts import services

    result = services.broadcast_create(organization=channel.organization, body=payload(channel, n=1, **overrides))
    return result.body["broadcast_id"]
