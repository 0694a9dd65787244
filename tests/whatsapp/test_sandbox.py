"""The sandbox over real HTTP: a subprocess on a free loopback port, driven with `requests`."""

import hashlib
import hmac
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from whatsapp.errors import ErrorClass, parse_graph_error
from whatsapp.sandbox_process import PROJECT_ROOT, start_sandbox

TO = "+573001112233"
PHONE = "100000000000001"
SECRET = "sandbox-app-secret"


def message(to=TO, **overrides):
    body = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": "welcome_v2",
            "language": {"code": "es"},
            "components": [{"type": "body", "parameters": [{"type": "text", "parameter_name": "nombre", "text": "A"}]}],
        },
    }
    body.update(overrides)
    return body


def send(sandbox, body=None, *, phone=PHONE, token="EAAG-token", timeout=5.0, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return requests.post(
        f"{sandbox.graph_url}/{phone}/messages",
        json=message() if body is None else body,
        headers=headers,
        timeout=timeout,
        **kwargs,
    )


def test_accepts_a_template_send_and_records_it(sandbox):
    # when
    response = send(sandbox)

    # then Meta's success shape, with a wamid
    assert response.status_code == 200
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": TO, "wa_id": "573001112233"}]
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


def test_scripted_outcomes_are_consumed_in_order_then_ok(sandbox):
    # given a script for one number
    outcomes = ["http500", "error:131026", "error:130429", "http429", "http503", "error:190", "raw502", "error:131057"]
    sandbox.script(TO, outcomes)

    # when the number is sent to once per outcome, and once more
    responses = [send(sandbox) for _ in range(len(outcomes) + 1)]

    # then each answer is the scripted one, with a plausible status and Meta's envelope
    got = [(r.status_code, parse_graph_error(r.status_code, r.content)) for r in responses[:-1]]
    assert [(status, error.code, error.error_class) for status, error in got] == [
        (500, "1", ErrorClass.TRANSIENT),
        (400, "131026", ErrorClass.PERMANENT),
        (429, "130429", ErrorClass.TRANSIENT),
        (429, "4", ErrorClass.TRANSIENT),
        (503, "2", ErrorClass.TRANSIENT),
        (401, "190", ErrorClass.ACCOUNT),
        (502, "http_502", ErrorClass.TRANSIENT),
        (503, "131057", ErrorClass.TRANSIENT),
    ]
    assert responses[-1].status_code == 200
    assert [r["outcome"] for r in sandbox.requests()] == outcomes + ["ok"]


def test_meta_error_envelope_shape(sandbox):
    sandbox.script(TO, ["error:131026"])

    error = send(sandbox).json()["error"]

    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["message"].startswith("(#131026) ")
    assert error["error_data"]["details"]


def test_scripts_are_per_number(sandbox):
    sandbox.script(TO, ["error:131026"])

    other = send(sandbox, message(to="+573009998877"))
    scripted = send(sandbox)

    assert (other.status_code, scripted.status_code) == (200, 400)


def test_script_numbers_match_by_digits(sandbox):
    sandbox.script("573001112233", ["http500"])

    assert send(sandbox, message(to="+57 300 111 2233")).status_code == 500


def test_hang_never_answers_before_the_client_gives_up(sandbox):
    sandbox.script(TO, ["hang", "ok"])
    started = time.monotonic()

    with pytest.raises(requests.ReadTimeout):
        send(sandbox, timeout=0.5)

    assert time.monotonic() - started >= 0.5
    # the request did arrive: its outcome is unknown to the client only
    assert [r["outcome"] for r in sandbox.requests(to=TO)] == ["hang"]
    assert send(sandbox).status_code == 200


def test_drop_closes_the_connection_without_an_answer(sandbox):
    sandbox.script(TO, ["drop"])

    with pytest.raises(requests.ConnectionError):
        send(sandbox)

    assert sandbox.requests()[0]["outcome"] == "drop"
    assert send(sandbox).status_code == 200


def test_slow_outcome_adds_latency(sandbox):
    sandbox.script(TO, ["slow:300"])
    started = time.monotonic()

    response = send(sandbox)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_config_latency_and_default_outcome(sandbox):
    # given every send answered after 200 ms with a 500
    sandbox.config(latency_ms=200, default_outcome="http500")
    started = time.monotonic()

    # when
    response = send(sandbox)

    # then
    assert response.status_code == 500
    assert time.monotonic() - started >= 0.2
    # and a reset restores the start-up config
    sandbox.reset()
    assert sandbox.config()["default_outcome"] == "ok"
    assert send(sandbox).status_code == 200


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/_sandbox/script", {"to": TO, "outcomes": ["explode"]}),
        ("/_sandbox/script", {"to": TO, "outcomes": ["http200"]}),
        ("/_sandbox/script", {"to": "", "outcomes": ["ok"]}),
        ("/_sandbox/config", {"latency_ms": -1}),
        ("/_sandbox/config", {"default_outcome": "nope"}),
        ("/_sandbox/config", {"unknown_key": 1}),
        ("/_sandbox/config", {"phone_mps_cap": 0}),
        ("/_sandbox/config", {"pair_rate_limit_ms": 0}),
        ("/_sandbox/templates", {"templates": "x"}),
    ],
)
def test_control_api_refuses_bad_input(sandbox, path, payload):
    response = requests.post(f"{sandbox.url}{path}", json=payload, timeout=5)

    assert response.status_code == 400
    assert "error" in response.json()


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


