"""Scenario (g) of bench_delivery.py: fairness in the test suite's conditions (docs/rules.md).

Four channels at max_mps 1000 with 5,000 recipients each (--g-recipients) on the worker's 4 processes, and
meanwhile one-recipient broadcasts on a fifth, idle channel, one a second, for as long as the busy channels run; in
--g-rounds rounds. (g0) is the same busy load without the small broadcasts: the busy channels' rate alone.
Printed: the first send's time after each 202 (p50, p95, max; the promise: p95 <= 1 s) and each busy channel's rate
(its sends over its first to last arrival at the sandbox), and their sum against (g0)'s (target >= 95 %).

Unlike (e), the small broadcasts all go to one channel, once a second: each comes while the pump that served the
one before may still hold the channel's place, or just gave it back.
"""

from __future__ import annotations

import time

from benchmarks.delivery_fixtures import cpu_seconds, loadavg, make_channel, number, wait_done
from benchmarks.figures import figure
from broadcasts.services import broadcast_create
from tokens.models import Organization

BUSY_CHANNELS = 4
BUSY_MPS = 1000
SMALL_MPS = 80


def _create(org: Organization, channel, count: int, base: int) -> tuple[str, float]:
    body = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [{"to": number(i, base), "variables": {"nombre": "Ana", "monto": str(i)}} for i in range(count)],
    }
    result = broadcast_create(organization=org, body=body)
    return result.body["broadcast_id"], time.time()


def _percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, max(0, int(round(share * len(values))) - 1))]


def scenario_fairness(
    sandbox, worker, org: Organization, n: int, *, recipients: int = 5000, rounds: int = 2, probes: bool = True
) -> float:
    """One scenario (g), or (g0) without probes; returns the busy channels' summed rate (sends/s)."""
    busy = [make_channel(org, n + i, BUSY_MPS)[0] for i in range(BUSY_CHANNELS)]
    idle = make_channel(org, n + BUSY_CHANNELS, SMALL_MPS)[0]
    latencies: list[float] = []
    stages: list[tuple[float, float]] = []
    rates: list[list[float]] = []
    cpu0 = cpu_seconds(worker.pids())
    total = 0
    for round_ in range(rounds):
        sandbox.reset()
        base = 1_000_000 + round_ * 100_000
        ids = [_create(org, channel, recipients, base + i * recipients)[0] for i, channel in enumerate(busy)]
        tried: list[tuple[str, float]] = []
        # The first one ~0.5 s after the busy channels start (their pumps are up), then one a second while they run.
        time.sleep(0.5)
        i = 0
        while probes and (i == 0 or _running(ids[:BUSY_CHANNELS])):
            broadcast_id, at = _create(org, idle, 1, 900_000 + round_ * 1000 + i)
            tried.append((number(0, 900_000 + round_ * 1000 + i), at))
            ids.append(broadcast_id)
            i += 1
            time.sleep(1.0)
        wait_done(ids, timeout=180)
        requests = sandbox.requests()
        total += len(requests)
        first: dict[str, float] = {}
        for r in requests:
            if r["phone_number_id"] == idle.phone_number_id:
                to = "+" + r["to"].lstrip("+")
                first[to] = min(first.get(to, r["received_at"]), r["received_at"])
        latencies += [(first[to] - at) * 1000 if to in first else float("inf") for to, at in tried]
        stages += _stages(dict(zip(ids[BUSY_CHANNELS:], [first.get(to) for to, _ in tried], strict=True)))
        round_rates = []
        for channel in busy:
            times = sorted(r["received_at"] for r in requests if r["phone_number_id"] == channel.phone_number_id)
            round_rates.append(len(times) / (times[-1] - times[0]))
        rates.append(round_rates)
    cpu = cpu_seconds(worker.pids()) - cpu0
    summed = sum(sum(r) for r in rates) / len(rates)
    name = "g" if probes else "g0"
    line = (
        f"({name}) {BUSY_CHANNELS} channels at {BUSY_MPS} x {recipients} recipients"
        + (" + one-recipient broadcasts on a fifth idle channel, one a second" if probes else " alone")
        + f", {rounds} rounds: busy channels' rates {[[round(x) for x in r] for r in rates]} /s, "
        f"{summed:,.0f}/s in all"
    )
    if probes:
        latencies.sort()
        line += (
            f"; first send after the 202 p50 {_percentile(latencies, 0.5):.0f} ms, "
            f"p95 {_percentile(latencies, 0.95):.0f} ms, max {latencies[-1]:.0f} ms over {len(latencies)} "
            "(target p95 <= 1000 ms)"
        )
    print(f"{line}; CPU {cpu * 1000 / max(1, total):.3f} ms/send in workers; load {loadavg()}", flush=True)
    figure(f"delivery ({name}) busy channels sends/s", summed, "/s", better="higher")
    figure(f"delivery ({name}) worker CPU per send", cpu * 1000 / max(1, total), "ms")
    if probes:
        print(f"    ({name}) latencies ms: {[round(x) for x in latencies]}", flush=True)
        started = sorted(a for a, _ in stages)
        posted = sorted(b for _, b in stages)
        print(
            f"    ({name}) where it went, p50 / p95: 202 to started (dispatch or a host) "
            f"{_percentile(started, 0.5):.0f} / {_percentile(started, 0.95):.0f} ms, started to posted "
            f"{_percentile(posted, 0.5):.0f} / {_percentile(posted, 0.95):.0f} ms",
            flush=True,
        )
        figure(f"delivery ({name}) first send p50", _percentile(latencies, 0.5), "ms")
        figure(f"delivery ({name}) first send p95", _percentile(latencies, 0.95), "ms")
    return summed


def _running(ids: list[str]) -> bool:
    from broadcasts.models import Broadcast

    return Broadcast.objects.filter(id__in=ids).exclude(status__in=["COMPLETED", "FAILED", "CANCELLED"]).exists()


def _stages(arrivals: dict[str, float | None]) -> list[tuple[float, float]]:
    """Per small broadcast (id: its send's arrival at the sandbox, epoch seconds): (its 202 to its start, its start
    to that arrival), in ms (one machine's clock)."""
    from broadcasts.models import Broadcast

    out = []
    for broadcast_id, created, started in Broadcast.objects.filter(id__in=list(arrivals)).values_list(
        "id", "created_at", "started_at"
    ):
        arrived = arrivals[broadcast_id]
        if started is not None and arrived is not None:
            out.append(((started - created).total_seconds() * 1000, (arrived - started.timestamp()) * 1000))
    return out
