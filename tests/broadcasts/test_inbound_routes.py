"""broadcasts/status_updates/inbound.py's routing table: which applier gets which items, in which order
(pure: no database)."""

from broadcasts.status_updates import inbound
from whatsapp.inbound.changes import changes_read


def _change(field, value, *, entry_time=1700000000):
    return {"id": "2000", "time": entry_time, "changes": [{"field": field, "value": value}]}


def _status(wamid: str) -> dict:
    return {"id": wamid, "status": "delivered", "timestamp": "1700000000", "recipient_id": "34600000001"}


def _template(event: str | None = None, **fields) -> dict:
    value = {"message_template_id": 7, "message_template_name": "promo", "message_template_language": "es"}
    return {**value, **({"event": event} if event else {}), **fields}


def test_each_kind_goes_to_its_applier_statuses_in_one_run_template_updates_in_metas_order():
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            _change("messages", {"metadata": {"phone_number_id": "1"}, "statuses": [_status("w.1"), _status("w.2")]}),
            _change("message_template_status_update", _template("PAUSED")),
            _change("template_category_update", _template(new_category="MARKETING", previous_category="UTILITY")),
            _change("messages", {"metadata": {"phone_number_id": "1"}, "statuses": [_status("w.3")]}),
            _change("message_template_status_update", _template("APPROVED")),
            _change("user_preferences", {"user_preferences": [{"wa_id": "34600000001", "value": "stop"}]}),
            _change("account_update", {"event": "VERIFIED_ACCOUNT"}),
            _change(["not", "a", "field"], {}),
        ],
    }
    changes = list(changes_read(payload))

    runs = inbound._runs(changes, inbound.STEPS)

    assert [
        (apply.__name__, [getattr(i, "wamid", None) or getattr(i, "event", None) for i in items])
        for apply, items in runs
    ] == [
        ("_statuses_apply", ["w.1", "w.2", "w.3"]),  # every status of the envelope in one call
        ("_template_statuses_apply", ["PAUSED"]),
        ("_template_categories_apply", [None]),
        ("_template_statuses_apply", ["APPROVED"]),  # after the category update, as Meta sent them
        ("_user_preferences_apply", [None]),
    ]
    assert inbound._runs(changes, inbound.LIMITS_STEPS) == []  # no incoming message, capability or quality


def test_the_limits_steps_read_incoming_messages_first_then_limit_updates_in_metas_order():
    payload = {
        "entry": [
            _change("phone_number_quality_update", {"event": "UPGRADE", "current_limit": "TIER_10K"}),
            _change("messages", {"metadata": {"phone_number_id": "1"}, "messages": [{"from": "34600000001"}]}),
            _change("business_capability_update", {"max_daily_conversations_per_business": 1000}),
            _change("phone_number_quality_update", {"event": "DOWNGRADE", "current_limit": "TIER_1K"}),
        ]
    }

    runs = inbound._runs(list(changes_read(payload)), inbound.LIMITS_STEPS)

    assert [(apply.__name__, len(items)) for apply, items in runs] == [
        ("_customer_windows_apply", 1),
        ("_number_qualities_apply", 1),
        ("_business_capabilities_apply", 1),
        ("_number_qualities_apply", 1),
    ]
    assert [item.event for item in runs[-1][1]] == ["DOWNGRADE"]