def test_stats_count_per_phone_and_busiest_second(sandbox):
    # given 3 sends in a burst, then 2 more after more than a second
    for _ in range(3):
        send(sandbox)
    time.sleep(1.1)
    for _ in range(2):
        send(sandbox)
    sandbox.script(TO, ["error:131026"])
    send(sandbox, phone="100000000000002")

    # when
    stats = sandbox.stats()

    # then
    phone = stats["phone_numbers"][PHONE]
    assert (phone["total"], phone["accepted"], phone["max_in_one_second"]) == (5, 5, 3)
    assert sum(phone["per_second"].values()) == 5
    assert 0 <= phone["min_repeat_gap_seconds"] < 1  # the same number was sent to in the burst
    assert stats["phone_numbers"]["100000000000002"]["outcomes"] == {"error:131026": 1}
    assert stats["total"] == 6


def test_requests_filters_by_number_and_since(sandbox):
    send(sandbox)
    send(sandbox, message(to="+573009998877"))
    send(sandbox)

    assert [r["seq"] for r in sandbox.requests(to=TO)] == [1, 3]
    assert [r["seq"] for r in sandbox.requests(since=1)] == [2, 3]
    assert [r["to"] for r in sandbox.requests(to="+573009998877")] == ["573009998877"]


def test_reset_forgets_requests_and_scripts(sandbox):
    sandbox.script(TO, ["http500"])
    send(sandbox, message(to="+573009998877"))

    sandbox.reset()

    assert sandbox.requests() == []
    assert sandbox.stats()["total"] == 0
    assert send(sandbox).status_code == 200


def templates_page(sandbox, url=None, **params):
    response = requests.get(
        url or f"{sandbox.graph_url}/200000000000001/message_templates",
        params=params,
        headers={"Authorization": "Bearer EAAG-token"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()


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


class WebhookReceiver:
    """A loopback HTTP server recording the webhooks the sandbox posts; answers `fail_first` 500s first."""

    def __init__(self, *, fail_first: int = 0):
        self.posts: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    failing = receiver.fail_first > 0
                    receiver.fail_first -= 1
                    if not failing:
                        receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/webhooks/whatsapp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def statuses(self) -> list[dict]:
        with self.lock:
            posts = list(self.posts)
        found = []
        for _, body in posts:
            for entry in orjson.loads(body)["entry"]:
                for change in entry["changes"]:
                    found.extend(change["value"]["statuses"])
        return found

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.statuses()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.statuses()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_signed_delivered_and_read_webhooks_batched(sandbox, receiver):
    # given webhooks to our receiver, delivered after 100 ms and read after 300 ms
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=100, read_after_ms=300)

    # when three sends are accepted together
    wamids = [send(sandbox, message(to=f"+57300111223{i}")).json()["messages"][0]["id"] for i in range(3)]

    # then each gets delivered then read, in Meta's envelope
    statuses = receiver.wait_for(6)
    assert sorted((s["id"], s["status"]) for s in statuses) == sorted(
        [(w, "delivered") for w in wamids] + [(w, "read") for w in wamids]
    )
    delivered = next(s for s in statuses if s["status"] == "delivered")
    assert delivered["recipient_id"].startswith("57300111223")
    assert delivered["timestamp"].isdecimal()
    assert "pricing" in delivered and "conversation" in delivered
    # and every body is signed with the app secret over its raw bytes
    for headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
        envelope = orjson.loads(body)
        assert envelope["object"] == "whatsapp_business_account"
        change = envelope["entry"][0]["changes"][0]
        assert change["field"] == "messages"
        assert change["value"]["metadata"]["phone_number_id"] == PHONE
    # and statuses due together travel in one body, as Meta batches them
    assert len(receiver.posts) < 6
    assert max(len(orjson.loads(body)["entry"][0]["changes"][0]["value"]["statuses"]) for _, body in receiver.posts) > 1


def test_failed_webhook_outcome_accepts_then_reports_failure(sandbox, receiver):
    sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=50)
    sandbox.script(TO, ["failed_webhook:131026"])

    response = send(sandbox)

    assert response.status_code == 200
    [status] = receiver.wait_for(1)
    time.sleep(0.3)  # nothing else (no delivered/read) follows a failure
    assert receiver.statuses() == [status]
    assert status["id"] == response.json()["messages"][0]["id"]
    assert status["status"] == "failed"
    assert status["errors"][0]["code"] == 131026
    assert status["errors"][0]["title"]


