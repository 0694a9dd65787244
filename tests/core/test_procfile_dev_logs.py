"""`make run`'s web line (Procfile.dev) logs requests redacted, as production's does: Meta's verification handshake
carries the verify token in its query string."""

import secrets

import pytest
import requests
from django.db import connection

from sandbox.process import free_port
from tests.core.logs_support import ROOT, Line, base_env
from tests.core.test_procfile import procfile_commands
from tests.delivery_support import database_url_for, wait_for


@pytest.mark.slow
def test_the_demo_web_never_logs_the_verify_token(transactional_db, tmp_path):
    verify_token = "demo-verify-" + secrets.token_hex(8)
    wrong_token = "guess-" + secrets.token_hex(8)  # not a configured secret: only the query's shape can redact it
    port = free_port()
    env = base_env(
        DATABASE_URL=database_url_for(connection.settings_dict["NAME"]),
        WHATSAPP_VERIFY_TOKEN=verify_token,
        WEB_PORT=str(port),
    )
    web = Line("web", env=env, logs=tmp_path, command=procfile_commands(ROOT / "Procfile.dev")["web"])
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert web.alive(), web.err()[-3000:]
            try:
                return requests.get(f"{base}/v1/health", timeout=2).status_code in (200, 503)
            except requests.RequestException:  # refused while it binds, slow while its worker imports
                return False

        wait_for(answers, timeout=60, message="the demo web to answer")
        hub = f"{base}/v1/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=4242&hub.verify_token="
        assert requests.get(hub + verify_token, timeout=5).text == "4242"
        assert requests.get(hub + wrong_token, timeout=5).status_code == 403

        def access_lines() -> list[str]:
            text = web.out() + web.err()
            return [line for line in text.splitlines() if "gunicorn.access" in line and "challenge=4242" in line]

        wait_for(lambda: len(access_lines()) >= 2, timeout=10, message="both handshakes' access lines")
    finally:
        web.stop()
    logged = web.out() + web.err()
    assert "hub.verify_token=[REDACTED]" in logged
    assert verify_token not in logged and wrong_token not in logged
