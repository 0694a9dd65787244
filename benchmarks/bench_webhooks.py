"""Benchmark: Meta status webhooks of 1,000 statuses, answered by gunicorn over real HTTP.

Run with `make bench-webhooks` (starts throwaway PostgreSQL + Redis). For each round it creates
a broadcast of 1,000 SENT sends, then POSTs one signed body with 1,000 "delivered" statuses, one
with 1,000 "read" statuses and the "read" body again (a redelivery). It does so twice: with no
customer endpoint, then with one (so 1,000 events and deliveries are written per body).
Prints p50/p95 latency per kind of body and the number of SQL queries one body costs.
Each status carries Meta's ``pricing`` (billable, marketing) and a rate card is loaded, so the "delivered" body also
bills its 1,000 sends (docs/rules.md); ``BENCH_PRICING=0`` leaves pricing out (the figures before billing existed).
"""

import hashlib
import hmac
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
APP_SECRET = "bench-app-secret"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["WHATSAPP_APP_SECRET"] = APP_SECRET
os.environ["WEBHOOKS_ALLOW_PRIVATE"] = "true"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "8"))
SENDS = 1000
PRICING = os.environ.get("BENCH_PRICING", "1") != "0"

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from benchmarks.figures import figure  # noqa: E402
from broadcasts.models import Broadcast, Send, SendStatus  # noqa: E402
from events.endpoints import endpoint_create  # noqa: E402
from events.models import Event  # noqa: E402
from templates_registry.models import Channel, Template  # noqa: E402
from tests.events.helpers import broadcast_with_sends  # noqa: E402
from tests.gunicorn_process import gunicorn  # noqa: E402
from tokens.models import Organization  # noqa: E402


def signed(payload: dict) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def envelope(broadcast: Broadcast, status: str) -> dict:
    """Meta's body as our sends get it: from the broadcast's channel, each status with its send's callback data."""
    now = int(time.time())
    statuses = [
        {
            "id": f"wamid.{broadcast.id}.{i}",
            "status": status,
            "timestamp": str(now),
            "recipient_id": "34600000000",
            "biz_opaque_callback_data": f"{broadcast.id}:{i}",
        }
        for i in range(SENDS)
    ]
    if PRICING:
        for entry in statuses:
            entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    metadata = {"phone_number_id": broadcast.channel.phone_number_id}
    value = {"messaging_product": "whatsapp", "metadata": metadata, "statuses": statuses}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "w", "changes": [{"field": "messages", "value": value}]}],
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    call_command("migrate", verbosity=0)
    org, _ = Organization.objects.get_or_create(name="bench-webhooks")
    channel, _ = Channel.objects.get_or_create(
        phone_number_id="190000000000001",
        defaults={"organization": org, "waba_id": "290000000000001", "access_token": "x"},
    )
    template, _ = Template.objects.get_or_create(waba_id=channel.waba_id, name="bench", language="es")
    if PRICING:
        from broadcasts.pricing import rate_card_load

        rate_card_load(text="country,category,price,currency\nES,MARKETING,0.0615,USD\n*,MARKETING,0.06,USD\n")

    # Queries one body costs, measured in-process through the same view.
    client = Client()
    counts = {}
    for label in ("no endpoint", "one endpoint"):
        if label == "one endpoint":
            endpoint_create(organization=org, url="http://127.0.0.1:9/bench")
        broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=SENDS)
        for status in ("delivered", "read"):
            body, headers = signed(envelope(broadcast, status))
            with CaptureQueriesContext(connection) as ctx:
                response = client.post(
                    "/v1/webhooks/whatsapp",
                    data=body,
                    content_type="application/json",
                    HTTP_X_HUB_SIGNATURE_256=headers["X-Hub-Signature-256"],
                )
            assert response.status_code == 200, response.content
            counts[(label, status)] = len(ctx.captured_queries)
    from events.models import WebhookEndpoint

    WebhookEndpoint.objects.all().delete()
    from django.core.cache import cache

    cache.clear()

    # The naive peer is mounted beside the service's URLs (benchmarks/ingest_urls.py), in the same gunicorn.
    with gunicorn(workers=2, env={"DJANGO_SETTINGS_MODULE": "benchmarks.ingest_settings"}) as (base, _server):
        session = requests.Session()
        results: dict[tuple[str, str], list[float]] = {}
        for label in ("no endpoint", "one endpoint"):
            if label == "one endpoint":
                endpoint_create(organization=org, url="http://127.0.0.1:9/bench")
            for round_ in range(ROUNDS + 1):  # round 0 warms both workers up and is not counted
                broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=SENDS)
                for kind, status in (("delivered", "delivered"), ("read", "read"), ("read again", "read")):
                    body, headers = signed(envelope(broadcast, status))
                    started = time.perf_counter()
                    response = session.post(f"{base}/v1/webhooks/whatsapp", data=body, headers=headers, timeout=30)
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    assert response.status_code == 200, response.text
                    if round_:
                        results.setdefault((label, kind), []).append(elapsed_ms)
                assert Send.objects.filter(broadcast=broadcast, status=SendStatus.READ).count() == SENDS
        peer = naive_peer(session=session, base=base, org=org, channel=channel, template=template)

    print(
        f"bench_webhooks: {ROUNDS} rounds x {SENDS} statuses per body, gunicorn 2 workers, PostgreSQL + Redis, "
        f"pricing {'on (billed on delivered)' if PRICING else 'off'}"
    )
    for (label, kind), values in results.items():
        print(
            f"  {label:12s} {kind:10s}: p50 {statistics.median(values):6.1f} ms  p95 {pct(values, 0.95):6.1f} ms"
            f"  ({len(values)} bodies)"
        )
        figure(f"webhook {label} {kind} p50", statistics.median(values), "ms")
    for (label, status), n in counts.items():
        print(f"  queries per 1,000-status '{status}' body, {label}: {n}")
        figure(f"webhook queries {label} {status}", n, "queries")
    service, naive = peer
    ratio = statistics.median(naive) / statistics.median(service)
    print(
        f"  naive peer, 'delivered' with one endpoint, alternating: p50 {statistics.median(naive):.1f} ms"
        f" against {statistics.median(service):.1f} ms: the service is {ratio:.1f}x faster (target >= 15x)"
    )
    figure("webhook naive delivered p50", statistics.median(naive), "ms")
    figure("webhook speed-up over naive", ratio, "x", better="higher")
    print(f"  events recorded with one endpoint: {Event.objects.filter(organization=org).count()}")
    outbound_throughput(org)


