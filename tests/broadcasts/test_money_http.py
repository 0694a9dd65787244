"""Money over real HTTP (docs/api.md and docs/rules.md): the dry run and the cost of a broadcast through gunicorn, and
the
bill following Meta's signed pricing webhooks."""

import time
from decimal import Decimal

import orjson
import pytest
import requests
from django.db import connection

from broadcasts import pricing
from broadcasts.models import Broadcast, IdempotencyRecord, RateCard, Send
from tests.broadcasts.test_pricing import CARD, MIXED
from tests.events.helpers import broadcast_with_sends, meta_envelope, meta_signature
from tests.gunicorn_process import gunicorn

pytestmark = [pytest.mark.slow]

SECRET = "meta-app-secret-money"
URL = "/v1/messages/bulk"


@pytest.fixture
def server(transactional_db, tmp_path):
    db = connection.settings_dict
    env = {
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "WHATSAPP_APP_SECRET": SECRET,
        "API_RATE_LIMITS": "10000/min",
        "API_ORG_RATE_LIMITS": "10000/min",
    }
    try:
        with gunicorn(env=env, log_path=tmp_path / "gunicorn.log") as (base, _process):
            yield base
    except RuntimeError as exc:
        pytest.fail(str(exc))


def auth(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers}


def bulk(channel, numbers, **extra) -> dict:
    return {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": n, "variables": {"nombre": "Ana", "monto": "1"}} for n in numbers],
        **extra,
    }


def rows() -> tuple[int, ...]:
    return Broadcast.objects.count(), Send.objects.count(), IdempotencyRecord.objects.count(), RateCard.objects.count()


def test_dry_run_over_http_prices_a_mixed_list_and_changes_nothing(server, channel, template, token):
    pricing.rate_card_load(text=CARD)
    before = rows()
    response = requests.post(
        server + URL,
        data=orjson.dumps(bulk(channel, MIXED, dry_run=True)),
        headers=auth(token, **{"Idempotency-Key": "dry-1"}),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["dry_run"] is True and data["total_recipients"] == 12
    # MIXED's hand-computed 0.4333 less its US number (0.0250): US is in MARKETING_BLOCKED_REGIONS by default
    assert data["estimate"]["total"] == "0.4083" and data["estimate"]["currency"] == "USD"
    assert data["estimate"]["blocked"] == 1 and "US" not in data["estimate"]["by_country"]
    assert data["estimate"]["by_country"]["GB"] == {"recipients": 2, "unit_price": "0.06", "total": "0.12"}
    assert data["messaging_limit"] == {"limit": None, "used": None, "would_wait": 0}
    assert data["eta"].endswith("Z")
    assert rows() == before  # no broadcast, no send, no idempotency record

    # The same key on a real request afterwards is a fresh key: the dry run recorded nothing
    real = requests.post(
        server + URL,
        data=orjson.dumps(bulk(channel, MIXED)),
        headers=auth(token, **{"Idempotency-Key": "dry-1"}),
        timeout=30,
    )
    assert real.status_code == 202, real.text
    broadcast_id = real.json()["broadcast_id"]
    shown = requests.get(f"{server}{URL}/{broadcast_id}", headers=auth(token), timeout=30).json()
    assert shown["cost"] == {"currency": "USD", "estimated": "0.4083", "billed": "0.00", "max_cost": None}
    listed = requests.get(server + URL, headers=auth(token), timeout=30).json()["data"]
    assert listed[0]["cost"]["estimated"] == "0.4083"


def test_dry_run_validates_exactly_as_a_real_request(server, channel, template, token):
    bad = bulk(channel, ["+34612345678", "12345"])
    bad["scheduled_at"] = ""
    real = requests.post(server + URL, data=orjson.dumps(bad), headers=auth(token), timeout=30)
    dry = requests.post(server + URL, data=orjson.dumps({**bad, "dry_run": True}), headers=auth(token), timeout=30)
    assert real.status_code == dry.status_code == 400
    assert real.json()["error"]["details"] == dry.json()["error"]["details"]
    assert set(dry.json()["error"]["details"]) == {"recipients[1].to", "scheduled_at"}

    for value in ("true", 1, None, [], {}):
        response = requests.post(
            server + URL, data=orjson.dumps(bulk(channel, MIXED[:1], dry_run=value)), headers=auth(token), timeout=30
        )
        assert response.status_code == 400, value
        assert response.json()["error"]["details"] == {"dry_run": ["Must be a boolean."]}
    # Without a rate card: estimate null
    response = requests.post(
        server + URL, data=orjson.dumps(bulk(channel, MIXED[:1], dry_run=True)), headers=auth(token), timeout=30
    )
    assert response.status_code == 200 and response.json()["estimate"] is None
    assert rows() == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (5, "Must be a decimal string"),
        ("0", "greater than 0"),
        ("-1", "greater than 0"),
        ("1.1234567", "at most 6 decimals"),
        ("abc", "greater than 0"),
        ("1e3", "greater than 0"),
    ],
)
def test_max_cost_must_be_a_positive_decimal_string(server, channel, template, token, value, message):
    pricing.rate_card_load(text=CARD)
    response = requests.post(
        server + URL, data=orjson.dumps(bulk(channel, MIXED, max_cost=value)), headers=auth(token), timeout=30
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["details"]["max_cost"][0]
    assert Broadcast.objects.count() == 0


def test_max_cost_needs_a_card_pricing_every_recipient(server, channel, template, token):
    response = requests.post(
        server + URL, data=orjson.dumps(bulk(channel, MIXED, max_cost="1.00")), headers=auth(token), timeout=30
    )
    assert response.status_code == 400 and "No rate card" in response.json()["error"]["details"]["max_cost"][0]
    pricing.rate_card_load(text="country,category,price,currency\nES,MARKETING,0.06,USD\n")
    response = requests.post(
        server + URL, data=orjson.dumps(bulk(channel, MIXED, max_cost="1.00")), headers=auth(token), timeout=30
    )
    assert response.status_code == 400
    assert "no MARKETING price for 9 recipient(s) (first: recipients[3])" in response.text
    assert Broadcast.objects.count() == 0


def test_a_5000_recipient_dry_run_answers_within_2_s(server, channel, template, token):
    pricing.rate_card_load(text=CARD)
    numbers = [MIXED[i % len(MIXED)] for i in range(5000)]
    data = orjson.dumps(bulk(channel, numbers, dry_run=True))
    requests.post(server + URL, data=data, headers=auth(token), timeout=30)  # warm the worker up
    started = time.perf_counter()
    response = requests.post(server + URL, data=data, headers=auth(token), timeout=30)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert response.json()["estimate"]["by_country"]["IN"]["recipients"] == sum(n.startswith("+91") for n in numbers)
    assert elapsed < 2.0, elapsed
    assert Broadcast.objects.count() == 0


def _signed_post(server: str, statuses: list[dict]) -> requests.Response:
    raw = orjson.dumps(meta_envelope(statuses=statuses))
    return requests.post(
        server + "/v1/webhooks/whatsapp",
        data=raw,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw, SECRET)},
        timeout=30,
    )


