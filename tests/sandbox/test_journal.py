"""sandbox/journal.py: with SANDBOX_JOURNAL every POST is on disk as it arrives, and survives a kill -9."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

from sandbox.process import start_sandbox


def _post(graph_url: str, body: dict) -> int:
    request = urllib.request.Request(
        f"{graph_url}/100000000000001/messages",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _send(to: str, callback: str) -> dict:
    return {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "template",
        "template": {"name": "welcome_v2", "language": {"code": "es"}, "components": []},
        "biz_opaque_callback_data": callback,
    }


def test_every_post_is_journaled_and_kept_across_a_kill_9(tmp_path, monkeypatch):
    path = tmp_path / "journal.jsonl"
    monkeypatch.setenv("SANDBOX_JOURNAL", str(path))
    sandbox = start_sandbox()
    try:
        sandbox.script("+573001112233", ["http500"])
        assert _post(sandbox.graph_url, _send("+573001112233", "b1:0")) == 500
        assert _post(sandbox.graph_url, _send("+573001112234", "b1:1")) == 200
        os.kill(sandbox.process.pid, signal.SIGKILL)
        sandbox.process.wait(timeout=10)
    finally:
        sandbox.stop()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line[1], line[2], line[3], line[5], line[6]) for line in lines] == [
        ("100000000000001", "573001112233", "http500", "welcome_v2", "b1:0"),
        ("100000000000001", "573001112234", "ok", "welcome_v2", "b1:1"),
    ]
    assert lines[0][0] <= lines[1][0]


def test_no_journal_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SANDBOX_JOURNAL", raising=False)
    monkeypatch.chdir(tmp_path)
    sandbox = start_sandbox()
    try:
        assert _post(sandbox.graph_url, _send("+573001112233", "b1:0")) == 200
    finally:
        sandbox.stop()
    assert list(tmp_path.iterdir()) == []
