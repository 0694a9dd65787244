"""`make chaos SEED=n DURATION=s`: the production stack (Procfile's release, web, 2 workers, beat) with the sandbox
and customer endpoints, under seeded traffic and faults; then the invariants, printed as figures.

Runs inside `scripts/services.py test --` (throwaway PostgreSQL and Redis; TEST_SERVICES_DIR names their folder).
Exit 0 when every invariant held, 1 otherwise (the seed and a one-line reproduce command are printed either way).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.chaos import invariants, report
from benchmarks.chaos.faults import Faults, faketime_library
from benchmarks.chaos.receivers import Endpoints, StatusRelay
from benchmarks.chaos.scenario import ORGS, Action, build
from benchmarks.chaos.setup import create_objects
from benchmarks.chaos.stack import Stack
from benchmarks.chaos.traffic import Api, Ledger, Traffic


def wait_ready(url: str, *, timeout: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g} s")


def play(actions: list[Action], run, started: float, threads: list[threading.Thread]) -> None:
    """Starts each action in its own thread at its time (a late action starts at once)."""
    for action in actions:
        delay = started + action.at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        thread = threading.Thread(target=run, args=(action,), daemon=True)
        thread.start()
        threads.append(thread)


def quiescent(database_url: str, relay: StatusRelay) -> bool:
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            busy = conn.execute(
                "SELECT (SELECT count(*) FROM broadcasts_broadcast WHERE status IN ('PENDING','IN_PROGRESS','PAUSED'))"
                " + (SELECT count(*) FROM events_eventdelivery d JOIN events_webhookendpoint e ON e.id = d.endpoint_id"
                "    WHERE d.status = 'pending' AND e.url LIKE '%/ok/%'"
                "      AND (d.locked_until IS NULL OR d.locked_until < now())"
                "      AND NOT EXISTS (SELECT 1 FROM events_eventdelivery x WHERE x.endpoint_id = d.endpoint_id"
                "        AND x.ordering_key = d.ordering_key AND x.status = 'pending' AND x.locked_until > now()))"
            ).fetchone()[0]
    except psycopg.Error:
        return False
    return busy == 0 and relay.idle()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of traffic and faults")
    parser.add_argument("--quiesce", type=float, default=None, help="bound on the wait for quiescence (s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (Procfile worker lines)")
    args = parser.parse_args()
    if "TEST_SERVICES_DIR" not in os.environ:
        print("run it through `make chaos` (scripts/services.py test -- ...)", file=sys.stderr)
        return 2
    quiesce = args.quiesce if args.quiesce is not None else max(120.0, args.duration * 0.1)
    skew = faketime_library() is not None
    if not skew:
        print("chaos: faketime (Debian's package `faketime`) is not installed: the clock_skew fault is skipped")
    scenario = build(args.seed, args.duration, skew_available=skew)
    reproduce = f"make chaos SEED={args.seed} DURATION={args.duration:g}"
    print(f"chaos: seed {args.seed}, duration {args.duration:g} s, schedule {scenario.digest()}: "
          f"{len(scenario.traffic)} traffic actions ({scenario.planned_sends()} sends planned), "
          f"{len(scenario.faults)} faults", flush=True)  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    stack = Stack(workdir=workdir, workers=args.workers, worker_concurrency=2, web_concurrency=2)
    relay = StatusRelay(
        port=stack.relay_port, target=f"{stack.base_url}/v1/webhooks/whatsapp", rng=random.Random(args.seed + 1)
    )
    endpoints = Endpoints()
    ledger = Ledger()
    faults = Faults(stack=stack, relay=relay)
    timings: dict[str, float] = {}
    began = time.monotonic()
    try:
        stack.release()
        made = create_objects(stack)
        stack.start_all()
        wait_ready(f"{stack.base_url}/v1/health", timeout=120)
        wait_ready(f"{stack.sandbox_url}/_sandbox/health", timeout=60)
        timings["startup"] = time.monotonic() - began
        api = Api(base_url=stack.base_url, tokens=made["tokens"], ledger=ledger)
        for org in ORGS:
            status, _ = api.call(org, "POST", "/v1/webhooks", {"url": endpoints.url("ok", org)}, label="webhook")
            if status != 201:
                raise RuntimeError(f"registering the healthy endpoint of {org} answered {status}")
        traffic = Traffic(api=api, seed=args.seed, channels=made["channels"])
        traffic.failing_url = endpoints.url
        print(f"chaos: stack up in {timings['startup']:.0f} s (web {stack.base_url}, logs in {workdir})", flush=True)
        started = time.monotonic()
        threads: list[threading.Thread] = []
        players = [
            threading.Thread(target=play, args=(scenario.traffic, traffic.run, started, threads), daemon=True),
            threading.Thread(target=play, args=(scenario.faults, faults.run, started, threads), daemon=True),
        ]
        for player in players:
            player.start()
        while time.monotonic() < started + args.duration:
            time.sleep(1)
        for player in players:
            player.join(timeout=60)
        for thread in list(threads):
            thread.join(timeout=max(1.0, started + args.duration + 120 - time.monotonic()))
        # Whatever the scenario paused and did not resume yet is resumed: nothing is left waiting for a person.
        for broadcast_id in list(ledger.paused):
            traffic.resume(broadcast_id)
        timings["traffic"] = time.monotonic() - started
        quiet_from = time.monotonic()
        database_url = os.environ["DATABASE_URL"]
        while time.monotonic() < quiet_from + quiesce and not quiescent(database_url, relay):
            time.sleep(2)
        time.sleep(3)  # the last events in flight to the endpoints
        timings["quiescence"] = time.monotonic() - quiet_from
        snap = invariants.snapshot(database_url)
        posts = invariants.journal(stack.journal_path)
        web_log = (workdir / "web.log").read_text(errors="replace")
        caps = {phone: mps for items in ORGS.values() for phone, mps in items}
        checks = invariants.check_all(
            snap=snap, posts=posts, ledger=ledger, received=endpoints.received, web_log=web_log, procs=stack.procs,
            caps=caps, org_of_phone=invariants.org_of_phone(), status_seen=relay.status_seen,
            faults_errors=faults.errors, arrivals=endpoints.arrivals, interruptions=faults.interruptions,
        )  # fmt: skip
    finally:
        stack.stop_all()
        relay.close()
        endpoints.close()
    timings["total"] = time.monotonic() - began
    status = report.show(
        scenario=scenario, checks=checks, faults=faults, ledger=ledger, relay=relay, endpoints=endpoints,
        snap=snap, timings=timings, reproduce=reproduce, workdir=workdir,
    )  # fmt: skip
    if status == 0:
        shutil.rmtree(workdir, ignore_errors=True)  # the processes' logs are kept only when an invariant failed
    return status


if __name__ == "__main__":
    sys.exit(main())
