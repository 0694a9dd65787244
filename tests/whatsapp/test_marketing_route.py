"""The send path (whatsapp.client.send_path / send_message's ``path``): MARKETING templates on a number onboarded
to Meta's Marketing Messages API go to /marketing_messages, everything else to /messages."""

import asyncio

import pytest

from whatsapp.client import MARKETING_MESSAGES_PATH, MESSAGES_PATH, GraphClient, send_path
from whatsapp.inbound.envelope import envelope_parse
from whatsapp.inbound.templates import TemplateCategoryUpdate, TemplateQualityUpdate, TemplateStatusUpdate

PAYLOAD = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "+573001112233",
    "type": "template",
    "template": {"name": "welcome_v2", "language": {"code": "es"}},
}


@pytest.mark.parametrize(
    ("category", "onboarded", "expected"),
    [
        ("MARKETING", True, MARKETING_MESSAGES_PATH),
        ("marketing", True, MARKETING_MESSAGES_PATH),
        ("MARKETING", False, MESSAGES_PATH),
        ("UTILITY", True, MESSAGES_PATH),
        ("AUTHENTICATION", True, MESSAGES_PATH),
        ("", True, MESSAGES_PATH),
    ],
)
def test_send_path(category, onboarded, expected):
    assert send_path(category=category, marketing_messages=onboarded) == expected


def test_the_client_posts_to_the_path_given(sandbox):
    async def run():
        client = GraphClient(base_url=sandbox.graph_url)
        try:
            return await client.send_message(
                phone_number_id="100000000000001", access_token="t", payload=PAYLOAD, path=MARKETING_MESSAGES_PATH
            )
        finally:
            await client.close()

    result = asyncio.run(run())
    assert result.ok
    [request] = sandbox.requests()
    assert request["path"] == "marketing_messages" and request["body"] == PAYLOAD


def test_template_kinds_are_parsed_with_their_entry_time():
    ref = {"message_template_id": 12, "message_template_name": "welcome_v2", "message_template_language": "es"}
    payload = {
        "entry": [
            {"id": "2000", "time": 1_790_000_001, "changes": [
                {"field": "message_template_status_update", "value": {**ref, "event": "paused", "reason": "LOW"}},
            ]},
            {"id": "2000", "time": "1790000002", "changes": [
                {"field": "template_category_update", "value": {**ref, "previous_category": "marketing",
                                                                "new_category": "UTILITY"}},
                {"field": "template_category_update", "value": {**ref, "correct_category": "UTILITY",
                                                                "new_category": "MARKETING"}},
            ]},
            {"id": "2000", "changes": [
                {"field": "message_template_quality_update", "value": {**ref, "new_quality_score": "red"}},
            ]},
        ]
    }  # fmt: skip
    status, final, advance, quality = envelope_parse(payload)
    assert status == TemplateStatusUpdate(
        waba_id="2000", event="PAUSED", template_id="12", name="welcome_v2", language="es", reason="LOW",
        time=1_790_000_001,
    )  # fmt: skip
    assert isinstance(final, TemplateCategoryUpdate) and final.final and final.time == 1_790_000_002
    assert (final.previous_category, final.new_category) == ("MARKETING", "UTILITY")
    assert not advance.final and advance.correct_category == "UTILITY"
    assert isinstance(quality, TemplateQualityUpdate) and quality.new_quality == "RED" and quality.time is None
