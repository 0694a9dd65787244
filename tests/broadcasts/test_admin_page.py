"""The broadcast's admin page as a cockpit (broadcasts/admin_page.py): chart numbers, funnel, failures with advice,
cost, the paused reason's fix, and the Retry by error code through the API's retry service."""

from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from broadcasts import services
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.activity_support import MIX_PER_MINUTE, broadcast_with_sends

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    """A superuser's client without hashing a password (a second or more on a busy machine)."""
    client.force_login(get_user_model().objects.create_superuser("operator", "ops@example.com", password=None))
    return client


@pytest.fixture
def winter(channel, template) -> Broadcast:
    return broadcast_with_sends(
        channel, template, cost_currency="EUR", cost_estimated=Decimal("2.5"), billed=Decimal("0.625")
    )


def change_url(broadcast) -> str:
    return reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])


def retry_url(broadcast) -> str:
    return reverse("admin:broadcasts_broadcast_retry", args=[broadcast.pk])


def test_the_page_charts_the_sends_and_lists_the_numbers(admin_client, winter):
    response = admin_client.get(change_url(winter))
    assert response.status_code == 200
    context = response.context
    assert dict(context["activity_rows"]) == MIX_PER_MINUTE
    assert context["activity_totals"] == {"sent": 15, "delivered": 7, "read": 4, "failed": 6}
    html = response.content.decode()
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="svg-chart line-chart"' in html
    assert 'data-series="failed" data-label="10:02" data-count="5"' in html
    assert "<script" not in html.split('id="activity-chart"')[1].split("</svg>")[0]  # drawn, not scripted


def test_funnel_cost_and_failures_with_what_to_do(admin_client, winter):
    context = admin_client.get(change_url(winter)).context
    assert [(s["name"], s["count"], s["rate_text"]) for s in context["funnel"]] == [
        ("attempted", 18, ""),
        ("sent", 12, "66.7% of attempted"),
        ("delivered", 7, "58.3% of sent"),
        ("read", 4, "57.1% of delivered"),
    ]
    assert context["cost"] == {
        "currency": "EUR",
        "estimated": "2.50",
        "billed": "0.625",
        "share": "25.0%",
        "max_cost": None,
    }
    failures = {row["code"]: row for row in context["failures"]}
    assert list(failures) == ["131049", "131026", "130429"]
    assert failures["131049"]["kind"] == "held" and "Retry" in failures["131049"]["action"]
    assert failures["131026"]["retryable"] == 0 and "Clean the list" in failures["131026"]["action"]
    assert failures["130429"]["fix_url"] == reverse("admin:templates_registry_channel_change", args=[winter.channel_id])
    assert context["pause"] is None and context["retry_url"] == retry_url(winter)


def test_a_190_pause_says_to_replace_the_channels_token_and_links_its_page(admin_client, winter):
    Broadcast.objects.filter(pk=winter.pk).update(
        status=BroadcastStatus.PAUSED,
        paused_reason={"code": "190", "message": "Error validating access token: Session has expired"},
    )
    response = admin_client.get(change_url(winter))
    pause = response.context["pause"]
    assert pause["code"] == "190" and pause["fix"] == "channel"
    assert pause["action"].startswith("Replace the channel's access token") and "Resume" in pause["action"]
    channel_page = reverse("admin:templates_registry_channel_change", args=[winter.channel_id])
    assert pause["fix_url"] == channel_page
    html = response.content.decode()
    assert f'href="{channel_page}" id="pause-fix-link"' in html and "Session has expired" in html


def test_retry_requeues_only_the_chosen_codes_retryable_sends(admin_client, winter):
    # the API's own service, called as the API calls it
    with mock.patch("broadcasts.admin_page.broadcast_retry", wraps=services.broadcast_retry) as service:
        response = admin_client.post(retry_url(winter), {"error_codes": ["131049"]}, follow=True)
    service.assert_called_once_with(broadcast_id=winter.id, body={"error_codes": ["131049"]})
    assert "Retry: 3 send(s) of 131049 pending again." in response.content.decode()
    assert Send.objects.filter(broadcast=winter, status=SendStatus.PENDING).count() == 2 + 3
    assert set(
        Send.objects.filter(broadcast=winter, status=SendStatus.FAILED).values_list("error_code", flat=True)
    ) == {
        "131026",
        "130429",
    }
    winter.refresh_from_db()
    assert (winter.failed, winter.pending, winter.status) == (3, 5, BroadcastStatus.IN_PROGRESS)


def test_retry_of_nothing_or_of_a_bad_time_changes_nothing_and_says_why(admin_client, winter):
    response = admin_client.post(retry_url(winter), {}, follow=True)
    assert "Not retried: The request is invalid" in response.content.decode()
    response = admin_client.post(retry_url(winter), {"error_codes": ["131049"], "not_before": "tomorrow"}, follow=True)
    assert "Not retried:" in response.content.decode() and "not_before" in response.content.decode()
    response = admin_client.post(retry_url(winter), {"error_codes": ["131026"]}, follow=True)
    assert "no retryable failed send of 131026; nothing re-queued" in response.content.decode()
    assert Send.objects.filter(broadcast=winter, status=SendStatus.FAILED).count() == 6
    assert admin_client.get(retry_url(winter)).status_code == 405


def test_retry_needs_the_change_permission_and_is_not_offered_without_it(client, winter):
    viewer = get_user_model().objects.create_user("viewer", password=None, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_broadcast"))
    client.force_login(viewer)
    page = client.get(change_url(winter))
    assert (
        page.status_code == 200 and page.context["retry_url"] == "" and 'id="retry-form"' not in page.content.decode()
    )
    assert client.post(retry_url(winter), {"error_codes": ["131049"]}).status_code == 403
    assert Send.objects.filter(broadcast=winter, status=SendStatus.FAILED).count() == 6


def test_no_retry_for_a_cancelled_broadcast(admin_client, winter):
    Broadcast.objects.filter(pk=winter.pk).update(status=BroadcastStatus.CANCELLED)
    assert admin_client.get(change_url(winter)).context["retry_url"] == ""
    response = admin_client.post(retry_url(winter), {"error_codes": ["131049"]}, follow=True)
    assert "Not retried: The broadcast cannot be retried: it is CANCELLED." in response.content.decode()
