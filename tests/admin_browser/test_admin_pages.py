"""An operator's day in the admin, in headless Chromium: the broadcast list's numbers, actions by state, no delete,
sends found by number or wamid, the CSV export, times to the second, the paused reason, the token page's revoke,
and the broadcast page that refreshes itself while the broadcast runs."""

import csv
import io
import re
import time
from datetime import UTC, datetime

import pytest
import requests
from selenium.webdriver.support.ui import Select, WebDriverWait

from broadcasts.counts import counts_rebuild
from broadcasts.exports import CSV_HEADER
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tokens.models import AccessToken
from tokens.services import token_authenticate, token_create

pytestmark = pytest.mark.browser

CREATED = datetime(2026, 12, 1, 10, 37, 57, tzinfo=UTC)
CREATED_TEXT = "2026-12-01 10:37:57 UTC"
SHARED_NUMBER = "+16502530000"
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def make_broadcast(channel, template, name: str, status: str, sends: list[str], **fields) -> Broadcast:
    """A broadcast with one send per entry of ``sends`` (a send status), to distinct numbers."""
    broadcast = Broadcast.objects.create(
        organization=channel.organization,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name=name,
        status=status,
        total_recipients=len(sends),
        created_at=fields.pop("created_at", CREATED),
        **fields,
    )
    Send.objects.bulk_create(
        Send(
            broadcast=broadcast,
            index=i,
            to=f"+3461234{5000 + i:04d}",
            status=send_status,
            attempts=0 if send_status in (SendStatus.PENDING, SendStatus.CANCELLED) else 1,
            message_id=f"wamid.{broadcast.id}.{i}"
            if send_status not in (SendStatus.PENDING, SendStatus.CANCELLED)
            else None,
            error_code="131026" if send_status == SendStatus.FAILED else "",
            error_message="Message undeliverable." if send_status == SendStatus.FAILED else "",
            meta_data={"customer": i},
            updated_at=CREATED,
        )
        for i, send_status in enumerate(sends)
    )
    counts_rebuild(broadcast_ids=[broadcast.id])  # sends written directly: recount the broadcast's kept counts
    broadcast.refresh_from_db()
    return broadcast


def mixed() -> list[str]:
    """20 sends: 4 sent, 3 delivered, 2 read, 3 failed, 6 cancelled, 2 pending (held by a worker at cancel time)."""
    S = SendStatus
    return [S.SENT] * 4 + [S.DELIVERED] * 3 + [S.READ] * 2 + [S.FAILED] * 3 + [S.CANCELLED] * 6 + [S.PENDING] * 2


@pytest.fixture
def black_friday(channel, template) -> Broadcast:
    return make_broadcast(
        channel, template, "Black Friday", BroadcastStatus.CANCELLED, mixed(), started_at=CREATED, completed_at=CREATED
    )


@pytest.fixture
def running(channel, template) -> Broadcast:
    S = SendStatus
    return make_broadcast(
        channel,
        template,
        "Cyber Monday",
        BroadcastStatus.IN_PROGRESS,
        [S.SENT] * 4 + [S.PENDING] * 6,
        started_at=CREATED,
    )


@pytest.fixture
def completed(channel, template) -> Broadcast:
    return make_broadcast(
        channel,
        template,
        "Welcome wave",
        BroadcastStatus.COMPLETED,
        [SendStatus.DELIVERED] * 5,
        started_at=CREATED,
        completed_at=CREATED,
    )


def change_path(broadcast: Broadcast) -> str:
    return f"/admin/broadcasts/broadcast/{broadcast.pk}/change/"


def row_of(browser, name: str):
    rows = [row for row in browser.find_all("#result_list tbody tr") if name in row.text]
    assert len(rows) == 1, f"{name} in {[r.text for r in browser.find_all('#result_list tbody tr')]}"
    return rows[0]


def assert_no_delete(browser) -> None:
    assert not browser.find_all("a.deletelink"), "a delete link"
    assert not browser.find_all("option[value=delete_selected]"), "a delete action"
    assert "Delete" not in [b.text for b in browser.find_all("button, input[type=submit], a.button")]


