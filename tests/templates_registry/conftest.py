"""A real HTTP server on 127.0.0.1 speaking the Graph API's message_templates, two pages."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

WABA_ID = "200000000000001"

PAGE_ONE = [
    {
        "id": "1111",
        "name": "welcome_v2",
        "language": "es",
        "status": "APPROVED",
        "category": "MARKETING",
        "parameter_format": "NAMED",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Hola {{nombre}}"},
            {
                "type": "BODY",
                "text": "Hola {{nombre}}, tu saldo es {{monto}}",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "nombre", "example": "Ana"},
                        {"param_name": "monto", "example": "$10"},
                    ]
                },
            },
            {"type": "FOOTER", "text": "Kbai"},
        ],
    },
    {
        "id": "2222",
        "name": "order_update",
        "language": "en_US",
        "status": "PENDING",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "components": [
            {"type": "BODY", "text": "Order {{1}} ships on {{2}}", "example": {"body_text": [["A1", "Monday"]]}},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.test/{{1}}"}]},
        ],
    },
]
PAGE_TWO = [
    {
        "id": "3333",
        "name": "promo_image",
        "language": "pt_BR",
        "status": "REJECTED",
        "category": "MARKETING",
        "components": [
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["h"]}},
            {"type": "BODY", "text": "Oferta para {{1}}"},
        ],
    }
]


class FakeGraph:
    """Records each request; serves page 1 with paging.next, then page 2 without it."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: tuple[int, dict] | None = None
        self.next_url_override: str | None = None
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                graph.requests.append(
                    {"path": parts.path, "query": query, "authorization": self.headers.get("Authorization")}
                )
                if graph.fail_with:
                    status, body = graph.fail_with
                elif parts.path != f"/v23.0/{WABA_ID}/message_templates":
                    status, body = 404, {"error": {"message": "Unknown path", "code": 100}}
                elif query.get("after") == ["CURSOR2"]:
                    status, body = 200, {"data": PAGE_TWO, "paging": {"cursors": {"before": "CURSOR2"}}}
                else:
                    next_url = graph.next_url_override or (
                        f"{graph.base_url}/{WABA_ID}/message_templates?fields=name&limit=2&after=CURSOR2"
                    )
                    status, body = (
                        200,
                        {
                            "data": PAGE_ONE,
                            "paging": {"cursors": {"before": "C1", "after": "CURSOR2"}, "next": next_url},
                        },
                    )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v23.0"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_graph(settings):
    with FakeGraph() as graph:
        settings.WHATSAPP_GRAPH_URL = graph.base_url
        yield graph
