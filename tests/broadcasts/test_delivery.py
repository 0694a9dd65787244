"""The whole delivery path for real: PostgreSQL, Redis, a Celery worker process and the sandbox over HTTP."""

import orjson
import pytest

from broadcasts.models import Broadcast, Send
from broadcasts.tasks import enqueue_dispatch
from tests.delivery_support import broadcast_make, broadcast_settled, numbers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _sends(broadcast):
    return {s.to: s for s in Send.objects.filter(broadcast=broadcast)}


def test_each_recipient_gets_exactly_one_post_with_payload_and_token(
    channel, template, delivery_sandbox, worker, delivery_settings
):
    # Given a broadcast of 30 recipients on a channel
    recipients = numbers(30)
    broadcast = broadcast_make(channel=channel, template=template, recipients=recipients)

    # When it is dispatched
    enqueue_dispatch(broadcast.id)

    # Then it completes with every send SENT with the wamid Meta answered, one POST each
    wait_for(lambda: broadcast_settled(broadcast.id), timeout=20, message="broadcast completed")
    broadcast.refresh_from_db()
    assert broadcast.status == "COMPLETED"
    assert broadcast.started_at and broadcast.completed_at
    requests = delivery_sandbox.requests()
    assert sorted(r["to"] for r in requests) == sorted(n.lstrip("+") for n in recipients)
    sends = _sends(broadcast)
    for request in requests:
        assert request["phone_number_id"] == channel.phone_number_id
        assert request["authorization"] == f"Bearer {channel.access_token}"
        body = request["body"] if isinstance(request["body"], dict) else orjson.loads(request["body"])
        send = sends[body["to"]]
        assert body == {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": send.to,
            "type": "template",
            "template": {
                "name": "welcome_v2",
                "language": {"code": "es"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "parameter_name": "nombre", "text": "Ana"},
                            {"type": "text", "parameter_name": "monto", "text": str(send.index)},
                        ],
                    }
                ],
            },
        }
    assert {s.status for s in sends.values()} == {"SENT"}
    assert all(s.message_id and s.message_id.startswith("wamid.") for s in sends.values())
    assert {s.attempts for s in sends.values()} == {1}
    assert all(s.lease_expires_at is None and s.posting_at is None for s in sends.values())
    assert Broadcast.objects.get(id=broadcast.id).status == "COMPLETED"
