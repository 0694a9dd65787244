"""GET /v1/messages/bulk/{id}/recipients?format=csv: every matching send streamed as CSV (docs/api.md), built by
broadcasts/exports.py (the admin's export too): round-trips meta_data, keyset chunks, formula cells defused."""

import csv
import io
import json
import time
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broadcasts import exports
from broadcasts.models import Broadcast, Send
from core.timefmt import iso_utc
from tests.broadcasts.counts_support import sends_update
from tests.broadcasts.test_api_create import URL, payload, post
from tests.delivery_support import broadcast_make, numbers

HEADER = ["index", "to", "status", "message_id", "attempts", "error_code", "error_message", "updated_at", "meta_data"]

HOSTILE_META = [
    {"name": "Zoë «Ünïcødé» 日本語 🎉", "note": 'she said "hi", then left'},
    {"multi": "line one\nline two\r\nline three", "commas": "a,b,,c", "quote": "'\"", "empty": ""},
    {"formula": '=HYPERLINK("http://x")', "nested": {"list": [1, 2.5, None, True, "x,y"]}, "neg": -7},
    {"tab": "\tcell", "backslash": "C:\\path\\", "big": 9223372036854775807},
]


def csv_get(api, broadcast_id: str, **params):
    return api.get(f"{URL}/{broadcast_id}/recipients", {"format": "csv", **params})


def rows_of(response) -> list[list[str]]:
    assert response.streaming, "the export is streamed"
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body, newline="")))


def test_meta_data_round_trips_through_the_csv_module(api, channel, template):
    # Given a broadcast posted with meta_data full of unicode, quotes, newlines and commas
    body = payload(channel, n=len(HOSTILE_META))
    for recipient, meta in zip(body["recipients"], HOSTILE_META, strict=True):
        recipient["meta_data"] = meta
    body["recipients"].append({"to": "+34612345679", "variables": {"nombre": "Sin", "monto": "1"}})
    with mock.patch("broadcasts.services.enqueue_dispatch"):
        broadcast_id = post(api, body).json()["broadcast_id"]

    # When it is exported as CSV
    response = csv_get(api, broadcast_id)

    # Then the header is the contract's, and each row's meta_data parses back to what was posted
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert broadcast_id in response["Content-Disposition"]
    rows = rows_of(response)
    assert rows[0] == HEADER
    assert len(rows) == len(HOSTILE_META) + 2
    for row, meta in zip(rows[1:], HOSTILE_META, strict=False):
        assert json.loads(row[8]) == meta
    assert rows[-1][8] == ""  # no meta_data
    assert [row[0] for row in rows[1:]] == [str(i) for i in range(len(HOSTILE_META) + 1)]
    assert rows[1][1] == body["recipients"][0]["to"] and rows[1][2] == "PENDING" and rows[1][4] == "0"


def test_the_status_filter_and_every_column(api, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(4))
    now = timezone.now()
    sends_update(
        Send.objects.filter(broadcast=broadcast, index=2),
        status="FAILED",
        attempts=1,
        error_code="131049",
        error_message="Not delivered, to keep engagement healthy",
        error_retryable=True,
        message_id="wamid.abc",
        updated_at=now,
    )
    rows = rows_of(csv_get(api, broadcast.id, status="FAILED"))
    assert rows[0] == HEADER
    assert rows[1:] == [
        [
            "2",
            "+573000000002",
            "FAILED",
            "wamid.abc",
            "1",
            "131049",
            "Not delivered, to keep engagement healthy",
            iso_utc(now),
            "",
        ]
    ]
    assert rows[1][7].endswith("Z")
    assert len(rows_of(csv_get(api, broadcast.id, status="pending"))) == 4  # header + 3


def test_cells_a_spreadsheet_would_run_are_defused(api, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(5))
    for index, message in enumerate(["=1+2", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "plain"]):
        sends_update(
            Send.objects.filter(broadcast=broadcast, index=index),
            status="FAILED",
            error_code="=x" if index == 0 else "131026",
            error_message=message,
        )
    rows = rows_of(csv_get(api, broadcast.id))
    assert [row[6] for row in rows[1:]] == ["'=1+2", "'+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1)", "plain"]
    assert rows[1][5] == "'=x"
    # the E.164 number is left exact: "+" then digits only, never a formula
    assert all(row[1].startswith("+57") for row in rows[1:])


def test_unknown_format_is_400_and_json_stays_the_default(api, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(2))
    for bad in ("xml", "", "csv2", "CSV;drop", "\x00"):
        response = api.get(f"{URL}/{broadcast.id}/recipients", {"format": bad})
        assert response.status_code == 400, (bad, response.content)
        assert (
            response.json()["error"]["code"] == "validation_error" and "format" in response.json()["error"]["details"]
        )
    for fmt in ({}, {"format": "json"}, {"format": "JSON"}):
        response = api.get(f"{URL}/{broadcast.id}/recipients", fmt)
        assert response.status_code == 200 and len(response.json()["data"]) == 2
    assert csv_get(api, broadcast.id, status="nope").status_code == 400
    assert rows_of(api.get(f"{URL}/{broadcast.id}/recipients", {"format": "CSV"}))[0] == HEADER


