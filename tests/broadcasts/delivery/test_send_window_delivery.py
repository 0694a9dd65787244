"""Send windows for real (docs/rules.md "Campaign controls: send windows"): a broadcast created through the service,
a Celery worker process (no beat: the broadcast's own wake brings the waiting sends back), the sandbox over HTTP
recording when each POST arrived.

Recipients in three zones, found from their numbers: the window is chosen from the current time so that it is open
in Tokyo now, opens at the next whole minute in Madrid, and opens hours later in Mexico City.
"""

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from broadcasts import services
from broadcasts.models import Broadcast, Send, WaitReason
from broadcasts.rules.send_windows import window_is_open, window_opens_at
from tests.delivery_support import wait_for
from tokens.services import token_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TOKYO = ["+819012345601", "+819012345602"]
MADRID = ["+34912345601", "+34912345602"]
MEXICO = ["+525512345601", "+525512345602"]
# The contract's promise: a send starts within 15 s after its window opens.
OPEN_WITHIN = 15.0


def madrid_window(now: datetime) -> tuple[dict, datetime]:
    """A 9-hour window starting at the next whole minute of Madrid's local time, and that instant."""
    local = now.astimezone(ZoneInfo("Europe/Madrid"))
    opens_local = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
    closes_local = opens_local + timedelta(hours=9)
    window = {"start": f"{opens_local:%H:%M}", "end": f"{closes_local:%H:%M}"}
    return window, opens_local.astimezone(UTC)


def posts_by_number(sandbox) -> dict[str, float]:
    return {r["body"]["to"]: r["received_at"] for r in sandbox.requests()}


def test_each_zone_is_posted_only_inside_its_window(channel, template, delivery_sandbox, worker, delivery_settings):
    # Given the current time well inside a minute (the Madrid opening 20-60 s ahead)
    if datetime.now(UTC).second > 40:
        time.sleep(62 - datetime.now(UTC).second)
    now = datetime.now(UTC)
    window, madrid_opens = madrid_window(now)
    assert window_is_open(window, "Asia/Tokyo", now)
    assert not window_is_open(window, "Europe/Madrid", now)
    assert not window_is_open(window, "America/Mexico_City", now)
    mexico_opens = window_opens_at(window, "America/Mexico_City", now)
    assert mexico_opens > now + timedelta(hours=1)

    # When a broadcast to two numbers of each zone is created through the service (validation, zones, COPY)
    numbers = [TOKYO[0], MADRID[0], MEXICO[0], TOKYO[1], MADRID[1], MEXICO[1]]
    body = {
        "template_name": template.name,
        "language": template.language,
        "channel_id": channel.id,
        "send_window": window,
        "recipients": [{"to": n, "variables": {"nombre": "Ana", "monto": "1"}} for n in numbers],
    }
    created = services.broadcast_create(organization=channel.organization, body=body)
    broadcast = Broadcast.objects.get(pk=created.body["broadcast_id"])
    zones = dict(Send.objects.filter(broadcast=broadcast).values_list("to", "time_zone"))
    assert {zones[n] for n in TOKYO} == {"Asia/Tokyo"} and {zones[n] for n in MADRID} == {"Europe/Madrid"}
    assert {zones[n] for n in MEXICO} == {"America/Mexico_City"}

    # Then Tokyo's sends leave at once, and nothing else before Madrid's window opens
    wait_for(lambda: set(TOKYO) <= set(posts_by_number(delivery_sandbox)), timeout=10, message="Tokyo posted")
    assert set(posts_by_number(delivery_sandbox)) == set(TOKYO)
    waiting = wait_for(
        lambda: Send.objects.filter(broadcast=broadcast, wait_reason=WaitReason.SEND_WINDOW).count() == 4 or None,
        timeout=10,
        message="Madrid and Mexico deferred",
    )
    assert waiting
    deferred = dict(Send.objects.filter(broadcast=broadcast, status="PENDING").values_list("to", "next_attempt_at"))
    for number in MADRID:
        assert madrid_opens <= deferred[number] <= madrid_opens + timedelta(seconds=1)
    for number in MEXICO:
        assert mexico_opens <= deferred[number] <= mexico_opens + timedelta(seconds=1)
    progress = read(channel, broadcast.id)
    assert progress["waiting"]["send_window"] == 4 and progress["send_window"] == window

    # And Madrid's leave within 15 s after their window opened, never before
    wait_for(
        lambda: set(MADRID) <= set(posts_by_number(delivery_sandbox)),
        timeout=(madrid_opens - datetime.now(UTC)).total_seconds() + OPEN_WITHIN + 5,
        message="Madrid posted",
    )
    posts = posts_by_number(delivery_sandbox)
    for number in MADRID:
        assert madrid_opens.timestamp() <= posts[number] <= madrid_opens.timestamp() + OPEN_WITHIN, number
    time.sleep(2)

    # And Mexico City's wait, still PENDING for their window, counted and timed by the broadcast's GET
    assert set(posts_by_number(delivery_sandbox)) == set(TOKYO) | set(MADRID)
    assert len(delivery_sandbox.requests()) == 4  # each posted once
    rows = Send.objects.filter(broadcast=broadcast).values_list("to", "status", "wait_reason", "attempts")
    states = {to: (status, reason, attempts) for to, status, reason, attempts in rows}
    for number in MEXICO:
        assert states[number] == ("PENDING", WaitReason.SEND_WINDOW, 0)  # no attempt spent on waiting
    progress = read(channel, broadcast.id)
    assert progress["status"] == "IN_PROGRESS"
    assert progress["waiting"] == {"schedule": 0, "throughput": 0, "messaging_limit": 0, "send_window": 2, "retry": 0}
    eta = datetime.fromisoformat(progress["eta"])
    assert mexico_opens <= eta <= mexico_opens + timedelta(seconds=2)

    # And cancelling the broadcast cancels the sends waiting for their window (nothing left running for hours)
    services.broadcast_cancel(broadcast_id=broadcast.id)
    statuses = dict(Send.objects.filter(broadcast=broadcast).values_list("to", "status"))
    assert {statuses[n] for n in MEXICO} == {"CANCELLED"}


def read(channel, broadcast_id: str) -> dict:
    issued = token_create(organization=channel.organization, name="reader", scopes=["messages:bulk"])
    response = APIClient().get(f"/v1/messages/bulk/{broadcast_id}", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 200, response.content
    return response.json()
