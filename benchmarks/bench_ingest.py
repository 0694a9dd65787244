"""Ingest benchmark: POST /v1/messages/bulk with 5000 new numbers, against a naive baseline.

Run with ``make bench-ingest`` (throwaway PostgreSQL + Redis). It migrates, creates an
organization / channel / template / token, starts gunicorn (1 sync worker) on loopback, and
over real HTTP posts realistic 5000-recipient bodies (numbers of 10 countries, never repeated
between requests, 2 variables, ~200 bytes of meta_data each) to the service and to a naive
implementation (nested DRF serializer + bulk_create, benchmarks/naive_ingest.py) in the same
run; then times GET of a 5000-recipient broadcast and reads the web worker's RSS from /proc.
With a rate card loaded (so every POST also prices its broadcast), it also times 5000-recipient dry runs
(``dry_run: true``: validated and priced, nothing stored), and the same POST with a ``send_window`` (each
recipient's time zone resolved at ingest, docs/rules.md) and the GET of such a broadcast (``waiting.send_window``).
"""

import os
import random
import statistics
import sys
import time
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.ingest_settings"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from benchmarks.figures import figure  # noqa: E402
from broadcasts.models import Broadcast  # noqa: E402
from broadcasts.phones import phone_to_e164  # noqa: E402
from broadcasts.pricing import rate_card_load  # noqa: E402
from templates_registry.models import Channel, Template  # noqa: E402
from tests.delivery_support import child_pids  # noqa: E402
from tests.gunicorn_process import gunicorn  # noqa: E402
from tokens.models import Organization  # noqa: E402
from tokens.services import token_create  # noqa: E402

RECIPIENTS = 5000
FAST_RUNS = int(os.environ.get("BENCH_FAST_RUNS", "20"))
NAIVE_RUNS = int(os.environ.get("BENCH_NAIVE_RUNS", "6"))
STATUS_RUNS = 100
DRY_RUNS = int(os.environ.get("BENCH_DRY_RUNS", "10"))
WINDOW_RUNS = int(os.environ.get("BENCH_WINDOW_RUNS", str(FAST_RUNS)))
SEND_WINDOW = {"start": "09:00", "end": "21:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
RATE_CARD = """country,category,price,currency
ES,MARKETING,0.0615,USD
MX,MARKETING,0.0305,USD
US,MARKETING,0.0250,USD
IN,MARKETING,0.0107,USD
BR,MARKETING,0.0625,USD
*,MARKETING,0.0600,USD
*,UTILITY,0.0100,USD
"""
# Mobile ranges of 11 countries: prefix after which any digits of the given count form a valid number.
RANGES = [
    ("+346", 8),  # Spain
    ("+5255", 8),  # Mexico City
    ("+1415", 7),  # US
    ("+447", 9),  # UK
    ("+4915", 9),  # Germany
    ("+336", 8),  # France
    ("+393", 9),  # Italy
    ("+57300", 7),  # Colombia
    ("+54911", 8),  # Argentina
    ("+5511", 9),  # Brazil, Sao Paulo mobile
    ("+919", 9),  # India
]


def numbers(count: int, seed: int = 1) -> list[str]:
    """``count`` distinct valid numbers, spread over the countries above."""
    rng = random.Random(seed)
    ranges = RANGES
    out: dict[str, None] = {}
    while len(out) < count:
        prefix, digits = ranges[len(out) % len(ranges)]
        candidate = prefix + "".join(rng.choice("0123456789") for _ in range(digits))
        e164 = phone_to_e164(candidate)
        if e164 is not None:
            out[e164] = None
    return list(out)


def body(channel_id: str, pool: list[str], offset: int, campaign: str, send_window: dict | None = None) -> bytes:
    recipients = [
        {
            "to": pool[offset + i],
            "variables": {"nombre": f"Cliente {offset + i}", "monto": f"{(offset + i) % 997}.50"},
            "meta_data": {
                "customer_id": f"cus_{offset + i:012d}",
                "segment": "black-friday-2026",
                "source": "crm-export",
                "notes": "x" * 110,
            },
        }
        for i in range(RECIPIENTS)
    ]
    request = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel_id,
        "campaign_name": campaign,
        "recipients": recipients,
    }
    if send_window is not None:
        request["send_window"] = send_window
    return orjson.dumps(request)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_posts(session, url, headers, bodies) -> list[float]:
    times = []
    for raw in bodies:
        start = time.perf_counter()
        response = session.post(url, data=raw, headers=headers, timeout=120)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 202, response.text[:500]
    return times


