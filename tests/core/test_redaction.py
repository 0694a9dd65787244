"""No token, secret or access token ever appears in a log (docs/operations.md).

The shapes (``kbai_pk_``, ``whsec_``, ``enc1:``, ``Bearer``, ``access_token=``, URL passwords, Meta's ``EAA...``)
and the configured secrets (WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN, SECRET_KEY, ENCRYPTION_KEYS) are redacted
in the message, its arguments, the exception text and the extras. The end-to-end test runs real flows in real
processes (the Procfile's web line, the bootstrap commands, a process that logs a failure) and reads their output.
"""

import hashlib
import hmac
import io
import json
import logging
import secrets
import subprocess
import sys
import time

import pytest
import requests
from django.db import connection

from core.logging import ContextFilter, JsonFormatter, RedactFilter, redact
from tests.core.error_urls import LEAKS
from tests.core.logs_support import ROOT, base_env, json_lines, procfile_web
from tests.delivery_support import database_url_for

TOKEN = "kbai_pk_" + "Zq9" * 12


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        (f"token {TOKEN} used", "token kbai_pk_[REDACTED] used", TOKEN),
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer [REDACTED]", "Zq9"),
        ("authorization: bearer EAAGabc-def_123", "authorization: bearer [REDACTED]", "EAAGabc"),
        ("signed with whsec_abc+/DEF123== ok", "signed with whsec_[REDACTED] ok", "abc+/DEF"),
        ("stored enc1:gAAAAABk-x_y= there", "stored enc1:[REDACTED] there", "gAAAAABk"),
        ("GET /x?access_token=EAAB12&a=1", "GET /x?access_token=[REDACTED]&a=1", "EAAB12"),
        ("?hub.mode=subscribe&hub.verify_token=s3cr3t&x", "hub.verify_token=[REDACTED]&x", "s3cr3t"),
        ('{"access_token": "abc123", "n": 1}', '{"access_token": "[REDACTED]", "n": 1}', "abc123"),
        ("{'access_token': 'abc123'}", "{'access_token': '[REDACTED]'}", "abc123"),
        ('"{\\"access_token\\": \\"abc123\\"}"', '\\"access_token\\": \\"[REDACTED]\\"', "abc123"),
        ("create_channel --access-token tok456 --max-mps 80", "--access-token [REDACTED] --max-mps 80", "tok456"),
        ("app_secret=zzz999", "app_secret=[REDACTED]", "zzz999"),
        ("redis://:pw0rd@127.0.0.1:6379/0", "redis://:[REDACTED]@127.0.0.1:6379/0", "pw0rd"),
        ("postgres://app:pw0rd@db/x", "postgres://app:[REDACTED]@db/x", "pw0rd"),
        ("Graph token EAAGm0PZCZA7ZBwBAKxyz1234567890", "Graph token EAA[REDACTED]", "m0PZCZA7"),
    ],
)
def test_shapes_are_redacted(text, kept, gone):
    out = redact(text)
    assert kept in out and gone not in out, out


@pytest.mark.parametrize(
    "text",
    [
        "The token lacks the messages:bulk scope.",
        "secret rotation overlaps 24 h",
        "Invalid, revoked or expired token.",
        "broadcast 6746f0a1c3b2a1f0e9d8c7b6: claimed 10 posted 10",
        "GET /v1/messages/bulk?status=failed&limit=100 200",
    ],
)
def test_ordinary_text_is_kept(text):
    assert redact(text) == text


def test_configured_secrets_are_redacted_wherever_they_appear(settings):
    settings.WHATSAPP_APP_SECRET = "plain-app-secret-value"
    settings.WHATSAPP_VERIFY_TOKEN = "plain-verify-token"
    settings.ENCRYPTION_KEYS = ["a-fernet-key-value-here="]
    out = redact("sig of plain-app-secret-value, plain-verify-token and key a-fernet-key-value-here=")
    assert out == "sig of [REDACTED], [REDACTED] and key [REDACTED]"


