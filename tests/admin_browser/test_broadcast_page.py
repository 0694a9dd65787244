"""A broadcast's page as an operator sees it in headless Chromium: the chart of its sends over time (drawn, with the
numbers beside it), the funnel, failures by code with what to do, the fix of a 190 pause, and Retry by error code."""

from decimal import Decimal

import pytest

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.activity_support import MIX_PER_MINUTE, broadcast_with_sends

pytestmark = pytest.mark.browser

SERIES = ("sent", "delivered", "read", "failed")


@pytest.fixture
def winter(channel, template) -> Broadcast:
    return broadcast_with_sends(
        channel, template, cost_currency="EUR", cost_estimated=Decimal("2.5"), billed=Decimal("0.625")
    )


def change_path(broadcast: Broadcast) -> str:
    return f"/admin/broadcasts/broadcast/{broadcast.pk}/change/"


def drawn_points(browser) -> dict[str, dict[str, int]]:
    """{label: {series: count}} of the chart's dots, as drawn."""
    points: dict[str, dict[str, int]] = {}
    for dot in browser.find_all("#activity-chart circle.point"):
        assert dot.rect["width"] > 0 and dot.rect["height"] > 0, "a dot that is not drawn"
        label = dot.get_attribute("data-label")
        points.setdefault(label, dict.fromkeys(SERIES, 0))[dot.get_attribute("data-series")] = int(
            dot.get_attribute("data-count")
        )
    return points


def test_the_chart_draws_the_sends_per_minute_and_the_numbers_beside_it_agree(browser, winter):
    browser.open(change_path(winter))
    chart = browser.find("#activity-chart svg")
    assert chart.rect["width"] > 600 and chart.rect["height"] > 200
    # the dots are the counts per minute, and the table beside the chart says the same
    assert drawn_points(browser) == MIX_PER_MINUTE
    table = {
        row.get_attribute("data-label"): {
            cell.get_attribute("data-series"): int(cell.text) for cell in row.find_elements("css selector", "td")
        }
        for row in browser.find_all("#activity-numbers tbody tr")
    }
    assert table == MIX_PER_MINUTE
    # a line per series, really drawn: as wide as the plot and rising and falling with the counts
    lines = {line.get_attribute("data-series"): line for line in browser.find_all("#activity-chart polyline")}
    assert set(lines) == set(SERIES) and all(line.rect["width"] > 500 for line in lines.values())
    sent = sorted(
        (dot for dot in browser.find_all("#activity-chart circle.point[data-series=sent]")),
        key=lambda dot: dot.rect["x"],
    )
    assert [dot.get_attribute("data-count") for dot in sent] == ["10", "5"]
    assert sent[0].rect["y"] < sent[1].rect["y"]  # 10 is drawn higher than 5
    # against the kept counts on the broadcast
    legend = {
        g.get_attribute("data-series"): int(g.get_attribute("data-total"))
        for g in browser.find_all("#activity-chart g.legend")
    }
    assert legend["read"] == winter.read == 4
    assert legend["delivered"] == winter.delivered + winter.read == 7
    assert legend["failed"] == winter.failed == 6
    assert int(browser.find("#activity-numbers tfoot [data-total=sent]").text) == legend["sent"] == 15
    # the funnel, from the kept counts
    funnel = {
        row.get_attribute("data-step"): (
            int(row.get_attribute("data-count")),
            row.find_element("css selector", ".funnel-rate").text,
        )
        for row in browser.find_all("#campaign-funnel tr[data-step]")
    }
    assert funnel == {
        "attempted": (18, ""),
        "sent": (12, "66.7% of attempted"),
        "delivered": (7, "58.3% of sent"),
        "read": (4, "57.1% of delivered"),
    }
    assert browser.find("#cost-billed").text == "0.625 (25.0% of the estimate)"
    # failures by code, each with what to do
    rows = {row.get_attribute("data-code"): row for row in browser.find_all("#failures tbody tr")}
    assert list(rows) == ["131049", "131026", "130429"]
    assert "Clean the list" in rows["131026"].find_element("css selector", ".advice-action").text
    assert not rows["131026"].find_elements("css selector", "input[type=checkbox]")  # not retryable
    browser.screenshot("broadcast_page")


def test_a_190_pause_shows_its_fix_and_links_the_channels_page(browser, winter):
    Broadcast.objects.filter(pk=winter.pk).update(
        status=BroadcastStatus.PAUSED,
        paused_reason={"code": "190", "message": "Error validating access token: Session has expired"},
    )
    browser.open(change_path(winter))
    fix = browser.find("#pause-fix")
    assert "Paused: 190" in fix.text and "Session has expired" in fix.text
    assert "Replace the channel's access token (a new system-user token), then Resume." in fix.text
    assert [b.get_attribute("id") for b in browser.find_all("[id^=action-]")] == ["action-cancel", "action-resume"]
    browser.screenshot("broadcast_paused_190")
    browser.click_and_wait("#pause-fix-link")
    assert f"/admin/templates_registry/channel/{winter.channel_id}/change/" in browser.driver.current_url
    assert winter.channel.phone_number_id in browser.text()


def test_retry_by_error_code_requeues_the_chosen_codes_sends(browser, winter):
    browser.open(change_path(winter))
    labels = {box.get_attribute("value") for box in browser.find_all("#retry-form input[name=error_codes]")}
    assert labels == {"131049", "130429"}  # the codes with retryable sends
    browser.find("#retry-code-131049").click()
    browser.click_and_wait("#retry-codes")
    assert "Retry: 3 send(s) of 131049 pending again." in browser.text()
    assert Send.objects.filter(broadcast=winter, status=SendStatus.PENDING, index__in=range(12, 15)).count() == 3
    still_failed = Send.objects.filter(broadcast=winter, status=SendStatus.FAILED).values_list("error_code", flat=True)
    assert sorted(still_failed) == ["130429", "131026", "131026"]
    assert [row.get_attribute("data-code") for row in browser.find_all("#failures tbody tr")] == ["131026", "130429"]
    assert browser.find("td[data-count=failed]").text == "3" and browser.find("td[data-count=pending]").text == "5"