def main() -> None:
    call_command("migrate", verbosity=0)
    org, _ = Organization.objects.get_or_create(name="Bench")
    channel, _ = Channel.objects.get_or_create(
        phone_number_id="100000000000777",
        defaults={"organization": org, "waba_id": "200000000000777", "access_token": "bench"},
    )
    Template.objects.get_or_create(
        waba_id=channel.waba_id,
        name="welcome_v2",
        language="es",
        defaults={
            "components": [{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}],
            "body_variables": ["nombre", "monto"],
        },
    )
    token = token_create(organization=org, scopes=["messages:bulk"]).secret
    rate_card_load(text=RATE_CARD)

    total_posts = 2 + FAST_RUNS + 1 + NAIVE_RUNS
    pool = numbers((total_posts + WINDOW_RUNS) * RECIPIENTS)
    bodies = [body(channel.id, pool, i * RECIPIENTS, f"bench {i}") for i in range(total_posts)]
    window_bodies = [
        body(channel.id, pool, (total_posts + i) * RECIPIENTS, f"bench window {i}", SEND_WINDOW)
        for i in range(WINDOW_RUNS)
    ]
    print(f"body size: {len(bodies[0]) / 1e6:.2f} MB, {RECIPIENTS} recipients, {len(pool)} distinct numbers")

    with gunicorn(env={"DJANGO_SETTINGS_MODULE": "benchmarks.ingest_settings"}, workers=1) as (base, server):
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = f"{base}/v1/messages/bulk"

        timed_posts(session, url, headers, bodies[:2])  # warm-up: imports, metadata, connections
        # Alternating, so both measures see the same table sizes and the same moments of a shared machine.
        fast, windowed = [], []
        plain_bodies = bodies[2 : 2 + FAST_RUNS]
        for i in range(max(len(plain_bodies), len(window_bodies))):
            fast += timed_posts(session, url, headers, plain_bodies[i : i + 1])
            windowed += timed_posts(session, url, headers, window_bodies[i : i + 1])
        # The newest broadcast with a window (with fewer window runs, the last POST was one without).
        window_id = Broadcast.objects.filter(send_window__isnull=False).latest("created_at").id
        window_status_times = []
        for _ in range(STATUS_RUNS):
            start = time.perf_counter()
            response = session.get(f"{url}/{window_id}", headers=headers, timeout=10)
            window_status_times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and response.json()["send_window"] == SEND_WINDOW
        naive_bodies = bodies[2 + FAST_RUNS :]
        timed_posts(session, f"{base}/bench/naive/messages/bulk", headers, naive_bodies[:1])
        naive = timed_posts(session, f"{base}/bench/naive/messages/bulk", headers, naive_bodies[1:])

        broadcast_id = session.get(url, headers=headers, params={"limit": 1}, timeout=10).json()["data"][0][
            "broadcast_id"
        ]
        status_times = []
        for _ in range(STATUS_RUNS):
            start = time.perf_counter()
            response = session.get(f"{url}/{broadcast_id}", headers=headers, timeout=10)
            status_times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and response.json()["total_recipients"] == RECIPIENTS
        dry = orjson.loads(bodies[0])
        dry["dry_run"] = True
        dry_body = orjson.dumps(dry)
        dry_times = []
        for _ in range(DRY_RUNS):
            start = time.perf_counter()
            response = session.post(url, data=dry_body, headers=headers, timeout=30)
            dry_times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200 and response.json()["estimate"] is not None, response.text[:500]
        workers = child_pids(server.pid)
        rss = {pid: rss_kib(pid) for pid in workers}

    fast_p50, naive_p50 = statistics.median(fast), statistics.median(naive)
    worker_rss_mb = max(rss.values()) / 1024 if rss else float("nan")
    print(f"POST 5000 new numbers  (service, {len(fast)} runs): p50 {fast_p50:6.1f} ms  p95 {pct(fast, 0.95):6.1f} ms")
    print(
        f"POST 5000 new numbers  (naive,   {len(naive)} runs): p50 {naive_p50:6.1f} ms  p95 {pct(naive, 0.95):6.1f} ms"
    )
    print(f"speed-up (naive p50 / service p50): {naive_p50 / fast_p50:.1f}x (target >= 8x)")
    window_p50 = statistics.median(windowed) if windowed else float("nan")
    print(
        f"POST 5000 with send_window ({len(windowed)} runs): p50 {window_p50:6.1f} ms  "
        f"p95 {pct(windowed, 0.95) if windowed else float('nan'):6.1f} ms  (+{window_p50 - fast_p50:.1f} ms: zones, "
        f"{(window_p50 / fast_p50 - 1) * 100:+.1f} %; target within 5 %)"
    )
    if window_status_times:
        print(
            f"GET status, 5000 sends with a window ({STATUS_RUNS} runs): "
            f"p50 {statistics.median(window_status_times):5.1f} ms  p95 {pct(window_status_times, 0.95):5.1f} ms"
        )
    print(
        f"GET status, 5000 sends ({STATUS_RUNS} runs): p50 {statistics.median(status_times):5.1f} ms  "
        f"p95 {pct(status_times, 0.95):5.1f} ms"
    )
    print(
        f"POST dry_run, 5000 recipients ({len(dry_times)} runs): p50 {statistics.median(dry_times):6.1f} ms  "
        f"p95 {pct(dry_times, 0.95):6.1f} ms (target < 2000 ms)"
    )
    print(f"web worker RSS after the run: {worker_rss_mb:.0f} MB (gunicorn worker pid(s) {list(rss)})")
    figure("ingest POST 5000 p50", fast_p50, "ms")
    figure("ingest POST 5000 p95", pct(fast, 0.95), "ms")
    figure("ingest naive POST 5000 p50", naive_p50, "ms")
    figure("ingest speed-up over naive", naive_p50 / fast_p50, "x", better="higher")
    if windowed:
        figure("ingest POST 5000 with send_window p50", window_p50, "ms")
        figure("ingest POST with send_window over without", window_p50 / fast_p50, "x")
    if window_status_times:
        figure("ingest GET status with a window p50", statistics.median(window_status_times), "ms")
    figure("ingest GET status p50", statistics.median(status_times), "ms")
    figure("ingest dry run 5000 p50", statistics.median(dry_times), "ms")
    figure("ingest web worker RSS", worker_rss_mb, "MB")
    ok = (
        fast_p50 <= 150
        and (not windowed or window_p50 <= 150 and window_p50 <= fast_p50 * 1.05)
        and naive_p50 / fast_p50 >= 8
        and worker_rss_mb < 150
        and statistics.median(status_times) <= 20
        and max(dry_times) < 2000
    )
    print(
        "targets (p50 <= 150 ms with and without a window, the window within 5 %, >= 8x naive, RSS < 150 MB, "
        "status p50 <= 20 ms, dry run < 2 s):",
        "met" if ok else "NOT met",
    )


if __name__ == "__main__":
    main()