def test_billed_follows_signed_pricing_webhooks(server, org, channel, template, token):
    pricing.rate_card_load(text=CARD)
    broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=3)
    Send.objects.filter(broadcast=broadcast).update(to="+525512345678")  # MX: 0.0305
    w = [s.message_id for s in Send.objects.filter(broadcast=broadcast).order_by("index")]
    regular = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    free = {"billable": False, "pricing_model": "PMP", "category": "marketing", "type": "free_entry_point"}

    def entry(wamid, status, pricing_obj, ts=1764252000):
        return {
            "id": wamid,
            "status": status,
            "timestamp": str(ts),
            "recipient_id": "5215512345678",
            "pricing": pricing_obj,
        }

    # sent, delivered, read of w0 (each twice: Meta redelivers); w1 non-billable; w2 only sent
    bodies = [
        [entry(w[0], "sent", regular), entry(w[1], "sent", free), entry(w[2], "sent", regular)],
        [entry(w[0], "delivered", regular), entry(w[1], "delivered", free)],
        [entry(w[0], "delivered", regular)],
        [entry(w[0], "read", regular), entry(w[1], "read", free)],
        [entry(w[0], "read", regular)],
    ]
    for statuses in bodies:
        assert _signed_post(server, statuses).status_code == 200

    def cost():
        return requests.get(f"{server}{URL}/{broadcast.id}", headers=auth(token), timeout=30).json()["cost"]

    assert cost()["billed"] == "0.0305"
    # A later card does not change a stored price
    pricing.rate_card_load(text=CARD.replace("MX,MARKETING,0.0305", "MX,MARKETING,0.0500"))
    assert _signed_post(server, [entry(w[0], "read", regular)]).status_code == 200
    assert cost()["billed"] == "0.0305"
    # w2 delivered now: priced at the card in force at its delivery
    assert _signed_post(server, [entry(w[2], "delivered", regular)]).status_code == 200
    assert cost()["billed"] == "0.0805"
    listing = requests.get(f"{server}{URL}/{broadcast.id}/recipients", headers=auth(token), timeout=30).json()
    assert [r["pricing"] for r in listing["data"]] == [
        {"category": "marketing", "type": "regular", "billable": True},
        {"category": "marketing", "type": "free_entry_point", "billable": False},
        {"category": "marketing", "type": "regular", "billable": True},
    ]
    prices = dict(Send.objects.filter(broadcast=broadcast).values_list("message_id", "price"))
    assert prices == {w[0]: Decimal("0.0305"), w[1]: None, w[2]: Decimal("0.05")}
