"""The campaigns admin: list, a broadcast page that pages its sends, and actions via the services."""

import csv
import io
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from broadcasts import admin as admin_module
from broadcasts import admin_sends, services
from broadcasts.counts import counts_rebuild
from broadcasts.exports import CSV_HEADER, sends_for_csv
from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.broadcasts.counts_support import sends_update
from tests.broadcasts.test_api_create import payload


@pytest.fixture
def broadcast(org, channel, template) -> Broadcast:
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        result = services.broadcast_create(organization=org, body=payload(channel, n=120, campaign_name="Promo Nov"))
    broadcast = Broadcast.objects.get(pk=result.body["broadcast_id"])
    sends_update(Send.objects.filter(broadcast=broadcast, index__lt=30), status=SendStatus.SENT)
    sends_update(
        Send.objects.filter(broadcast=broadcast, index__gte=110),
        status=SendStatus.FAILED,
        error_code="131026",
        error_message="Message undeliverable.",
    )
    counts_rebuild(broadcast_ids=[broadcast.id])
    return broadcast


def change_url(broadcast) -> str:
    return reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk])


def test_list_shows_campaigns_with_progress_and_filters(admin_client, broadcast):
    response = admin_client.get(
        reverse("admin:broadcasts_broadcast_changelist"), {"status__exact": "PENDING", "q": "Promo"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Promo Nov" in html and "Acme" in html
    assert "33% done (40 of 120), 0 cancelled, 80 pending" in html
    assert 'data-segment="failed" data-count="10"' in html and "25.0%" in html  # error rate: 10 of 40 attempted


def test_broadcast_page_has_counts_errors_and_links_to_its_sends(admin_client, broadcast):
    response = admin_client.get(change_url(broadcast))
    assert response.status_code == 200
    context = response.context
    assert context["campaign_counts"] == {
        "pending": 80,
        "sent": 30,
        "delivered": 0,
        "read": 0,
        "failed": 10,
        "cancelled": 0,
    }
    assert context["campaign_error_rate"] == 0.25
    assert [(row["code"], row["message"], row["failed"]) for row in context["failures"]] == [
        ("131026", "Message undeliverable.", 10)
    ]
    html = response.content.decode()
    assert "131026" in html and "25.0%" in html
    # no table of the broadcast's sends on its page: links to the send list, filtered
    assert "sends_page" not in context
    links = {label: (n, url) for label, n, url in context["campaign_sends_links"]}
    assert links["all"][0] == 120 and links["failed"][0] == 10 and links["pending"][0] == 80
    failed_page = admin_client.get(links["failed"][1])
    assert sorted(s.index for s in failed_page.context["cl"].result_list) == list(range(110, 120))


def test_broadcast_page_offers_the_actions_of_its_state_only(admin_client, broadcast):
    assert admin_client.get(change_url(broadcast)).context["campaign_actions"] == ["cancel", "pause"]
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.PAUSED)
    assert admin_client.get(change_url(broadcast)).context["campaign_actions"] == ["cancel", "resume"]
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.COMPLETED)
    response = admin_client.get(change_url(broadcast))
    assert response.context["campaign_actions"] == []
    assert response.context["campaign_refresh_seconds"] is None
    assert 'id="auto-refresh"' not in response.content.decode()


def test_buttons_call_the_services(admin_client, broadcast):
    url = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "pause"])
    assert admin_client.get(url).status_code == 405
    assert admin_client.post(url).status_code == 302
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED and broadcast.paused_reason["code"] == "manual"

    cancel = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "cancel"])
    admin_client.post(cancel)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.CANCELLED
    assert Send.objects.filter(broadcast=broadcast, status=SendStatus.CANCELLED).count() == 80

    # a second cancel is refused by the service and shown as a warning, not an error page
    response = admin_client.post(cancel, follow=True)
    assert response.status_code == 200 and "already CANCELLED" in response.content.decode()