def naive_peer(*, session, base: str, org, channel, template) -> tuple[list[float], list[float]]:
    """The 'delivered' body with billing and one endpoint, posted alternately to the service and the naive peer
    (benchmarks/naive_webhook.py), each on fresh sends: (service times, naive times) in ms."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(ROUNDS + 1):
        for side, path in enumerate(("/v1/webhooks/whatsapp", "/bench/naive/webhooks/whatsapp")):
            broadcast = broadcast_with_sends(org=org, channel=channel, template=template, count=SENDS)
            body, headers = signed(envelope(broadcast, "delivered"))
            started = time.perf_counter()
            response = session.post(f"{base}{path}", data=body, headers=headers, timeout=60)
            elapsed_ms = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, response.text[:500]
            assert Send.objects.filter(broadcast=broadcast, status=SendStatus.DELIVERED).count() == SENDS
            if round_:
                times[side].append(elapsed_ms)
    return times


def outbound_throughput(org: Organization) -> None:
    """Outbound delivery: one worker posting 2,000 pending events to a local receiver (real HTTP, signed)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from events.models import DeliveryStatus, EventDelivery, WebhookEndpoint
    from events.outbox import endpoint_deliver_due

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = WebhookEndpoint.objects.filter(organization=org, is_active=True).first()
    WebhookEndpoint.objects.filter(id=endpoint.id).update(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    EventDelivery.objects.filter(endpoint=endpoint).exclude(
        id__in=EventDelivery.objects.filter(endpoint=endpoint).order_by("id").values("id")[:2000]
    ).delete()
    pending = EventDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.PENDING).count()
    started = time.perf_counter()
    delivered = 0
    while True:
        stats = endpoint_deliver_due(endpoint_id=endpoint.id)
        delivered += stats["delivered"]
        if not stats["delivered"] or stats["failed_attempts"]:
            break
    elapsed = time.perf_counter() - started
    server.shutdown()
    rate = delivered / elapsed
    print(f"  outbound: {delivered} of {pending} events delivered in {elapsed:.1f} s by one worker: {rate:.0f}/s")
    figure("outbound events per second", rate, "/s", better="higher")


if __name__ == "__main__":
    main()
