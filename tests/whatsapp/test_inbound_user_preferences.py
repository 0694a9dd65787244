"""``user_preferences`` changes read by whatsapp.inbound (Meta's webhook reference shape)."""

from datetime import UTC, datetime

from whatsapp.inbound.envelope import OtherChange, envelope_parse
from whatsapp.inbound.users import UserPreferenceUpdate


def _envelope(items, *, metadata=True):
    value = {"messaging_product": "whatsapp", "user_preferences": items}
    if metadata:
        value["metadata"] = {"display_phone_number": "1555", "phone_number_id": "100000000000001"}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "2000", "changes": [{"field": "user_preferences", "value": value}]}],
    }


def test_each_well_formed_item_is_one_update():
    items = envelope_parse(
        _envelope(
            [
                {
                    "wa_id": "34612345678",
                    "detail": "d",
                    "category": "Marketing_Messages",
                    "value": "STOP",
                    "timestamp": 1790000000,
                },
                {"wa_id": "34612345679", "category": "marketing_messages", "value": "resume", "timestamp": "x"},
                {"wa_id": 5, "value": "stop"},
                "nope",
                {"value": "stop"},
            ]
        )
    )
    assert items == [
        UserPreferenceUpdate(
            waba_id="2000",
            phone_number_id="100000000000001",
            wa_id="34612345678",
            category="marketing_messages",
            value="stop",
            timestamp=datetime.fromtimestamp(1790000000, tz=UTC),
        ),
        UserPreferenceUpdate(
            waba_id="2000",
            phone_number_id="100000000000001",
            wa_id="34612345679",
            category="marketing_messages",
            value="resume",
            timestamp=None,
        ),
    ]


def test_a_malformed_list_or_metadata_is_skipped_not_raised():
    assert envelope_parse(_envelope("nope")) == []
    (item,) = envelope_parse(_envelope([{"wa_id": "34612345678", "value": "stop"}], metadata=False))
    assert item.phone_number_id == "" and item.category == ""
    other = envelope_parse({"entry": [{"id": "1", "changes": [{"field": "account_update", "value": {}}]}]})
    assert other == [OtherChange(waba_id="1", field="account_update")]
