"""The soak's report: the invariants as figures, what was injected, and a row for docs/guarantees.md."""

from __future__ import annotations

from collections import Counter


def show(*, scenario, checks, faults, ledger, relay, endpoints, snap, timings, reproduce, workdir) -> int:
    statuses = Counter(row[2] for row in snap["sends"])
    print()
    print(f"chaos: seed {scenario.seed}, duration {scenario.duration:g} s, schedule {scenario.digest()}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    failed = Counter(row[4] for row in snap["sends"] if row[2] == "FAILED")
    print(f"sends: {len(snap['sends'])} in {len(snap['kept'])} broadcasts: {dict(sorted(statuses.items()))}")
    if failed:
        print(f"failed sends by error code: {dict(failed.most_common())}")
    injected = dict(sorted(faults.done.items()))
    print(f"faults injected: {sum(injected.values())} {injected}")
    if faults.skipped:
        print(f"faults skipped: {dict(faults.skipped)}")
    print(f"API answers: {dict(sorted(ledger.statuses.items()))}")
    print(f"Meta status relay: {dict(relay.stats)}; web answered {dict(relay.web_statuses)}")
    print(
        f"event endpoints: {sum(endpoints.received.values())} healthy deliveries, {endpoints.failing_hits} to failing"
    )
    problems = faults.errors + ledger.errors
    if problems:
        print(f"harness notes ({len(problems)}):")
        for line in problems[:15]:
            print(f"  - {line}")
    print()
    for check in checks:
        print(f"[{'ok' if check.ok else 'FAILED'}] {check.name}: {check.figure}")
        for line in check.details[:10]:
            print(f"      {line}")
    held = sum(check.ok for check in checks)
    kinds = ", ".join(f"{k} {v}" for k, v in injected.items())
    print()
    print(f"| {scenario.seed} | {scenario.duration:g} s | {kinds} | {len(snap['sends'])} | {held}/{len(checks)} |")
    ok = held == len(checks)
    print(f"seed {scenario.seed}; reproduce: {reproduce}" + ("" if ok else f"   (the processes' logs: {workdir})"))
    return 0 if ok else 1
