"""Meta's 2026 users over real HTTP (sandbox.users, sandbox.graph_routes, sandbox.webhooks): sends by BSUID, the
BSUID beside every number, 131062, marketing to US users, and the user ids in status webhooks."""

import re

import pytest
import requests

from sandbox.users import bsuid_of, region_of_number
from tests.sandbox.support import SECRET, TO, message, send

US_NUMBER = "+12125550123"  # New York
CA_NUMBER = "+14165550123"  # Toronto: +1 too, but Canada
BSUID = "CO.13491208655302741918"
BSUID_PATTERN = re.compile(r"[A-Z]{2}\.\d{20}")


def by_recipient(user_id=BSUID, **overrides):
    body = message(**overrides)
    del body["to"]
    return {**body, "recipient": user_id}


def auth_template():
    return {
        "name": "login_code",
        "language": "en_US",
        "status": "APPROVED",
        "category": "AUTHENTICATION",
        "components": [{"type": "BODY", "text": "{{1}} is your code"}],
    }


def test_a_send_by_recipient_is_answered_with_the_bsuid_and_no_wa_id(sandbox):
    # when
    response = send(sandbox, by_recipient())

    # then
    assert response.status_code == 200, response.text
    assert response.json()["contacts"] == [{"input": BSUID, "user_id": BSUID}]
    assert response.json()["messages"][0]["id"].startswith("wamid.")
    # and the arrival log keys it by the BSUID (a script for that BSUID applies too)
    [record] = sandbox.requests(to=BSUID)
    assert (record["to"], record["outcome"]) == (BSUID, "ok")
    sandbox.script(BSUID, ["error:131026"])
    assert send(sandbox, by_recipient()).json()["error"]["code"] == 131026


def test_a_number_send_is_answered_with_a_stable_bsuid_of_its_country(sandbox):
    first = send(sandbox).json()["contacts"][0]
    again = send(sandbox).json()["contacts"][0]
    other = send(sandbox, message(to="+34612345678")).json()["contacts"][0]

    assert first["wa_id"] == "573001112233"
    assert BSUID_PATTERN.fullmatch(first["user_id"]) and first["user_id"].startswith("CO.")
    assert again["user_id"] == first["user_id"] == bsuid_of(TO) == sandbox.user_id_of(TO)
    assert other["user_id"].startswith("ES.") and other["user_id"] != first["user_id"]
    # +1 numbers are split by area code, as libphonenumber does
    assert (region_of_number("12125550123"), region_of_number("14165550123")) == ("US", "CA")


@pytest.mark.parametrize(
    "body",
    [
        {**message(), "recipient": BSUID},  # both
        {k: v for k, v in message().items() if k != "to"},  # neither
        by_recipient("13491208655302741918"),  # not a BSUID
        by_recipient("co.123"),
        by_recipient(17),
    ],
    ids=["both", "neither", "digits", "lower-case-country", "not-a-string"],
)
def test_neither_or_both_to_and_recipient_is_meta_400_code_100(sandbox, body):
    response = send(sandbox, body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == 100
    assert [r["outcome"] for r in sandbox.requests()] == ["invalid"]


def test_a_bsuid_for_an_authentication_template_is_131062(sandbox):
    # given an AUTHENTICATION template in the registry
    sandbox.set_templates([auth_template()])
    body = by_recipient(template={"name": "login_code", "language": {"code": "en_US"}, "components": []})

    # when it is sent to a BSUID
    response = send(sandbox, body)

    # then Meta's 131062, nothing counted as accepted
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 131062
    assert "Business-scoped User ID" in error["message"]
    assert sandbox.requests()[0]["outcome"] == "error:131062"
    assert sandbox.stats()["phone_numbers"]["100000000000001"]["accepted"] == 0
    # and the same template to a number goes through
    number_body = {**body, "to": TO}
    del number_body["recipient"]
    assert send(sandbox, number_body).status_code == 200


def test_marketing_to_a_us_number_is_accepted_then_fails_131049(sandbox, receiver):
    # given webhooks to our receiver
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=50, read_after_ms=100)

    # when a MARKETING template (welcome_v2) goes to a US number, and the same to a Canadian number
    us = send(sandbox, message(to=US_NUMBER))
    ca = send(sandbox, message(to=CA_NUMBER))

    # then Meta accepts both, and the US one fails by webhook with 131049 while the Canadian one is delivered
    assert us.status_code == ca.status_code == 200
    us_wamid, ca_wamid = us.json()["messages"][0]["id"], ca.json()["messages"][0]["id"]
    statuses = receiver.wait_for(3)
    by_id = {}
    for status in statuses:
        by_id.setdefault(status["id"], []).append(status)
    [failed] = by_id[us_wamid]
    assert failed["status"] == "failed"
    assert failed["errors"][0]["code"] == 131049
    assert "US" in failed["errors"][0]["error_data"]["details"]
    assert failed["recipient_id"] == "12125550123"
    assert "recipient_user_id" not in failed  # Meta leaves it out of a failed status of a send to a number
    assert sorted(s["status"] for s in by_id[ca_wamid]) == ["delivered", "read"]
    assert [r["outcome"] for r in sandbox.requests(to=US_NUMBER)] == ["failed_webhook:131049"]


