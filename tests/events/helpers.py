"""Test helpers shared by the webhook tests: broadcasts with SENT sends, Meta envelopes, and a
real HTTP receiver on 127.0.0.1 that records what it is sent."""

import hashlib
import hmac
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import orjson

from broadcasts.models import Broadcast, BroadcastStatus, Send, SendStatus
from tests.http_server import ReceiverServer


def broadcast_with_sends(*, org, channel, template, count: int, status: str = SendStatus.SENT) -> Broadcast:
    broadcast = Broadcast.objects.create(
        organization=org,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name="test",
        status=BroadcastStatus.IN_PROGRESS,
        total_recipients=count,
        **{str(status).lower(): count},  # the kept counts, as if the sends had got there
    )
    Send.objects.bulk_create(
        Send(
            broadcast=broadcast,
            index=i,
            to=f"+3460000{i:04d}",
            variables={"nombre": "Ana", "monto": "10"},
            meta_data={"crm_id": i},
            status=status,
            message_id=f"wamid.{broadcast.id}.{i}" if status != SendStatus.PENDING else None,
        )
        for i in range(count)
    )
    return broadcast


def status_entry(wamid: str, status: str, timestamp: int = 1_790_000_000, **extra) -> dict:
    return {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": "34600000000", **extra}


def parsed(entries, *, phone_number_id: str = "100000000000001") -> list:
    """Meta's status entries as the webhook hands them to broadcasts: read by whatsapp.inbound (malformed ones
    dropped), from the change's metadata.phone_number_id (by default the `channel` fixture's number)."""
    from whatsapp.inbound.statuses import status_update_parse

    return [
        update
        for entry in entries
        if (update := status_update_parse(entry, phone_number_id=phone_number_id)) is not None
    ]


def meta_envelope(*, statuses=None, field: str = "messages", value: dict | None = None, waba_id: str = "2000") -> dict:
    if value is None:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": "100000000000001"},
            "statuses": statuses or [],
        }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"field": field, "value": value}]}],
    }


def meta_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Receiver:
    """An HTTP server thread on 127.0.0.1 answering ``status`` (settable) and recording requests."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        self.delay = 0.0  # seconds to wait before answering
        self.before_answer = None  # called (once per request) before the answer goes
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.before_answer is not None:
                    receiver.before_answer()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ReceiverServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [orjson.loads(r["body"]) for r in self.requests]


class Tarpit:
    """A socket server on 127.0.0.1 that accepts every connection, reads what it is sent and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._held.append(conn)  # kept open and never written to

    def __enter__(self) -> "Tarpit":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        for conn in self._held:
            conn.close()
        self.sock.close()