def test_broadcast_list_shows_failed_error_rate_and_a_truthful_progress_bar(browser, black_friday, running):
    browser.open("/admin/broadcasts/broadcast/")
    row = row_of(browser, "Black Friday")
    assert row.find_element("css selector", "td.field-failed_sends").text == "3"
    assert row.find_element("css selector", "td.field-error_rate").text == "25.0%"  # 3 of the 12 attempted
    segments = {
        seg.get_attribute("data-segment"): seg for seg in row.find_elements("css selector", ".progress-segment")
    }
    counts = {name: int(seg.get_attribute("data-count")) for name, seg in segments.items()}
    assert counts == {"sent": 9, "failed": 3, "cancelled": 6, "pending": 2}
    # as drawn: the cancelled segment is 6/20 of the bar, separate from the 12/20 that are done
    widths = {name: seg.rect["width"] for name, seg in segments.items()}
    bar = sum(widths.values())
    assert abs(widths["cancelled"] / bar - 6 / 20) < 0.02
    assert abs((widths["sent"] + widths["failed"]) / bar - 12 / 20) < 0.02
    assert "60% done (12 of 20), 6 cancelled, 2 pending" in row.text
    # times to the second, with the zone
    assert row.find_element("css selector", "td.field-created_at_display").text == CREATED_TEXT
    # the failed count links to those sends
    assert "status__exact=FAILED" in row.find_element("css selector", "td.field-failed_sends a").get_attribute("href")
    assert_no_delete(browser)
    browser.screenshot("broadcast_list")


def test_actions_follow_the_state_and_change_it(browser, running, completed):
    browser.open(change_path(running))
    assert browser.find_all("#action-cancel") and browser.find_all("#action-pause")
    assert not browser.find_all("#action-resume")  # no Resume on a running broadcast
    assert_no_delete(browser)
    browser.screenshot("broadcast_detail")

    browser.click_and_wait("#action-pause")
    assert "Paused." in browser.text()
    assert browser.find(".field-status .readonly").text == BroadcastStatus.PAUSED.label
    assert browser.find(".field-paused_reason_text .readonly").text == "manual: Paused on request."
    assert [b.get_attribute("id") for b in browser.find_all("[id^=action-]")] == ["action-cancel", "action-resume"]
    assert Broadcast.objects.get(pk=running.pk).status == BroadcastStatus.PAUSED

    browser.click_and_wait("#action-resume")
    assert browser.find(".field-status .readonly").text == BroadcastStatus.IN_PROGRESS.label
    assert not browser.find_all("#action-resume")

    browser.click_and_confirm("#action-cancel")
    assert browser.find(".field-status .readonly").text == BroadcastStatus.CANCELLED.label
    assert not browser.find_all("[id^=action-]")  # nothing is left to do with it
    assert Send.objects.filter(broadcast=running, status=SendStatus.CANCELLED).count() == 6
    assert Broadcast.objects.get(pk=running.pk).status == BroadcastStatus.CANCELLED

    # the list's actions skip, and say so, the broadcasts whose state does not allow them
    browser.open("/admin/broadcasts/broadcast/")
    for name in ("Cyber Monday", "Welcome wave"):
        row_of(browser, name).find_element("css selector", "input.action-select").click()
    options = [o.get_attribute("value") for o in browser.find_all("select[name=action] option")]
    assert options == ["", "cancel_selected", "pause_selected", "resume_selected"]
    Select(browser.find("select[name=action]")).select_by_value("resume_selected")
    browser.click_and_wait("button[name=index]")
    assert "Skipped 2 broadcast(s) whose state does not allow resume" in browser.text()
    assert "Welcome wave (COMPLETED)" in browser.text()


def test_paused_reason_is_readable_text(browser, channel, template):
    held = make_broadcast(
        channel,
        template,
        "Held by Meta",
        BroadcastStatus.PAUSED,
        [SendStatus.PENDING] * 3,
        paused_reason={"code": "131042", "message": "Business eligibility payment issue"},
    )
    browser.open(change_path(held))
    assert browser.find(".field-paused_reason_text .readonly").text == "131042: Business eligibility payment issue"
    assert [b.get_attribute("id") for b in browser.find_all("[id^=action-]")] == ["action-cancel", "action-resume"]
    assert not browser.find_all("#auto-refresh")