def test_changelist_actions_use_the_services(admin_client, broadcast):
    url = reverse("admin:broadcasts_broadcast_changelist")
    admin_client.post(url, {"action": "pause_selected", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PAUSED
    admin_client.post(url, {"action": "resume_selected", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.PENDING


def test_actions_skip_the_broadcasts_whose_state_does_not_allow_them(admin_client, broadcast):
    done = Broadcast.objects.create(
        organization=broadcast.organization,
        channel=broadcast.channel,
        template=broadcast.template,
        template_name=broadcast.template_name,
        language=broadcast.language,
        campaign_name="Old news",
        status=BroadcastStatus.COMPLETED,
        total_recipients=0,
    )
    url = reverse("admin:broadcasts_broadcast_changelist")
    with mock.patch("broadcasts.admin.ACTIONS", {**admin_module.ACTIONS, "resume": mock.Mock()}) as actions:
        response = admin_client.post(
            url, {"action": "resume_selected", "_selected_action": [broadcast.pk, done.pk]}, follow=True
        )
    actions["resume"].assert_not_called()  # neither is PAUSED: the service is not even asked
    html = response.content.decode()
    assert "Skipped 2 broadcast(s) whose state does not allow resume" in html
    assert "Old news (COMPLETED)" in html and "Promo Nov (PENDING)" in html

    response = admin_client.post(
        url, {"action": "cancel_selected", "_selected_action": [broadcast.pk, done.pk]}, follow=True
    )
    html = response.content.decode()
    assert "Cancelled 1 broadcast(s)." in html and "Skipped 1 broadcast(s)" in html
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.CANCELLED
    assert Broadcast.objects.get(pk=done.pk).status == BroadcastStatus.COMPLETED


def test_nothing_is_deleted_from_the_admin(admin_client, broadcast):
    send = Send.objects.filter(broadcast=broadcast).first()
    assert admin_client.get(reverse("admin:broadcasts_broadcast_delete", args=[broadcast.pk])).status_code == 403
    assert admin_client.get(reverse("admin:broadcasts_send_delete", args=[send.pk])).status_code == 403
    page = admin_client.get(reverse("admin:broadcasts_broadcast_changelist")).content.decode()
    assert "delete_selected" not in page
    assert "deletelink" not in admin_client.get(change_url(broadcast)).content.decode()
    org_delete = reverse("admin:tokens_organization_delete", args=[broadcast.organization_id])
    assert admin_client.get(org_delete).status_code == 403  # it would cascade into the broadcasts


def test_list_counts_the_page_in_one_query_whatever_its_size(admin_client, broadcast):
    url = reverse("admin:broadcasts_broadcast_changelist")
    admin_client.get(url)  # warm up (session, content types)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    for n in range(3):
        Broadcast.objects.create(
            organization=broadcast.organization,
            channel=broadcast.channel,
            template=broadcast.template,
            template_name=broadcast.template_name,
            language=broadcast.language,
            campaign_name=f"More {n}",
            total_recipients=0,
        )
    with CaptureQueriesContext(connection) as four:
        admin_client.get(url)
    assert len(four.captured_queries) == len(one.captured_queries)
    # the counts are kept on the broadcasts: the page reads no send at all
    assert sum('FROM "broadcasts_send"' in q["sql"] for q in four.captured_queries) == 0


def test_sends_export_as_csv_with_the_api_columns(admin_client, broadcast):
    Send.objects.filter(broadcast=broadcast, index=3).update(message_id="wamid.X3", meta_data={"crm": 7})
    response = admin_client.get(reverse("admin:broadcasts_broadcast_sends_csv", args=[broadcast.pk]))
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == list(CSV_HEADER)
    assert [int(r[0]) for r in rows[1:]] == list(range(120))
    row3 = dict(zip(rows[0], rows[4], strict=True))
    assert row3["message_id"] == "wamid.X3" and row3["status"] == "SENT" and row3["meta_data"] == '{"crm":7}'
    assert row3["updated_at"].endswith("Z")
    failed = admin_client.get(
        reverse("admin:broadcasts_broadcast_sends_csv", args=[broadcast.pk]), {"status": "failed"}
    )
    failed_rows = list(csv.reader(io.StringIO(b"".join(failed.streaming_content).decode())))[1:]
    assert len(failed_rows) == 10 and {r[5] for r in failed_rows} == {"131026"}
    bad = admin_client.get(reverse("admin:broadcasts_broadcast_sends_csv", args=[broadcast.pk]), {"status": "nope"})
    assert bad.status_code == 400


def test_csv_export_reads_by_chunks(broadcast):
    chunks = list(sends_for_csv(broadcast_id=broadcast.id, chunk_size=7))
    assert [s["index"] for s in chunks] == list(range(120))


def test_send_search_by_number_in_any_format_and_by_wamid(admin_client, broadcast):
    send = Send.objects.get(broadcast=broadcast, index=5)
    Send.objects.filter(pk=send.pk).update(to="+16502530000", message_id="wamid.HBgLfind")
    url = reverse("admin:broadcasts_send_changelist")
    for term in ("+16502530000", " +1 (650) 253-0000 ", "16502530000", "0016502530000", "wamid.HBgLfind"):
        found = admin_client.get(url, {"q": term}).context["cl"].result_list
        assert [s.pk for s in found] == [send.pk], term
    assert list(admin_client.get(url, {"q": "wamid.nope"}).context["cl"].result_list) == []


def test_send_search_by_bsuid(admin_client, broadcast):
    send = Send.objects.get(broadcast=broadcast, index=7)
    Send.objects.filter(pk=send.pk).update(to="US.13491208655302741918", user_id="US.13491208655302741918")
    url = reverse("admin:broadcasts_send_changelist")
    found = admin_client.get(url, {"q": " US.13491208655302741918 "}).context["cl"].result_list
    assert [s.pk for s in found] == [send.pk]
    assert (
        "US.13491208655302741918"
        in admin_client.get(reverse("admin:broadcasts_send_change", args=[send.pk])).content.decode()
    )


def test_send_list_never_counts_past_its_cap(admin_client, broadcast, monkeypatch):
    monkeypatch.setattr(admin_sends.CappedCountPaginator, "CAP", 50)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:broadcasts_send_changelist"))
    assert response.context["cl"].result_count == 50 and 'id="count-capped"' in response.content.decode()
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "broadcasts_send" in q["sql"]]
    assert counts and all("LIMIT 51" in sql for sql in counts)  # never a COUNT over the whole table
    few = admin_client.get(reverse("admin:broadcasts_send_changelist"), {"status__exact": "FAILED"})
    assert few.context["cl"].result_count == 10 and 'id="count-capped"' not in few.content.decode()


def test_times_show_seconds_and_zone(admin_client, broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(created_at=datetime(2026, 12, 1, 10, 37, 57, tzinfo=UTC))
    assert (
        "2026-12-01 10:37:57 UTC" in admin_client.get(reverse("admin:broadcasts_broadcast_changelist")).content.decode()
    )
    assert "2026-12-01 10:37:57 UTC" in admin_client.get(change_url(broadcast)).content.decode()


def test_paused_reason_is_text(admin_client, broadcast):
    Broadcast.objects.filter(pk=broadcast.pk).update(
        status=BroadcastStatus.PAUSED, paused_reason={"code": "131042", "message": "Business eligibility payment issue"}
    )
    html = admin_client.get(change_url(broadcast)).content.decode()
    assert "131042: Business eligibility payment issue" in html and "{&quot;code" not in html


def test_system_fields_are_read_only_and_nothing_is_added_by_hand(admin_client, broadcast):
    response = admin_client.get(change_url(broadcast))
    form_fields = set(response.context["adminform"].form.fields)
    assert form_fields == {"campaign_name"}
    assert admin_client.get(reverse("admin:broadcasts_broadcast_add")).status_code == 403


def test_staff_without_permission_cannot_act(client, django_user_model, broadcast):
    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    url = reverse("admin:broadcasts_broadcast_action", args=[broadcast.pk, "cancel"])
    assert client.post(url).status_code == 403
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.PENDING


def test_broadcast_page_shows_the_channels_lanes(admin_client, broadcast, channel, template):
    # Given the broadcast (MARKETING) running with 80 pending, and a running UTILITY broadcast on the same channel
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.IN_PROGRESS)
    template.__class__.objects.create(
        waba_id=channel.waba_id,
        name="otp_notice",
        language="es",
        category="UTILITY",
        components=[{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}],
        body_variables=["nombre", "monto"],
    )
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        body = {**payload(channel, n=3), "template_name": "otp_notice"}
        created = services.broadcast_create(organization=broadcast.organization, body=body)
    Broadcast.objects.filter(pk=created.body["broadcast_id"]).update(status=BroadcastStatus.IN_PROGRESS)
    # When an operator opens the broadcast's page, then each lane shows its running broadcasts and pending sends
    html = admin_client.get(change_url(broadcast)).content.decode()
    assert "priority: 1 running, 3 pending; marketing: 1 running, 80 pending" in html
