"""POST /v1/messages/bulk: acceptance, storage, dispatch after commit (docs/api.md)."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import orjson
import pytest

from broadcasts.models import Broadcast, IdempotencyRecord, Send, SendStatus
from templates_registry.models import Template

URL = "/v1/messages/bulk"
NUMBERS = ["+34612345678", "+525512345678", "+14155552671", "+447400123456", "+5511987654321"]


def payload(channel, n: int = 2, **overrides) -> dict:
    body = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [
            {
                "to": NUMBERS[i % len(NUMBERS)],
                "variables": {"nombre": f"Ana {i}", "monto": "10"},
                "meta_data": {"customer": i},
            }
            for i in range(n)
        ],
    }
    body.update(overrides)
    return body


def post(api, body, **headers):
    return api.post(URL, orjson.dumps(body), content_type="application/json", **headers)


def stored() -> tuple[int, int, int]:
    return Broadcast.objects.count(), Send.objects.count(), IdempotencyRecord.objects.count()


@pytest.fixture
def dispatched():
    """The broadcast ids whose dispatch was enqueued (the Celery call itself is the engine's)."""
    with mock.patch("broadcasts.services.enqueue_dispatch") as enqueue:
        yield enqueue


@pytest.mark.django_db(transaction=True)
def test_accepts_a_broadcast_and_stores_every_send_in_order(api, channel, template, dispatched):
    # given a valid body of 5 recipients
    body = payload(channel, n=5, campaign_name="Black Friday")

    # when it is posted
    response = post(api, body)

    # then 202 with the contract's body, and every send stored PENDING in request order
    assert response.status_code == 202, response.content
    data = response.json()
    assert set(data) == {"broadcast_id", "status", "total_recipients", "scheduled_at"}
    assert data["status"] == "PENDING" and data["total_recipients"] == 5 and data["scheduled_at"] is None
    broadcast = Broadcast.objects.get(pk=data["broadcast_id"])
    assert response.headers["Location"] == f"{URL}/{broadcast.id}"
    assert len(broadcast.id) == 24 and broadcast.campaign_name == "Black Friday"
    assert broadcast.channel == channel and broadcast.template == template
    sends = list(broadcast.sends.order_by("index"))
    assert [s.index for s in sends] == [0, 1, 2, 3, 4]
    assert [s.to for s in sends] == NUMBERS
    assert all(s.status == SendStatus.PENDING and s.attempts == 0 for s in sends)
    assert sends[3].variables == {"nombre": "Ana 3", "monto": "10"} and sends[3].meta_data == {"customer": 3}
    # and dispatch was enqueued once, after commit
    dispatched.assert_called_once_with(broadcast.id)


def test_channel_may_be_given_by_phone_number_id(api, channel, template, dispatched):
    response = post(api, payload(channel, channel_id=channel.phone_number_id))
    assert response.status_code == 202, response.content
    assert Broadcast.objects.get().channel == channel


def test_campaign_name_is_generated_when_omitted_or_null(api, channel, template, dispatched):
    with mock.patch("broadcasts.services.timezone.now", return_value=datetime(2026, 11, 27, 14, 3, 9, tzinfo=UTC)):
        first = post(api, payload(channel))
        second = post(api, payload(channel, campaign_name=None))
    assert first.status_code == second.status_code == 202
    names = set(Broadcast.objects.values_list("campaign_name", flat=True))
    assert names == {"welcome_v2 2026-11-27 14:03 UTC"}


def test_numbers_are_stored_in_e164_with_national_prefix_stripped(api, channel, template, dispatched):
    # given a UK number written with its trunk 0 after the country code
    body = payload(channel, n=1)
    body["recipients"][0]["to"] = "+4402079460958"
    assert post(api, body).status_code == 202
    assert Send.objects.get().to == "+442079460958"


def test_duplicates_are_not_removed(api, channel, template, dispatched):
    body = payload(channel, n=1)
    body["recipients"] = body["recipients"] * 3
    response = post(api, body)
    assert response.json()["total_recipients"] == 3
    assert Send.objects.filter(to=NUMBERS[0]).count() == 3


@pytest.mark.django_db(transaction=True)
def test_recipients_missing_variables_are_stored_failed_and_published(api, channel, template, dispatched):
    # given one complete recipient, one without "monto", one with a blank "nombre"
    body = payload(channel, n=3)
    del body["recipients"][1]["variables"]["monto"]
    body["recipients"][2]["variables"]["nombre"] = "  "
    with mock.patch("broadcasts.services.message_events_publish") as publish:
        response = post(api, body)

    # then all are accepted; the incomplete ones are FAILED with missing_variables, never to be sent
    assert response.status_code == 202
    assert response.json()["total_recipients"] == 3
    ok, no_amount, blank = Send.objects.order_by("index")
    assert ok.status == SendStatus.PENDING and ok.error_code == ""
    for send, missing in ((no_amount, "monto"), (blank, "nombre")):
        assert send.status == SendStatus.FAILED
        assert send.error_code == "missing_variables" and send.error_retryable is False
        assert missing in send.error_message and send.failed_at is not None and send.attempts == 0
    # and their message.failed events were published after commit
    publish.assert_called_once()
    assert sorted(publish.call_args.kwargs["send_ids"]) == sorted([no_amount.id, blank.id])
    assert publish.call_args.kwargs["status"] == "FAILED"


def test_variables_the_template_does_not_use_are_dropped(api, channel, template, dispatched):
    body = payload(channel, n=1)
    body["recipients"][0]["variables"]["unused"] = "x"
    assert post(api, body).status_code == 202
    assert Send.objects.get().variables == {"nombre": "Ana 0", "monto": "10"}


def test_positional_template_variables_are_keyed_by_position(api, channel, dispatched):
    Template.objects.create(
        waba_id=channel.waba_id,
        name="order_ready",
        language="en_US",
        parameter_format=Template.ParameterFormat.POSITIONAL,
        components=[{"type": "BODY", "text": "Hi {{1}}, order {{2}} is ready"}],
        body_variables=["1", "2"],
    )
    body = payload(channel, n=2, template_name="order_ready", language="en_US")
    body["recipients"][0]["variables"] = {"1": "Ana", "2": "A-17"}
    body["recipients"][1]["variables"] = {"1": "Bo"}
    assert post(api, body).status_code == 202
    first, second = Send.objects.order_by("index")
    assert first.status == SendStatus.PENDING and first.variables == {"1": "Ana", "2": "A-17"}
    assert second.status == SendStatus.FAILED and second.error_message.endswith("2.")


def test_scheduled_broadcast_is_stored_in_utc_and_not_dispatched(api, channel, template, dispatched):
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    local = when.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    body = payload(channel, scheduled_at=when.astimezone(UTC).replace(tzinfo=None).isoformat() + "+00:00")
    body["scheduled_at"] = when.isoformat().replace("+00:00", "-03:00")  # another offset, same wall clock
    expected = when + timedelta(hours=3)
    response = post(api, body)
    assert response.status_code == 202, (response.content, local)
    assert response.json()["scheduled_at"] == expected.isoformat().replace("+00:00", "Z")
    assert Broadcast.objects.get().scheduled_at == expected
    dispatched.assert_not_called()


def test_a_5000_recipient_body_with_1kb_meta_data_each_is_accepted(api, channel, template, dispatched):
    # given the contract's largest body: 5000 recipients with ~1 KB of meta_data each (~6 MB)
    body = payload(channel, n=1)
    body["recipients"] = [
        {
            "to": f"+346{i:08d}",
            "variables": {"nombre": "Ana", "monto": str(i)},
            "meta_data": {"note": "x" * 1000, "i": i},
        }
        for i in range(5000)
    ]
    raw = orjson.dumps(body)
    assert 5_000_000 < len(raw) < 10 * 1024 * 1024

    response = api.post(URL, raw, content_type="application/json")

    assert response.status_code == 202, response.content[:500]
    assert response.json()["total_recipients"] == 5000
    assert Send.objects.count() == 5000
    assert Send.objects.get(index=4999).meta_data == {"note": "x" * 1000, "i": 4999}


def test_json_with_a_charset_parameter_is_accepted(api, channel, template, dispatched):
    response = api.post(URL, orjson.dumps(payload(channel)), content_type="application/json; charset=utf-8")
    assert response.status_code == 202


def test_special_characters_survive_the_copy_unchanged(api, channel, template, dispatched):
    # given values with backslashes, escapes, tabs, newlines, quotes and non-ASCII text
    tricky = 'a\\b \\N \\t\ttab\nnew\rline "quoted" ñandú 😀 \\u0000 \\\\'
    body = payload(channel, n=2)
    body["recipients"][0]["variables"]["nombre"] = tricky
    body["recipients"][0]["meta_data"] = {tricky: [tricky, {"k": tricky}], "n": None, "f": 1.5}
    del body["recipients"][1]["variables"]["monto"]  # stored FAILED: the error text goes through COPY too
    body["recipients"][1]["variables"]["nombre"] = tricky

    assert post(api, body).status_code == 202

    # then they are stored exactly as sent
    first, second = Send.objects.order_by("index")
    assert first.variables["nombre"] == tricky
    assert first.meta_data == {tricky: [tricky, {"k": tricky}], "n": None, "f": 1.5}
    assert second.variables["nombre"] == tricky and second.status == SendStatus.FAILED
    assert second.error_message == "Missing template variables: monto."


@pytest.mark.django_db(transaction=True)
def test_missing_variables_become_message_failed_events_for_the_organization(api, channel, template, settings):
    # given an endpoint subscribed to message.failed (delivery to it is the events app's business)
    from events.endpoints import endpoint_create
    from events.models import Event

    settings.WEBHOOKS_ALLOW_PRIVATE = True
    endpoint_create(organization=channel.organization, url="http://127.0.0.1:9/hook", events=["message.failed"])
    body = payload(channel, n=3)
    del body["recipients"][2]["variables"]["nombre"]

    # when the broadcast is accepted
    with mock.patch("broadcasts.services.enqueue_dispatch"), mock.patch("events.queue.delivery_enqueue"):
        assert post(api, body).status_code == 202

    # then one message.failed event exists, for the incomplete recipient only
    events = list(Event.objects.filter(type="message.failed"))
    assert len(events) == 1
    assert events[0].data["index"] == 2 and events[0].data["error"]["code"] == "missing_variables"