def _json_record(emit) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = stream.getvalue()
    assert TOKEN not in text and "EAAGsecret" not in text, text
    return json_lines(text, where="handler")[0]


def test_arguments_exception_text_and_extras_are_redacted():
    def emit(logger):
        try:
            raise RuntimeError(f"Graph said no to Bearer EAAGsecretvalue1 for {TOKEN}")
        except RuntimeError:
            logger.exception(
                "call with %s and %r failed",
                TOKEN,
                {"access_token": "EAAGsecretvalue2"},
                extra={"headers": {"Authorization": "Bearer EAAGsecretvalue3"}, "tokens": [TOKEN], "n": 3},
            )

    record = _json_record(emit)
    assert record["message"] == "call with kbai_pk_[REDACTED] and {'access_token': '[REDACTED]'} failed"
    assert "RuntimeError: Graph said no to Bearer [REDACTED] for kbai_pk_[REDACTED]" in record["exception"]
    assert record["headers"] == {"Authorization": "Bearer [REDACTED]"}
    assert record["tokens"] == ["kbai_pk_[REDACTED]"] and record["n"] == 3


def test_an_object_extra_is_logged_as_its_redacted_text():
    class Thing:
        def __str__(self) -> str:
            return f"<Thing {TOKEN}>"

    record = _json_record(lambda logger: logger.info("x", extra={"thing": Thing()}))
    assert record["thing"] == "<Thing kbai_pk_[REDACTED]>"


# --- End to end ----------------------------------------------------------------------------------------------
APP_SECRET = "e2e-app-secret-" + secrets.token_hex(8)
VERIFY_TOKEN = "e2e-verify-" + secrets.token_hex(8)
ACCESS_TOKEN = "EAAG" + secrets.token_hex(20)

FAILING_SCRIPT = """
import logging, sys
import django
django.setup()
from django.test import Client, override_settings
from tests.core.error_urls import LEAKED_ACCESS_TOKEN, LEAKED_API_TOKEN

log = logging.getLogger("tests.redaction.script")
try:
    raise RuntimeError(f"refused access_token={LEAKED_ACCESS_TOKEN} for {LEAKED_API_TOKEN}")
except RuntimeError:
    log.exception("a failure mentioning %s", LEAKED_API_TOKEN)
log.warning("configured: %s %s", sys.argv[1], sys.argv[2], extra={"url": "redis://:pw0rdpw0rd@127.0.0.1:1/0"})
with override_settings(ROOT_URLCONF="tests.core.error_urls"):
    client = Client(raise_request_exception=False)
    assert client.get("/v1/test/boom-django").status_code == 500
    assert client.get("/v1/test/boom-drf").status_code == 500
"""


def _signed(body: bytes) -> str:
    return "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.slow
