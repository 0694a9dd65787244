"""Helpers for the sandbox tests: a well-formed send, posting it, reading templates, a webhook receiver."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import requests

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


def templates_page(sandbox, url=None, **params):
    response = requests.get(
        url or f"{sandbox.graph_url}/200000000000001/message_templates",
        params=params,
        headers={"Authorization": "Bearer EAAG-token"},
        timeout=5,
    )
    assert response.status_code == 200, response.text
    return response.json()


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
                    found.extend(change["value"].get("statuses", []))
        return found

    def changes(self, field: str) -> list[tuple[dict, dict]]:
        """(the entry, the change's value) of every change of `field` received, in order."""
        with self.lock:
            posts = list(self.posts)
        found = []
        for _, body in posts:
            for entry in orjson.loads(body)["entry"]:
                found.extend((entry, c["value"]) for c in entry["changes"] if c["field"] == field)
        return found

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.statuses()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.statuses()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
