"""The fake Graph API over real HTTP (sandbox.graph_routes): sends, validation, Meta's rate limits, templates."""

import time

import pytest
import requests

from tests.sandbox.support import PHONE, TO, message, send, templates_page
from whatsapp.errors import ErrorClass, parse_graph_error


def test_accepts_a_template_send_and_records_it(sandbox):
    # when
    response = send(sandbox)

    # then Meta's success shape, with a wamid
    assert response.status_code == 200
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": TO, "wa_id": "573001112233", "user_id": sandbox.user_id_of(TO)}]
    assert data["messages"][0]["id"].startswith("wamid.")
    # and the request is recorded as received
    [record] = sandbox.requests()
    assert record["seq"] == 1
    assert record["phone_number_id"] == PHONE
    assert record["authorization"] == "Bearer EAAG-token"
    assert record["body"] == message()
    assert record["outcome"] == "ok"
    assert abs(record["received_at"] - time.time()) < 5


def test_wamids_are_unique(sandbox):
    ids = {send(sandbox).json()["messages"][0]["id"] for _ in range(20)}

    assert len(ids) == 20


@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing_bearer_token_is_401_code_190(sandbox, token):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    response = requests.post(f"{sandbox.graph_url}/{PHONE}/messages", json=message(), headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190
    assert sandbox.requests()[0]["outcome"] == "unauthorized"


@pytest.mark.parametrize(
    "body",
    [
        message(messaging_product="sms"),
        message(to=""),
        message(type="text"),
        message(template={"language": {"code": "es"}}),
        message(template={"name": "welcome_v2", "language": {}}),
        message(template={"name": "welcome_v2", "language": {"code": "es"}, "components": "x"}),
        ["not", "an", "object"],
    ],
)
def test_malformed_body_is_400_code_100(sandbox, body):
    response = send(sandbox, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (100, "OAuthException")
    assert error["error_data"]["details"]


def test_invalid_json_is_400_code_100(sandbox):
    response = requests.post(
        f"{sandbox.graph_url}/{PHONE}/messages", data=b"{nope", headers={"Authorization": "Bearer t"}, timeout=5
    )

    assert (response.status_code, response.json()["error"]["code"]) == (400, 100)


def test_phone_mps_cap_answers_130429_beyond_the_cap(sandbox):
    # given a cap of 5 sends per second per phone number
    sandbox.config(phone_mps_cap=5)

    # when 8 sends arrive at once for one phone and 2 for another
    capped = [send(sandbox, message(to=f"+5730011122{i:02d}")) for i in range(8)]
    other = [send(sandbox, phone="100000000000002") for _ in range(2)]

    # then the first 5 pass, the rest get Meta's rate-limit error; the other phone is not affected
    assert [r.status_code for r in capped] == [200] * 5 + [400] * 3
    assert {r.json()["error"]["code"] for r in capped[5:]} == {130429}
    assert [r.status_code for r in other] == [200, 200]
    stats = sandbox.stats()["phone_numbers"]
    assert stats[PHONE]["outcomes"] == {"ok": 5, "capped": 3}
    assert stats[PHONE]["max_accepted_in_one_second"] == 5


def test_phone_mps_cap_window_slides(sandbox):
    sandbox.config(phone_mps_cap=2)
    assert [send(sandbox).status_code for _ in range(3)] == [200, 200, 400]

    time.sleep(1.05)

    assert send(sandbox).status_code == 200


def test_only_accepted_sends_count_towards_the_cap(sandbox):
    # given a cap of 2 and a number whose first send fails
    sandbox.config(phone_mps_cap=2)
    sandbox.script(TO, ["http500"])

    # when three sends arrive at once
    statuses = [send(sandbox).status_code for _ in range(3)]

    # then the failed one took no room under the cap
    assert statuses == [500, 200, 200]
    assert send(sandbox).status_code == 400


def test_pair_rate_limit_answers_131056_for_the_same_number_too_soon(sandbox):
    # given Meta's pair rate limit of 300 ms between messages to one number
    sandbox.config(pair_rate_limit_ms=300)

    # when one number is sent to twice at once, another number once, and the first again after the gap
    first, again = send(sandbox), send(sandbox)
    other = send(sandbox, message(to="+573009998877"))
    time.sleep(0.35)
    later = send(sandbox)

    # then only the too-soon repeat is refused, with 131056 (transient)
    assert [r.status_code for r in (first, again, other, later)] == [200, 400, 200, 200]
    assert parse_graph_error(400, again.content).code == "131056"
    assert parse_graph_error(400, again.content).error_class is ErrorClass.TRANSIENT
    gap = sandbox.stats()["phone_numbers"][PHONE]["min_repeat_gap_seconds"]
    assert 0.3 <= gap < 5


def test_message_templates_default_catalogue_and_paging(sandbox):
    # when the catalogue is read two at a time, following paging.next
    first = templates_page(sandbox, limit=2)
    second = templates_page(sandbox, url=first["paging"]["next"])

    # then every template comes once, and the last page has no next
    names = [t["name"] for t in first["data"] + second["data"]]
    assert names == ["welcome_v2", "order_update", "payment_reminder"]
    assert set(first["paging"]["cursors"]) == {"before", "after"}
    assert "next" not in second["paging"]
    welcome = first["data"][0]
    assert (welcome["language"], welcome["status"], welcome["parameter_format"]) == ("es", "APPROVED", "NAMED")
    assert welcome["components"][0]["text"] == "Hola {{nombre}}, tu saldo es {{monto}}"
    assert first["data"][1]["components"][0]["text"] == "Hi {{1}}, order {{2}} shipped"


def test_message_templates_default_limit_is_25(sandbox):
    templates = [{"name": f"t{i}", "language": "es", "status": "APPROVED", "components": []} for i in range(30)]
    sandbox.set_templates(templates, waba_id="200000000000009")

    page = templates_page(sandbox, url=f"{sandbox.graph_url}/200000000000009/message_templates")

    assert len(page["data"]) == 25
    assert page["paging"]["next"]
    assert len(templates_page(sandbox, url=page["paging"]["next"])["data"]) == 5
    # other WABAs keep the default catalogue
    assert len(templates_page(sandbox)["data"]) == 3


def test_message_templates_filters_and_bad_cursor(sandbox):
    page = templates_page(sandbox, name="order_update")

    assert [t["name"] for t in page["data"]] == ["order_update"]
    bad = requests.get(
        f"{sandbox.graph_url}/200000000000001/message_templates",
        params={"after": "%%%"},
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, 100)


def test_message_templates_need_a_token(sandbox):
    response = requests.get(f"{sandbox.graph_url}/200000000000001/message_templates", timeout=5)

    assert (response.status_code, response.json()["error"]["code"]) == (401, 190)
