"""Scenario (f) of bench_delivery.py: category lanes (docs/rules.md).

One channel at its cap (--f-cap, default 250) runs a 5,000-recipient MARKETING broadcast; once it is at its pace,
one-recipient AUTHENTICATION broadcasts on the same channel, one a second (--f-tries, default 15). Printed: the
first send's time after each 202 (p50, p95, max; target p95 <= 1 s), the channel's busiest second at the sandbox
(target <= its cap) and the MARKETING broadcast's rate, overall and while the codes went.
"""

from __future__ import annotations

import time

from django.conf import settings

from benchmarks.delivery_fixtures import cpu_seconds, loadavg, make_channel, number, wait_done
from benchmarks.figures import figure
from broadcasts.services import broadcast_create
from templates_registry.models import Template
from tokens.models import Organization


def _create(org: Organization, channel, template_name: str, count: int, base: int) -> tuple[str, float]:
    body = {
        "template_name": template_name,
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": number(i, base), "variables": {"nombre": "Ana", "monto": str(i)}} for i in range(count)],
    }
    result = broadcast_create(organization=org, body=body)
    return result.body["broadcast_id"], time.time()


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(round(share * len(values))) - 1)]


def scenario_lanes(sandbox, worker, sandbox_pid, org: Organization, n: int, cap: int = 250, tries: int = 15) -> None:
    channel, _ = make_channel(org, n, cap)
    Template.objects.create(
        waba_id=channel.waba_id,
        name="login_code",
        language="es",
        status=Template.Status.APPROVED,
        category="AUTHENTICATION",
        parameter_format=Template.ParameterFormat.NAMED,
        components=[{"type": "BODY", "text": "Hola {{nombre}}, tu codigo es {{monto}}"}],
        body_variables=["nombre", "monto"],
    )
    sandbox.reset()
    cpu0 = cpu_seconds(worker.pids())
    promotion, _ = _create(org, channel, "welcome_v2", 5000, 0)
    # Let the promotion reach its pace, then one code a second while it runs.
    time.sleep(3.0)
    probes: list[tuple[str, float]] = []
    ids = [promotion]
    window_start = time.time()
    for i in range(tries):
        broadcast_id, at = _create(org, channel, "login_code", 1, 700_000 + i)
        probes.append((number(0, 700_000 + i), at))
        ids.append(broadcast_id)
        time.sleep(1.0)
    window_end = time.time()
    wait_done(ids, timeout=120)
    cpu = cpu_seconds(worker.pids()) - cpu0
    requests = sandbox.requests()
    first: dict[str, float] = {}
    for r in requests:
        to = "+" + r["to"].lstrip("+")
        first[to] = min(first.get(to, r["received_at"]), r["received_at"])
    latencies = sorted((first[to] - at) * 1000 if to in first else float("inf") for to, at in probes)
    codes = {to for to, _ in probes}
    promo = sorted(r["received_at"] for r in requests if "+" + r["to"].lstrip("+") not in codes)
    overall = len(promo) / (promo[-1] - promo[0])
    during = sum(1 for t in promo if window_start <= t < window_end) / (window_end - window_start)
    stats = sandbox.stats()["phone_numbers"].get(channel.phone_number_id, {})
    paced = cap * settings.DELIVERY_RATE_HEADROOM
    print(
        f"(f) lanes: one channel at {cap} with a 5,000-recipient MARKETING broadcast + {tries} one-recipient "
        f"AUTHENTICATION broadcasts on it, one a second: first send after the 202 "
        f"p50 {_percentile(latencies, 0.5):.0f} ms, p95 {_percentile(latencies, 0.95):.0f} ms, "
        f"max {latencies[-1]:.0f} ms (target p95 <= 1000 ms); "
        f"busiest second at the sandbox {stats.get('max_in_one_second')} (cap {cap}); MARKETING at {overall:.1f}/s "
        f"overall, {during:.1f}/s while the codes went (paced {paced:.1f}/s); "
        f"CPU {cpu * 1000 / len(requests):.3f} ms/send in workers; load {loadavg()}",
        flush=True,
    )
    print(f"    (f) latencies ms: {[round(x) for x in latencies]}", flush=True)
    figure("delivery (f) first send p50", _percentile(latencies, 0.5), "ms")
    figure("delivery (f) first send p95", _percentile(latencies, 0.95), "ms")
    figure("delivery (f) busiest second", stats.get("max_in_one_second") or 0, "sends")
    figure("delivery (f) MARKETING share of paced while the codes went", during / paced * 100, "%", better="higher")
    figure("delivery (f) worker CPU per send", cpu * 1000 / len(requests), "ms")
