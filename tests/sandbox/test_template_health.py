"""The sandbox's template health and marketing route: /marketing_messages, template errors, template webhooks."""

import hashlib
import hmac

import orjson
import pytest
import requests

from sandbox.process import SandboxError
from tests.sandbox.support import PHONE, SECRET, message, send


def test_marketing_messages_path_is_served_and_recorded(sandbox):
    # When one send goes to /messages and one to /marketing_messages
    plain = send(sandbox)
    marketing = requests.post(
        f"{sandbox.graph_url}/{PHONE}/marketing_messages",
        json=message(to="+573001112244"),
        headers={"Authorization": "Bearer EAAG-token"},
        timeout=5,
    )

    # Then both are accepted with Meta's message_status, and each record names its path
    assert plain.status_code == marketing.status_code == 200
    assert marketing.json()["messages"][0]["message_status"] == "accepted"
    assert [r["path"] for r in sandbox.requests()] == ["messages", "marketing_messages"]


def test_template_error_answers_every_send_of_that_template_until_cleared(sandbox):
    # Given the template welcome_v2 paused at "Meta"
    sandbox.template_error("welcome_v2", 132015)

    # When it is sent, and another template is sent
    refused = send(sandbox)
    other = message()
    other["template"] = {**other["template"], "name": "other_template"}
    accepted = send(sandbox, other)

    # Then the first answers Meta's 132015, the other goes through
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 132015
    assert accepted.status_code == 200
    # And once cleared, the template is sent again
    assert sandbox.template_error("welcome_v2", None) == {}
    assert send(sandbox).status_code == 200


def test_template_error_rejects_a_bad_body(sandbox):
    with pytest.raises(SandboxError):
        sandbox._call("POST", "/_sandbox/template_errors", json={"name": "", "code": 132015})


def test_template_webhook_is_posted_signed_on_demand(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET)

    # When a PAUSED template status update is asked for, with the entry's time
    answer = sandbox.template_status_webhook(
        event="PAUSED", name="welcome_v2", language="es", waba_id="200000000000001", time=1_790_000_123
    )

    # Then it was posted at once (the receiver's status is returned), signed over its raw bytes, in Meta's shape
    assert answer["status"] == 200 and answer["answered_at"] > 0
    [(headers, body)] = receiver.posts
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
    entry = orjson.loads(body)["entry"][0]
    assert entry["id"] == "200000000000001" and entry["time"] == 1_790_000_123
    change = entry["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"]["event"] == "PAUSED"
    assert change["value"]["message_template_name"] == "welcome_v2"


def test_template_webhook_refuses_other_fields_and_no_url(sandbox):
    with pytest.raises(SandboxError):
        sandbox.template_webhook("messages", {"statuses": []}, waba_id="1")
    with pytest.raises(SandboxError):  # no webhook_url configured
        sandbox.template_webhook("template_category_update", {"new_category": "UTILITY"}, waba_id="1")