def test_utility_to_a_us_number_and_marketing_when_no_region_is_blocked_are_delivered(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=0, read_after_ms=0)
    utility = message(to=US_NUMBER, template={"name": "order_update", "language": {"code": "en_US"}})

    send(sandbox, utility)
    sandbox.config(marketing_blocked_regions=[])
    send(sandbox, message(to=US_NUMBER))

    assert sorted(s["status"] for s in receiver.wait_for(4)) == ["delivered", "delivered", "read", "read"]
    assert {r["outcome"] for r in sandbox.requests()} == {"ok"}


def test_marketing_messages_api_and_a_us_bsuid_are_blocked_too(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=0)
    # a template the registry does not hold, but sent by the Marketing Messages API: MARKETING by its path
    unknown = message(to=US_NUMBER, template={"name": "promo_x", "language": {"code": "en"}})
    by_mm = requests.post(
        f"{sandbox.graph_url}/100000000000001/marketing_messages",
        json=unknown,
        headers={"Authorization": "Bearer t"},
        timeout=5,
    )
    by_bsuid = send(sandbox, by_recipient("US.13491208655302741918"))

    assert by_mm.status_code == by_bsuid.status_code == 200
    assert [r["outcome"] for r in sandbox.requests()] == ["failed_webhook:131049"] * 2
    statuses = receiver.wait_for(2)
    assert {s["errors"][0]["code"] for s in statuses} == {131049}
    # a BSUID send's failed status names the user by BSUID only
    [bsuid_failed] = [s for s in statuses if s["id"] == by_bsuid.json()["messages"][0]["id"]]
    assert bsuid_failed["recipient_user_id"] == "US.13491208655302741918"
    assert "recipient_id" not in bsuid_failed


def test_statuses_carry_recipient_user_id_beside_recipient_id(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, sent_after_ms=0, delivered_after_ms=50)

    send(sandbox)

    statuses = receiver.wait_for(3)
    assert sorted(s["status"] for s in statuses) == ["delivered", "read", "sent"]
    assert {(s["recipient_id"], s["recipient_user_id"]) for s in statuses} == {("573001112233", bsuid_of(TO))}


def test_username_users_and_unknown_bsuids_get_statuses_without_recipient_id(sandbox, receiver):
    # given one number whose user has a username, and another that does not
    username_number = "+573001110000"
    sandbox.config(
        webhook_url=receiver.url,
        app_secret=SECRET,
        delivered_after_ms=0,
        read_after_ms=0,
        username_users=[username_number],
    )

    # when each is sent to by number, a BSUID the sandbox never saw is sent to, and the known user by its BSUID
    by_username = send(sandbox, message(to=username_number)).json()["messages"][0]["id"]
    unknown = send(sandbox, by_recipient()).json()["messages"][0]["id"]
    known = send(sandbox, by_recipient(bsuid_of(TO))).json()["messages"][0]["id"]
    send(sandbox)  # after: the sandbox now knows TO's BSUID
    known_after = send(sandbox, by_recipient(bsuid_of(TO))).json()["messages"][0]["id"]

    # then a username user's and an unknown BSUID's statuses name the user by BSUID only
    statuses = {}
    for status in receiver.wait_for(10):
        statuses.setdefault(status["id"], []).append(status)
    assert len(statuses) == 5
    for wamid, user_id in [(by_username, bsuid_of(username_number)), (unknown, BSUID), (known, bsuid_of(TO))]:
        assert {s.get("recipient_id") for s in statuses[wamid]} == {None}
        assert {s["recipient_user_id"] for s in statuses[wamid]} == {user_id}
    # and a BSUID send to a user whose number Meta knows (and who has no username) names the number too
    assert {(s["recipient_id"], s["recipient_user_id"]) for s in statuses[known_after]} == {
        ("573001112233", bsuid_of(TO))
    }


@pytest.mark.parametrize(
    "changes",
    [
        {"username_users": "+573001110000"},
        {"username_users": [""]},
        {"marketing_blocked_regions": ["us"]},
        {"marketing_blocked_regions": ["USA"]},
    ],
)
def test_config_refuses_bad_user_settings(sandbox, changes):
    response = requests.post(f"{sandbox.url}/_sandbox/config", json=changes, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()