def test_another_organizations_broadcast_is_404_and_a_token_is_needed(api, anon_api, other_org, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(1))
    assert anon_api.get(f"{URL}/{broadcast.id}/recipients", {"format": "csv"}).status_code == 401
    Broadcast.objects.filter(id=broadcast.id).update(organization=other_org)
    response = csv_get(api, broadcast.id)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_purged_broadcast_exports_the_header_only(api, channel, template):
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(3))
    Broadcast.objects.filter(id=broadcast.id).update(purged_at=timezone.now(), status="COMPLETED")
    with CaptureQueriesContext(connection) as queries:
        rows = rows_of(csv_get(api, broadcast.id))
    assert rows == [HEADER]
    assert not any("broadcasts_send" in q["sql"] for q in queries)


def test_streamed_by_keyset_chunks_reading_only_what_it_has_sent(channel, template, db, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK_SIZE", 10)
    broadcast = broadcast_make(channel=channel, template=template, recipients=numbers(35))
    with CaptureQueriesContext(connection) as queries:
        stream = exports.broadcast_csv_stream(broadcast=broadcast)
        assert next(stream).startswith("index,")
        first = next(stream)  # one chunk of rows: one query so far, whatever the broadcast's size
        assert first.count("\r\n") == 10 and len(queries) == 1
        rest = list(stream)
    assert len(rest) == 3 and len(queries) == 4
    # each chunk resumes after the last index it sent (keyset), never by OFFSET
    assert all("OFFSET" not in q["sql"] and "LIMIT 10" in q["sql"] for q in queries)
    assert '"index" > 9' in queries[1]["sql"]


@pytest.mark.slow
def test_five_thousand_rows_within_a_second(api, channel, template):
    broadcast = broadcast_make(
        channel=channel,
        template=template,
        recipients=[(n, {"nombre": "Ana", "monto": "1"}) for n in numbers(5000)],
    )
    Send.objects.filter(broadcast=broadcast).update(meta_data={"crm_id": 12345, "segment": 'vip, "gold"'})
    start = time.perf_counter()
    rows = rows_of(csv_get(api, broadcast.id))
    elapsed = time.perf_counter() - start
    assert len(rows) == 5001
    assert json.loads(rows[-1][8]) == {"crm_id": 12345, "segment": 'vip, "gold"'}
    assert elapsed < 1.0, f"5,000 rows took {elapsed:.3f} s"


# --- Accept: text/csv ------------------------------------------------------------------------------------------


@pytest.fixture
def small_broadcast(channel, template):
    return broadcast_make(channel=channel, template=template, recipients=numbers(3))


@pytest.mark.parametrize(
    "accept",
    ["text/csv", "text/csv; charset=utf-8", "application/json;q=0.5, text/csv", "text/html, text/csv;q=0.9"],
)
def test_accept_text_csv_streams_the_csv(api, small_broadcast, accept):
    response = api.get(f"{URL}/{small_broadcast.id}/recipients", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = rows_of(response)
    assert rows[0] == HEADER and len(rows) == 4


@pytest.mark.parametrize("params", [{"format": "csv"}, {"format": "CSV", "status": "pending"}])
def test_format_csv_with_accept_text_csv_is_no_406(api, small_broadcast, params):
    response = api.get(f"{URL}/{small_broadcast.id}/recipients", params, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert rows_of(response)[0] == HEADER


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "text/csv;q=0.1, application/json"])
def test_json_stays_the_default_and_wins_when_preferred(api, small_broadcast, accept):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    response = api.get(f"{URL}/{small_broadcast.id}/recipients", **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert len(response.json()["data"]) == 3


def test_format_json_wins_over_accept(api, small_broadcast):
    response = api.get(f"{URL}/{small_broadcast.id}/recipients", {"format": "json"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and len(response.json()["data"]) == 3


def test_errors_under_accept_text_csv_are_json_envelopes(api, small_broadcast):
    missing = api.get(f"{URL}/{'f' * 24}/recipients", HTTP_ACCEPT="text/csv")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = api.get(f"{URL}/{small_broadcast.id}/recipients", {"status": "nope"}, HTTP_ACCEPT="text/csv")
    assert bad.status_code == 400 and "status" in bad.json()["error"]["details"]


def test_an_accept_naming_neither_format_is_still_406(api, small_broadcast):
    response = api.get(f"{URL}/{small_broadcast.id}/recipients", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