def test_webhook_is_retried_after_a_non_2xx(sandbox):
    # given a receiver that fails its first post
    receiver = WebhookReceiver(fail_first=1)
    try:
        sandbox.config(webhook_url=receiver.url, app_secret=SECRET, delivered_after_ms=0, read_after_ms=0)

        # when one send is accepted
        send(sandbox)

        # then its statuses still arrive, after a retry
        statuses = receiver.wait_for(2)
        assert sorted(s["status"] for s in statuses) == ["delivered", "read"]
        assert sandbox.stats()["webhooks"]["retries"] == 1
    finally:
        receiver.close()


def test_no_webhooks_without_url(sandbox, receiver):
    sandbox.config(delivered_after_ms=0, read_after_ms=0)

    send(sandbox)
    time.sleep(0.4)

    assert receiver.posts == []
    assert sandbox.stats()["webhooks"]["pending_statuses"] == 0


def test_sandbox_module_does_not_import_django():
    code = "import sys, whatsapp.sandbox.server, whatsapp.sandbox_process; assert 'django' not in sys.modules"

    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, timeout=30)

    assert result.returncode == 0, result.stderr.decode()


def test_cli_refuses_an_unknown_default_outcome():
    result = subprocess.run(
        [sys.executable, "-m", "whatsapp.sandbox", "--port", "1", "--default-outcome", "bogus"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert b"unknown outcome" in result.stderr


def test_cli_options_reach_the_sandbox():
    with start_sandbox(
        latency_ms=5,
        phone_mps_cap=7,
        default_outcome="http503",
        read_after_ms=10,
        pair_rate_limit_ms=6000,
        max_recorded=3,
    ) as box:
        config = box.config()
        assert config["pair_rate_limit_ms"] == 6000

        assert (config["latency_ms"], config["phone_mps_cap"], config["default_outcome"]) == (5, 7, "http503")
        assert config["read_after_ms"] == 10
        assert send(box).status_code == 503
        # only the last `max_recorded` requests are kept, and the stats say how many were dropped
        for index in range(4):
            send(box, message(to=f"+57300111220{index}"))
        assert [r["seq"] for r in box.requests()] == [3, 4, 5]
        assert box.stats()["dropped_records"] == 2


def test_sandbox_stops_when_its_parent_dies():
    # given a process that starts a sandbox and dies without stopping it
    code = "import os; from whatsapp.sandbox_process import start_sandbox; print(start_sandbox().pid); os._exit(0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, timeout=30)
    pid = int(result.stdout)

    # then the orphaned sandbox exits by itself within a few seconds
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}") and not _zombie(pid):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.mark.django_db(transaction=True)
def test_sandbox_webhooks_move_our_sends_to_read_and_failed(
    django_db_setup, sandbox, live_server, settings, channel, template
):
    # given our webhook receiver with the app secret the sandbox signs with
    settings.WHATSAPP_APP_SECRET = SECRET
    sandbox.config(
        webhook_url=f"{live_server.url}/v1/webhooks/whatsapp",
        app_secret=SECRET,
        delivered_after_ms=50,
        read_after_ms=150,
    )
    sandbox.script("+573001112299", ["failed_webhook:131026"])
    broadcast = Broadcast.objects.create(
        organization=channel.organization,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name="sandbox e2e",
        total_recipients=2,
        status=BroadcastStatus.IN_PROGRESS,
    )
    # when two sends are accepted by the sandbox and recorded SENT with their wamids
    sends = []
    for index, to in enumerate(["+573001112233", "+573001112299"]):
        wamid = send(sandbox, message(to=to), phone=channel.phone_number_id).json()["messages"][0]["id"]
        sends.append(
            Send.objects.create(broadcast=broadcast, index=index, to=to, status=SendStatus.SENT, message_id=wamid)
        )

    # then the sandbox's signed webhooks move them to READ and FAILED
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = [s.status for s in Send.objects.filter(broadcast=broadcast).order_by("index")]
        if statuses == [SendStatus.READ, SendStatus.FAILED]:
            break
        time.sleep(0.1)
    assert statuses == [SendStatus.READ, SendStatus.FAILED]
    failed = Send.objects.get(pk=sends[1].pk)
    assert failed.error_code == "131026"
    assert sandbox.stats()["webhooks"]["failed_posts"] == 0
