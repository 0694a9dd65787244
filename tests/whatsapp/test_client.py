"""The asyncio Graph API client over real HTTP to the sandbox: every kind of outcome of one POST."""

import asyncio

import pytest

from sandbox.process import free_port
from whatsapp.client import GraphClient
from whatsapp.errors import ErrorClass

PAYLOAD = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "+573001112233",
    "type": "template",
    "template": {"name": "welcome_v2", "language": {"code": "es"}},
}


def _send(base_url: str, payload=PAYLOAD, **timeouts):
    async def run():
        client = GraphClient(base_url=base_url, **timeouts)
        try:
            return await client.send_message(phone_number_id="100000000000001", access_token="tok-1", payload=payload)
        finally:
            await client.close()

    return asyncio.run(run())


def test_accepted_send_returns_the_wamid_and_posts_the_body_with_the_token(sandbox):
    result = _send(sandbox.graph_url)

    assert result.ok and result.message_id.startswith("wamid.")
    assert result.error is None and not result.unknown
    [request] = sandbox.requests()
    assert request["phone_number_id"] == "100000000000001"
    assert request["authorization"] == "Bearer tok-1"
    assert request["body"] == PAYLOAD


@pytest.mark.parametrize(
    ("outcome", "code", "error_class"),
    [
        ("error:131026", "131026", ErrorClass.PERMANENT),
        ("error:131000", "131000", ErrorClass.TRANSIENT),
        ("error:190", "190", ErrorClass.ACCOUNT),
        ("http500", None, ErrorClass.TRANSIENT),
        ("http429", None, ErrorClass.TRANSIENT),
    ],
)
def test_graph_errors_are_parsed_and_classified(sandbox, outcome, code, error_class):
    sandbox.script(PAYLOAD["to"], [outcome])

    result = _send(sandbox.graph_url)

    assert not result.ok and not result.unknown
    assert result.error.error_class is error_class
    if code:
        assert result.error.code == code
    assert result.error.message


def test_read_timeout_is_an_unknown_transient_outcome(sandbox):
    # Given Meta takes the request and never answers in time
    sandbox.script(PAYLOAD["to"], ["hang"])

    result = _send(sandbox.graph_url, read_timeout=0.3)

    # Then the request did reach it: unknown outcome, retryable
    assert (result.ok, result.unknown, result.error.code) == (False, True, "timeout")
    assert result.error.retryable
    assert len(sandbox.requests()) == 1


def test_dropped_connection_after_the_request_is_an_unknown_outcome(sandbox):
    sandbox.script(PAYLOAD["to"], ["drop"])

    result = _send(sandbox.graph_url)

    assert (result.ok, result.unknown, result.error.code) == (False, True, "connection_lost")
    assert result.error.retryable


def test_connection_refused_is_transient_and_certainly_not_delivered():
    # Given nothing listens on the port
    result = _send(f"http://127.0.0.1:{free_port()}/v23.0", connect_timeout=0.5)

    # Then the request never left: retryable, and not an unknown outcome
    assert (result.ok, result.unknown, result.error.code) == (False, False, "connection_error")
    assert result.error.error_class is ErrorClass.TRANSIENT


def test_one_client_reuses_its_connections_for_many_concurrent_sends(sandbox):
    async def run():
        client = GraphClient(base_url=sandbox.graph_url, max_connections=10)
        try:
            jobs = [
                client.send_message(
                    phone_number_id="100000000000001", access_token="t", payload={**PAYLOAD, "to": f"+5730011{i:05d}"}
                )
                for i in range(50)
            ]
            return await asyncio.gather(*jobs)
        finally:
            await client.close()

    results = asyncio.run(run())

    assert all(r.ok for r in results)
    assert len({r.message_id for r in results}) == 50


@pytest.mark.parametrize(
    ("to", "wa_id"),
    [
        ("+573001112233", "573001112233"),  # most of the world: the E.164 digits
        ("+525512345678", "5215512345678"),  # Mexico: the old mobile "1" after 52
        ("+541155550000", "5491155550000"),  # Argentina: the mobile "9" after 54
        ("+5592981723241", "559281723241"),  # Brazil outside 11-19, 21, 22, 24, 27, 28: no ninth digit
        ("+5511987654321", "5511987654321"),  # Brazil, Sao Paulo: the ninth digit kept
    ],
)
def test_accepted_send_reads_metas_wa_id_and_message_status(sandbox, to, wa_id):
    result = _send(sandbox.graph_url, payload={**PAYLOAD, "to": to, "biz_opaque_callback_data": "b1:0"})

    assert result.ok and result.wa_id == wa_id and result.meta_status == "accepted"
    [request] = sandbox.requests()
    assert request["body"]["biz_opaque_callback_data"] == "b1:0"


def test_an_answer_without_contacts_or_message_status_still_is_sent():
    from whatsapp.client import _accepted

    result = _accepted(b'{"messages": [{"id": "wamid.X"}]}')
    assert result is not None and (result.message_id, result.wa_id, result.meta_status) == ("wamid.X", None, None)
    assert _accepted(b'{"messages": [{"id": ""}]}') is None
    assert _accepted(b'{"contacts": "x", "messages": [{"id": "wamid.Y", "message_status": 3}]}').meta_status is None
