"""Delivery benchmark: real Celery workers, PostgreSQL, Redis and the sandbox Graph API 50 ms away.

Run with `make bench-delivery` (starts throwaway PostgreSQL + Redis and sets DATABASE_URL / REDIS_URL).

Scenarios, in one run:
  (a) one channel at max_mps 1000, 10,000 recipients (two 5,000-recipient requests at once);
  (b) four channels at 1000 each, 5,000 recipients each, at once;
  (c) one channel at 80, 1,600 recipients;
  (d) the floor: the asyncio client straight at the sandbox, no database, no Celery, no cap (with (b), also run
      just before it: (b)'s share of the floor is of the two runs' mean);
  (e) fairness (docs/rules.md): eight channels busy at max_mps 250 (2,000 sends/s in all), and meanwhile 20
      one-recipient broadcasts, one a second, alternating between an idle channel of the same organization and
      one of another organization. Target: first send within 1 s of the 202 (p95 over the 20), and every busy
      channel at >= 95 % of its rate while they run (its paced rate: DELIVERY_RATE_HEADROOM x max_mps).
  (f) category lanes (benchmarks/bench_lanes.py): one channel at its cap (--f-cap, default 250) with a
      5,000-recipient MARKETING broadcast, and one-recipient AUTHENTICATION broadcasts on it once a second
      (--f-tries, default 15). Target: first send within 1 s of the 202 (p95), the channel's busiest second <= cap.
  (g) fairness in the test suite's conditions (benchmarks/bench_fairness.py): four channels at 1000 with 5,000
      recipients each (--g-recipients), one-recipient broadcasts on a fifth idle channel once a second while they
      run, --g-rounds rounds (default 3); (g0) the same busy load alone. Target: first send p95 <= 1 s, busy
      channels >= 95 % of their rate alone.
Printed per scenario: sustained sends/s (first to last arrival at the sandbox) and the steady rate (less the first
and the last second: the start's plan and first grant, the end's last answers), the latter as a share of the caps;
the most sends in any one-second window per channel (sandbox), CPU ms per send (workers: utime+stime of the main
process and pool children from /proc; the sandbox shown apart), and the time from the 202 (broadcast_create
returned, dispatch enqueued on commit) to the first send; with (b) and (d), (b)'s rate as a share of the floor's
(first to last on both sides). Every figure also goes through benchmarks/figures.py (make bench-compare).
Options: --workers N (prefork processes, default 4), --only a,b,c,d,e0,e (e0: (e)'s busy channels alone, the
baseline of "keep 95 % of their rates"; BENCH_DELIVERY_ONLY in the environment is its default), --e-seconds S (how
long (e)'s busy channels run, default 30), --e-cap N (their max_mps, default 250).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from benchmarks.delivery_fixtures import (  # noqa: E402
    cpu_seconds,
    loadavg,
    make_channel,
    number,
    steady_rate,
    wait_done,
)
from benchmarks.figures import figure  # noqa: E402
from broadcasts.models import Send  # noqa: E402
from broadcasts.services import broadcast_create  # noqa: E402
from sandbox.process import start_sandbox  # noqa: E402
from templates_registry.models import Channel  # noqa: E402
from tests.delivery_support import CeleryProcess, celery_env  # noqa: E402
from tokens.models import Organization  # noqa: E402
from whatsapp.client import GraphClient  # noqa: E402

# BENCH_MAX_COST=1000000: every broadcast gets that spending cap (a rate card is loaded), so each batch also passes
# the budget gate's reservation (one statement per batch); unset, the gate costs nothing.
MAX_COST = os.environ.get("BENCH_MAX_COST")


def create(org: Organization, channel: Channel, count: int, base: int) -> tuple[str, float]:
    body = {
        "template_name": "welcome_v2",
        "language": "es",
        "channel_id": channel.id,
        "recipients": [
            {"to": number(i, base), "variables": {"nombre": "Ana", "monto": str(i)}, "meta_data": {"i": i}}
            for i in range(count)
        ],
    }
    if MAX_COST:
        body["max_cost"] = MAX_COST
    result = broadcast_create(organization=org, body=body)
    return result.body["broadcast_id"], time.time()


def run_scenario(name, sandbox, worker, sandbox_pid, setups, timeout=180):
    """setups: list of (channel, count); creates one broadcast per 5000 recipients, all at once."""
    sandbox.reset()
    org = setups[0][0].organization
    cpu0 = cpu_seconds(worker.pids())
    sbx0 = cpu_seconds([sandbox_pid])
    ids, created_at = [], []
    base = 0
    for channel, count in setups:
        for offset in range(0, count, 5000):
            broadcast_id, at = create(org, channel, min(5000, count - offset), base)
            ids.append(broadcast_id)
            created_at.append(at)
            base += 5000
    wait_done(ids, timeout)
    cpu = cpu_seconds(worker.pids()) - cpu0
    sbx = cpu_seconds([sandbox_pid]) - sbx0
    requests = sandbox.requests()
    arrivals = sorted(r["received_at"] for r in requests)
    total = len(arrivals)
    sent = Send.objects.filter(broadcast_id__in=ids, status="SENT").count()
    span = arrivals[-1] - arrivals[0]
    stats = sandbox.stats()["phone_numbers"]
    for channel, _ in setups:
        times = sorted(r["received_at"] for r in requests if r["phone_number_id"] == channel.phone_number_id)
        best, at, end = 0, 0.0, 0
        for i, t in enumerate(times):
            while end < len(times) and times[end] < t + 1.0:
                end += 1
            if end - i > best:
                best, at = end - i, t - times[0]
        profile = [0] * (int(times[-1] - times[0]) + 1)
        for t in times:
            profile[int(t - times[0])] += 1
        print(
            f"    channel ..{channel.phone_number_id[-2:]}: busiest second {best} starts {at:.2f} s into it; "
            f"per second from the first send: {profile}",
            flush=True,
        )
    windows = {
        channel.phone_number_id[-2:]: stats.get(channel.phone_number_id, {}).get("max_in_one_second")
        for channel, _ in setups
    }
    cap = setups[0][0].max_mps
    steady = steady_rate(arrivals)
    first_ms = (arrivals[0] - created_at[0]) * 1000
    label = f"delivery ({name}) {len(setups)} channel{'s' if len(setups) > 1 else ''}"
    print(
        f"({name}) {total} sends ({sent} SENT) in {span:.2f} s = {total / span:,.0f} sends/s first to last, "
        f"{steady:,.0f}/s steady (less the first and last second) = {steady / (cap * len(setups)) * 100:.1f} % of "
        f"the cap{'s' if len(setups) > 1 else ''}; max in any 1 s window per channel (cap {cap}): {windows}; "
        f"CPU {cpu * 1000 / total:.3f} ms/send in workers (+{sbx * 1000 / total:.3f} ms/send sandbox); "
        f"first send {first_ms:.0f} ms after the first 202; load {loadavg()}",
        flush=True,
    )
    figure(f"{label} sends/s", total / span, "/s", better="higher")
    figure(f"{label} steady sends/s", steady, "/s", better="higher")
    figure(f"delivery ({name}) share of cap", steady / (cap * len(setups)) * 100, "%", better="higher")
    figure(f"delivery ({name}) busiest second", max(v or 0 for v in windows.values()), "sends")
    figure(f"delivery ({name}) first send after the 202", first_ms, "ms")
    figure(f"delivery ({name}) worker CPU per send", cpu * 1000 / total, "ms")
    figure(f"delivery ({name}) sandbox CPU per send", sbx * 1000 / total, "ms")
    return total / span


def bunching_show(times: list[float], everything: list[float]) -> None:
    """Where a channel's busiest window is: its start, count, and the longest silence in it at the sandbox
    (every channel's arrivals: a stall of the sandbox itself) and in the channel's own arrivals."""
    best, at, end = 0, 0, 0
    for i, t in enumerate(times):
        while end < len(times) and times[end] < t + 1.0:
            end += 1
        if end - i > best:
            best, at = end - i, i
    lo, hi = times[at], times[at] + 1.0
    inside = [t for t in everything if lo - 0.2 <= t < hi]
    gaps = sorted(((b - a) * 1000, a - lo) for a, b in zip(inside, inside[1:], strict=False))[-3:]
    own = [t for t in times if lo - 0.2 <= t < hi]
    own_gaps = sorted(((b - a) * 1000, a - lo) for a, b in zip(own, own[1:], strict=False))[-3:]
    print(
        f"      busiest {best}: sandbox-wide longest silences (ms, at s) {[(round(g), round(w, 3)) for g, w in gaps]}; "
        f"own {[(round(g), round(w, 3)) for g, w in own_gaps]}"
    )


def scenario_e(
    sandbox, worker, sandbox_pid, org: Organization, n: int, seconds: float, cap: int = 250, tries: int = 20
) -> list[float]:
    """Fairness: eight busy channels at 250, and one-recipient broadcasts on other channels, once a second."""
    busy_count = 8
    busy = [make_channel(org, n + i, cap)[0] for i in range(busy_count)]
    other_org = Organization.objects.create(name=f"bench-other-{time.time_ns()}")
    small = [make_channel(org, n + busy_count, 80)[0], make_channel(other_org, n + busy_count + 1, 80)[0]]
    per_channel = int(cap * settings.DELIVERY_RATE_HEADROOM * seconds)
    sandbox.reset()
    cpu0 = cpu_seconds(worker.pids())
    sbx0 = cpu_seconds([sandbox_pid])
    ids, base = [], 0
    for channel in busy:
        for offset in range(0, per_channel, 5000):
            ids.append(create(org, channel, min(5000, per_channel - offset), base)[0])
            base += 5000
    # Let the busy channels reach their pace, then one small broadcast a second while they run (with tries=0,
    # the baseline: the same load alone, measured over the same window).
    time.sleep(3.0)
    probes: list[tuple[Channel, str, float]] = []
    window_start = time.time()
    if not tries:
        time.sleep(20.0)
    for i in range(tries):
        channel = small[i % 2]
        owner = org if i % 2 == 0 else other_org
        broadcast_id, at = create(owner, channel, 1, 800_000 + i)
        probes.append((channel, number(0, 800_000 + i), at))
        ids.append(broadcast_id)
        time.sleep(1.0)
    probe_end = time.time()
    wait_done(ids, timeout=seconds * 3 + 60)
    cpu = cpu_seconds(worker.pids()) - cpu0
    sbx = cpu_seconds([sandbox_pid]) - sbx0
    requests = sandbox.requests()
    first: dict[tuple[str, str], float] = {}
    for r in requests:
        key = (r["phone_number_id"], "+" + r["to"].lstrip("+"))
        first[key] = min(first.get(key, r["received_at"]), r["received_at"])
    latencies = sorted(
        (first[(channel.phone_number_id, to)] - at) * 1000 if (channel.phone_number_id, to) in first else float("inf")
        for channel, to, at in probes
    ) or [0.0]
    p50 = latencies[len(latencies) // 2]
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * len(latencies))) - 1)]
    # Each busy channel's rate while the probes ran (their first to last 202, plus one second).
    t0, t1 = window_start, probe_end
    paced = cap * settings.DELIVERY_RATE_HEADROOM
    rates, busiest, aligned = [], [], []
    stats = sandbox.stats()["phone_numbers"]
    for channel in busy:
        times = [r["received_at"] for r in requests if r["phone_number_id"] == channel.phone_number_id]
        rates.append(sum(1 for t in times if t0 <= t < t1) / (t1 - t0))
        busiest.append(stats.get(channel.phone_number_id, {}).get("max_in_one_second"))
        per_second = stats.get(channel.phone_number_id, {}).get("per_second", {})
        aligned.append(max(per_second.values(), default=0))
        if os.environ.get("BENCH_E_PROFILE"):
            print(f"    busy ..{channel.phone_number_id[-2:]}: {[per_second[k] for k in sorted(per_second)]}")
            bunching_show(sorted(times), sorted(r["received_at"] for r in requests))
    total = len(requests)
    name = "e" if tries else "e0"
    print(
        f"({name}) fairness: {busy_count} channels at {cap} ({per_channel} each) + {tries} one-recipient broadcasts on "
        f"2 idle channels (2 organizations): first send after the 202 p50 {p50:.0f} ms, p95 {p95:.0f} ms, max "
        f"{latencies[-1]:.0f} ms (target p95 <= 1000 ms); busy channels' rates while probed "
        f"{[round(r) for r in rates]} "
        f"/s = {min(rates) / paced * 100:.1f}-{max(rates) / paced * 100:.1f} % of their paced {paced:.1f}/s "
        f"({min(rates) / cap * 100:.1f}-{max(rates) / cap * 100:.1f} % of the cap; target >= 95 %); "
        f"busiest second per channel {busiest} (sliding window; wall-clock seconds {aligned}); "
        f"CPU {cpu * 1000 / total:.3f} ms/send in workers "
        f"(+{sbx * 1000 / total:.3f} ms/send sandbox); load {loadavg()}",
        flush=True,
    )
    print(f"    ({name}) latencies ms: {[round(x) for x in latencies]}", flush=True)
    if tries:
        figure(f"delivery ({name}) first send p50", p50, "ms")
        figure(f"delivery ({name}) first send p95", p95, "ms")
    figure(
        f"delivery ({name}) busy channels' share of paced", sum(rates) / len(rates) / paced * 100, "%", better="higher"
    )
    figure(f"delivery ({name}) busiest second", max(b or 0 for b in busiest), "sends")
    figure(f"delivery ({name}) worker CPU per send", cpu * 1000 / total, "ms")
    figure(f"delivery ({name}) sandbox CPU per send", sbx * 1000 / total, "ms")
    return rates


async def floor(graph_url: str, count: int, concurrency: int = 200, *, name: str = "d", record: bool = True) -> float:
    client = GraphClient(base_url=graph_url, max_connections=concurrency)
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "template",
        "template": {"name": "welcome_v2", "language": {"code": "es"}},
    }
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with limit:
            await client.send_message(
                phone_number_id="100000000099999", access_token="t", payload={**payload, "to": number(i, 900000)}
            )

    start = time.perf_counter()
    cpu_start = time.process_time()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    await client.close()
    print(
        f"({name}) bare asyncio client, no DB: {count} sends in {elapsed:.2f} s = {count / elapsed:,.0f} sends/s; "
        f"client CPU {cpu * 1000 / count:.3f} ms/send; load {loadavg()}",
        flush=True,
    )
    if record:
        figure("delivery (d) floor sends/s", count / elapsed, "/s", better="higher")
        figure("delivery (d) floor client CPU per send", cpu * 1000 / count, "ms")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    # BENCH_DELIVERY_ONLY: the scenarios when not given (make bench-compare passes the environment, not arguments).
    parser.add_argument("--only", default=os.environ.get("BENCH_DELIVERY_ONLY", "a,b,c,d,e0,e,f,g0,g"))
    parser.add_argument("--e-seconds", type=float, default=30.0)
    parser.add_argument("--e-cap", type=int, default=250)
    parser.add_argument("--f-cap", type=int, default=250)
    parser.add_argument("--f-tries", type=int, default=15)
    parser.add_argument("--g-recipients", type=int, default=5000)
    parser.add_argument("--g-rounds", type=int, default=3)
    args = parser.parse_args()
    only = set(args.only.split(","))

    call_command("migrate", verbosity=0)
    if MAX_COST:
        from broadcasts.pricing import rate_card_load

        rate_card_load(text="country,category,price,currency\n*,MARKETING,0.0125,USD\n")
    sandbox = start_sandbox(latency_ms=50)
    if os.environ.get("BENCH_SANDBOX_NICE"):
        os.setpriority(os.PRIO_PROCESS, sandbox.pid, int(os.environ["BENCH_SANDBOX_NICE"]))
    env = celery_env(database_url=os.environ["DATABASE_URL"], graph_url=sandbox.graph_url)
    env["CELERY_WORKER_LOGLEVEL"] = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")
    worker = CeleryProcess("worker", env=env, concurrency=args.workers).start()
    print(
        f"bench-delivery: {args.workers} prefork worker processes, sandbox at 50 ms, {os.cpu_count()} CPUs, "
        f"load before {loadavg()}; headroom {settings.DELIVERY_RATE_HEADROOM}"
        + (f"; max_cost {MAX_COST} on every broadcast" if MAX_COST else ""),
        flush=True,
    )
    try:
        org = Organization.objects.create(name=f"bench-{time.time_ns()}")
        n = Channel.objects.count()
        if "a" in only:
            channel, _ = make_channel(org, n + 1, 1000)
            run_scenario("a", sandbox, worker, sandbox.pid, [(channel, 10_000)])
        if "b" in only:
            channels = [make_channel(org, n + 2 + i, 1000)[0] for i in range(4)]
            if "d" in only:  # the floor on both sides of (b): the shared box's pace changes within a minute
                sandbox.reset()
                before = asyncio.run(floor(sandbox.graph_url, 10_000, name="d, just before (b)", record=False))
            four = run_scenario("b", sandbox, worker, sandbox.pid, [(c, 5000) for c in channels])
        if "d" in only:
            sandbox.reset()
            bare = asyncio.run(floor(sandbox.graph_url, 10_000))
            if "b" in only:
                # First to last on both sides: the floor has no plan, no claim and no ramp to leave out.
                bare = (before + bare) / 2
                print(
                    f"    (b) 4 channels at {four:,.0f}/s = {four / bare * 100:.1f} % of the floor's {bare:,.0f}/s "
                    "(its runs just before and after (b); target >= 92 %)",
                    flush=True,
                )
                figure("delivery (b) share of floor", four / bare * 100, "%", better="higher")
        if "c" in only:
            channel, _ = make_channel(org, n + 6, 80)
            run_scenario("c", sandbox, worker, sandbox.pid, [(channel, 1600)])
        if "e0" in only:
            # The baseline: the busy channels' own rates on this machine, without the small broadcasts.
            alone = scenario_e(sandbox, worker, sandbox.pid, org, n + 7, args.e_seconds, cap=args.e_cap, tries=0)
        if "e" in only:
            probed = scenario_e(sandbox, worker, sandbox.pid, org, n + 17, args.e_seconds, cap=args.e_cap)
            if "e0" in only:
                print(
                    f"    (e) busy channels keep {sum(probed) / sum(alone) * 100:.1f} % of their rate alone (e0) "
                    f"while the small broadcasts go (target >= 95 %)",
                    flush=True,
                )
                figure(
                    "delivery (e) busy channels' share of (e0)", sum(probed) / sum(alone) * 100, "%", better="higher"
                )
        if "f" in only:
            from benchmarks.bench_lanes import scenario_lanes

            scenario_lanes(sandbox, worker, sandbox.pid, org, n + 30, cap=args.f_cap, tries=args.f_tries)
        if "g0" in only or "g" in only:
            from benchmarks.bench_fairness import scenario_fairness

            kwargs = {"recipients": args.g_recipients, "rounds": args.g_rounds}
            alone = scenario_fairness(sandbox, worker, org, n + 40, probes=False, **kwargs) if "g0" in only else None
            if "g" in only:
                probed = scenario_fairness(sandbox, worker, org, n + 50, **kwargs)
                if alone:
                    print(
                        f"    (g) busy channels keep {probed / alone * 100:.1f} % of their rate alone (g0) while the "
                        "small broadcasts go (target >= 95 %)",
                        flush=True,
                    )
                    figure("delivery (g) busy channels' share of (g0)", probed / alone * 100, "%", better="higher")
    finally:
        if os.environ.get("BENCH_SHOW_CHUNKS"):
            print("\n".join(line for line in worker.log().splitlines() if "chunk " in line))
        worker.stop()
        sandbox.stop()


if __name__ == "__main__":
    main()