def test_sends_are_found_by_number_and_by_wamid_across_broadcasts(browser, black_friday, running):
    Send.objects.filter(broadcast=black_friday, index=0).update(to=SHARED_NUMBER)
    Send.objects.filter(broadcast=running, index=1).update(to=SHARED_NUMBER, message_id="wamid.HBgLsearch")
    browser.open("/admin/broadcasts/send/")
    search = browser.find("#searchbar")
    search.send_keys("+1 (650) 253-0000")  # as an operator types it
    browser.click_and_wait("#changelist-search input[type=submit]")
    rows = browser.find_all("#result_list tbody tr")
    assert sorted(r.find_element("css selector", "td.field-broadcast_link").text for r in rows) == [
        "Black Friday",
        "Cyber Monday",
    ]
    assert {r.find_element("css selector", "td.field-to").text for r in rows} == {SHARED_NUMBER}
    assert all(UTC_TIME.fullmatch(r.find_element("css selector", "td.field-updated_at_display").text) for r in rows)
    assert_no_delete(browser)
    browser.screenshot("send_search")

    browser.open("/admin/broadcasts/send/?q=wamid.HBgLsearch")
    rows = browser.find_all("#result_list tbody tr")
    assert len(rows) == 1 and "Cyber Monday" in rows[0].text and "wamid.HBgLsearch" in rows[0].text
    # a send's own page: read-only, no delete
    rows[0].find_element("css selector", "th a, td a").click()
    assert "wamid.HBgLsearch" in browser.text() and not browser.find_all("input[name=_save]")
    assert_no_delete(browser)


def test_the_broadcast_page_links_to_its_sends_and_exports_them_as_csv(browser, black_friday):
    browser.open(change_path(black_friday))
    assert browser.find("#campaign-error-rate").text == "25.0%"
    link = browser.find("a[data-sends=cancelled]")
    assert link.text == "cancelled (6)"
    browser.click_and_wait("a[data-sends=cancelled]")
    assert len(browser.find_all("#result_list tbody tr")) == 6 and "Sends of Black Friday" in browser.text()

    browser.open(change_path(black_friday))
    url = browser.find("#export-csv").get_attribute("href")
    response = requests.get(url, cookies=browser.session_cookies(), timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(CSV_HEADER) and len(rows) == 20
    stored = {s.index: s for s in Send.objects.filter(broadcast=black_friday)}
    for row in rows:
        send = stored[int(row["index"])]
        assert (row["to"], row["status"], row["message_id"], int(row["attempts"]), row["error_code"]) == (
            send.to,
            send.status,
            send.message_id or "",
            send.attempts,
            send.error_code,
        )
        assert row["updated_at"] == "2026-12-01T10:37:57Z" and row["meta_data"] == f'{{"customer":{send.index}}}'
    # without the session, nothing
    assert "text/csv" not in requests.get(url, timeout=30, allow_redirects=False).headers.get("Content-Type", "")


def test_the_broadcast_page_refreshes_itself_only_while_it_runs(browser, running, completed):
    browser.open(change_path(running))
    assert browser.find("#auto-refresh").get_attribute("data-seconds") == "5"
    assert browser.find("td[data-count=sent]").text == "4"
    Send.objects.filter(broadcast=running, index__in=[4, 5]).update(status=SendStatus.SENT)
    counts_rebuild(broadcast_ids=[running.id])
    WebDriverWait(browser.driver, 15, poll_frequency=0.5).until(
        lambda driver: driver.find_element("css selector", "td[data-count=sent]").text == "6"
    )

    browser.open(change_path(completed))
    assert not browser.find_all("#auto-refresh")
    browser.driver.execute_script("window.__stillHere = true;")
    time.sleep(6.5)
    assert browser.driver.execute_script("return window.__stillHere === true;")  # not reloaded


def test_revoke_from_the_tokens_own_page(browser, org):
    issued = token_create(organization=org, scopes="messages:bulk", name="crm")
    browser.open(f"/admin/tokens/accesstoken/{issued.token.pk}/change/")
    assert UTC_TIME.fullmatch(browser.find(".field-created_at_display .readonly").text)
    assert_no_delete(browser)
    browser.screenshot("token_page")
    browser.click_and_confirm("#revoke-token")
    assert f"Revoked {issued.token.prefix}" in browser.text()
    assert not browser.find_all("#revoke-token")
    assert UTC_TIME.fullmatch(browser.find(".field-revoked_at_display .readonly").text)
    assert token_authenticate(raw=issued.secret) is None
    assert AccessToken.objects.get(pk=issued.token.pk).revoked_at is not None


def test_channel_list_shows_times_with_seconds_and_zone(browser, channel, template):
    type(channel).objects.filter(pk=channel.pk).update(created_at=CREATED)
    browser.open("/admin/templates_registry/channel/")
    assert (
        row_of(browser, channel.phone_number_id).find_element("css selector", "td.field-created_at_display").text
        == CREATED_TEXT
    )
    browser.screenshot("channel_list")
    browser.open("/admin/templates_registry/template/")
    assert UTC_TIME.fullmatch(
        row_of(browser, template.name).find_element("css selector", "td.field-updated_at_display").text
    )