def test_no_secret_reaches_the_logs_of_real_flows(transactional_db, tmp_path):
    env = base_env(
        DATABASE_URL=database_url_for(connection.settings_dict["NAME"]),
        DEBUG="false",
        LOG_LEVEL="DEBUG",
        WHATSAPP_APP_SECRET=APP_SECRET,
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        WEBHOOKS_ALLOW_PRIVATE="true",
    )
    logs: dict[str, str] = {}

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        logs[f"manage {args[0]}"] = done.stderr
        return done.stdout.strip().splitlines()[-1]

    # the bootstrap commands: a channel with its access token, a token (printed on stdout, the one place it goes)
    channel_id = manage(
        "create_channel", "--org", "Redact Org", "--phone-number-id", "100000000000099",
        "--waba-id", "200000000000099", "--access-token", ACCESS_TOKEN, "--max-mps", "80",
    )  # fmt: skip
    token = manage("create_token", "--org", "Redact Org", "--scopes", "messages:bulk,webhooks:manage")
    assert token.startswith("kbai_pk_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM templates_registry_channel WHERE id = %s", [channel_id])
        (stored,) = cursor.fetchone()
    assert stored.startswith("enc1:")

    with procfile_web(env, tmp_path) as (base, web):
        auth = {"Authorization": f"Bearer {token}"}
        bad = "kbai_pk_" + secrets.token_urlsafe(32)
        assert requests.get(f"{base}/v1/messages/bulk", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        assert requests.get(f"{base}/v1/messages/bulk", headers={"Authorization": f"Basic {bad}"}).status_code == 401
        assert requests.get(f"{base}/v1/messages/bulk", headers=auth).status_code == 200
        assert requests.get(f"{base}/v1/messages/bulk?access_token={ACCESS_TOKEN}", headers=auth).status_code == 200
        # an event endpoint: its signing secret is in the 201 and nowhere else
        created = requests.post(f"{base}/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=auth)
        assert created.status_code == 201, created.text
        endpoint_secret = created.json()["secret"]
        assert endpoint_secret.startswith("whsec_")
        # Meta's handshake (the verify token is in the query) and webhooks signed with the app secret
        hub = f"{base}/v1/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=42&hub.verify_token="
        assert requests.get(hub + VERIFY_TOKEN).text == "42"
        assert requests.get(hub + "wrong-" + VERIFY_TOKEN).status_code == 403
        body = b'{"object": "whatsapp_business_account", "entry": []}'
        webhook = f"{base}/v1/webhooks/whatsapp"
        signed = requests.post(webhook, data=body, headers={"X-Hub-Signature-256": _signed(body)})
        assert signed.status_code == 200
        assert requests.post(webhook, data=body, headers={"X-Hub-Signature-256": "sha256=00"}).status_code == 403
        # a broadcast accepted on that channel
        bulk = {
            "template_name": "nope",
            "language": "es",
            "channel_id": channel_id,
            "recipients": [{"to": "+34612345678"}],
        }
        assert requests.post(f"{base}/v1/messages/bulk", json=bulk, headers=auth).status_code == 400
        time.sleep(0.5)
    logs["web stdout"], logs["web stderr"] = web.out(), web.err()

    # a process that logs failures whose messages carry secrets (its own and Django's request logging)
    for log_format in ("json", "text"):
        done = subprocess.run(
            [sys.executable, "-c", FAILING_SCRIPT, APP_SECRET, VERIFY_TOKEN],
            cwd=ROOT,
            env={**env, "LOG_FORMAT": log_format, "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        logs[f"script {log_format}"] = done.stderr

    forbidden = {
        "api token": token,
        "bad token": bad,
        "channel access token": ACCESS_TOKEN,
        "stored access token": stored,
        "endpoint secret": endpoint_secret,
        "app secret": APP_SECRET,
        "verify token": VERIFY_TOKEN,
        "redis password": "pw0rdpw0rd",
        **{f"leak {i}": leak for i, leak in enumerate(LEAKS)},
    }
    for where, text in logs.items():
        assert text.strip() or where.startswith("manage"), where
        for name, value in forbidden.items():
            assert value not in text, f"the {name} is in the {where} log"
            if len(value) >= 32:
                assert value[8:32] not in text, f"part of the {name} is in the {where} log"
        if where != "script text":
            json_lines(text, where=where)

    # the flows did log where the secrets would have been, redacted
    access = [json.loads(line) for line in logs["web stdout"].splitlines()]
    paths = {line["path"] for line in access}
    assert "/v1/messages/bulk?access_token=[REDACTED]" in paths
    assert "/v1/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=42&hub.verify_token=[REDACTED]" in paths
    script = json_lines(logs["script json"], where="script")
    failure = next(line for line in script if line["message"] == "a failure mentioning kbai_pk_[REDACTED]")
    assert "RuntimeError: refused access_token=[REDACTED] for kbai_pk_[REDACTED]" in failure["exception"]
    assert any(line["message"] == "configured: [REDACTED] [REDACTED]" for line in script)
    assert any(line["message"] == "Unhandled API error" and "boom-drf" in line["exception"] for line in script)
    assert any(line["message"].startswith("Internal Server Error: /v1/test/boom-django") for line in script)
    assert "Traceback" in logs["script text"] and "kbai_pk_[REDACTED]" in logs["script text"]
