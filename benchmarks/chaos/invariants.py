"""The invariants, read after quiescence from the database, the sandbox's journal (what Meta received), the
customers' endpoints and the web process's access log. Each is a figure and a verdict."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.chaos.scenario import LIMITED_LIMIT, LIMITED_ORG, ORGS, TEMPLATES
from tests.delivery_support import max_in_any_second

# Answers that say Meta did not take the send (a retry after one of these is not a second post of a taken one).
REFUSED_PREFIXES = ("error:", "http", "raw", "capped", "pair_limited", "invalid", "unauthorized")
# The messaging limit is checked over a window this much shorter than the service's (60 s): the service counts a
# number when it claims the send, the sandbox when the POST arrives a moment later.
LIMIT_WINDOW_SECONDS, LIMIT_WINDOW_SLACK = 60.0, 2.0
# A status that web acknowledged this long before a re-post should have stopped it (the engine checks when it
# claims the send; the POST leaves within the posting gate's 0.3 s).
STATUS_SLACK = 2.0
# A fault's recorded moments and an endpoint's receipt are read on different threads' clocks around one event.
EVENT_SLACK = 1.0
# A MARKETING send may still leave within this long after the suppression's 201 (the posting gate's 0.3 s mark).
SUPPRESSION_SLACK = 1.0


@dataclass
class Check:
    name: str
    ok: bool
    figure: str
    details: list[str]


def journal(path: Path) -> list[list[Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # a line cut by kill -9 mid-write (never seen: one write(2) per line)
    return rows


def snapshot(database_url: str) -> dict[str, Any]:
    """Sends, kept counts and deliveries, read in one REPEATABLE READ transaction."""
    with psycopg.connect(database_url, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        sends = conn.execute(
            "SELECT b.id, s.index, s.status, s.unknown_outcomes, s.error_code, s.to, t.name "
            "FROM broadcasts_send s JOIN broadcasts_broadcast b ON b.id = s.broadcast_id "
            "JOIN templates_registry_template t ON t.id = b.template_id"
        ).fetchall()
        kept = conn.execute(
            "SELECT id, status, pending, sent, delivered, read, failed, cancelled, total_recipients "
            "FROM broadcasts_broadcast"
        ).fetchall()
        grouped = conn.execute(
            "SELECT broadcast_id, status, count(*) FROM broadcasts_send GROUP BY broadcast_id, status"
        ).fetchall()
        deliveries = conn.execute(
            "SELECT d.event_id, d.status, e.url, coalesce(d.locked_until > now(), false), d.attempts, "
            "d.last_status_code, left(d.last_error, 120), d.next_attempt_at - now(), ev.type, now() - ev.created_at, "
            "d.endpoint_id, d.ordering_key "
            "FROM events_eventdelivery d JOIN events_webhookendpoint e ON e.id = d.endpoint_id "
            "JOIN events_event ev ON ev.id = d.event_id"
        ).fetchall()
    return {"sends": sends, "kept": kept, "grouped": grouped, "deliveries": deliveries}


def check_all(
    *, snap: dict[str, Any], posts: list[list[Any]], ledger, received: Counter, web_log: str, procs: dict,
    caps: dict[str, int], org_of_phone: dict[str, str], status_seen: dict[str, float], faults_errors: list[str],
    arrivals: dict[str, list[float]], interruptions: list[tuple[float, float, str]],
) -> list[Check]:  # fmt: skip
    return [
        _final(snap),
        _double_posts(snap, posts, ledger, status_seen),
        _kept_counts(snap),
        _caps(posts, caps),
        _messaging_limit(posts, org_of_phone),
        _suppressed(posts, ledger, org_of_phone),
        _events(snap, received, arrivals, interruptions),
        _no_500(web_log, ledger),
        _processes(procs),
        _harness(ledger, faults_errors),
    ]


def _final(snap) -> Check:
    pending = [f"{b}:{i}" for b, i, status, *_ in snap["sends"] if status == "PENDING"]
    running = [f"{row[0]} {row[1]}" for row in snap["kept"] if row[1] in ("PENDING", "IN_PROGRESS", "PAUSED")]
    total = len(snap["sends"])
    figure = f"{total - len(pending)}/{total} sends final; {len(running)} broadcasts not ended"
    return Check("every send final", not pending and not running, figure, pending[:10] + running[:10])


def _double_posts(snap, posts, ledger, status_seen: dict[str, float]) -> Check:
    by_send: dict[str, list[list[Any]]] = defaultdict(list)
    for post in posts:
        if post[6]:
            by_send[post[6]].append(post)
    unknown = {f"{b}:{i}": u for b, i, _, u, *_ in snap["sends"]}
    reposted, excused_retry, excused_error, bad = 0, 0, 0, []
    for callback, items in by_send.items():
        if len(items) < 2:
            continue
        items.sort(key=lambda p: p[0])
        reposted += 1
        retries = ledger.retries.get(callback.split(":")[0], [])
        unexplained = 0
        for earlier, later in zip(items, items[1:], strict=False):
            if str(earlier[3]).startswith(REFUSED_PREFIXES):
                excused_error += 1
            elif any(earlier[0] < t < later[0] for t in retries):
                excused_retry += 1
            else:
                unexplained += 1
                seen = status_seen.get(callback)
                if seen is not None and seen < later[0] - STATUS_SLACK:
                    bad.append(f"{callback}: posted again {later[0] - seen:.1f} s after web took its status")
        if unexplained > unknown.get(callback, 0):
            bad.append(
                f"{callback}: {len(items)} posts {[p[3] for p in items]}, unknown_outcomes {unknown.get(callback)}"
            )
    counted = sum(unknown.values())
    figure = (
        f"{len(posts)} posts, {len(by_send)} sends posted, {reposted} posted more than once: re-posts after Meta's "
        f"error {excused_error}, after a retry {excused_retry}, unknown outcomes counted {counted}; "
        f"{len(bad)} not explained"
    )
    return Check("no send posted twice unless its outcome was unknown", not bad, figure, bad[:10])


def _kept_counts(snap) -> Check:
    grouped: dict[str, Counter] = defaultdict(Counter)
    for broadcast_id, status, count in snap["grouped"]:
        grouped[broadcast_id][status.lower()] += count
    bad = []
    for broadcast_id, _, *counts, total in snap["kept"]:
        kept = dict(zip(["pending", "sent", "delivered", "read", "failed", "cancelled"], counts, strict=True))
        actual = {k: grouped[broadcast_id].get(k, 0) for k in kept}
        if kept != actual or sum(kept.values()) != total:
            bad.append(f"{broadcast_id}: kept {kept} GROUP BY {actual} total {total}")
    return Check(
        "kept counts = GROUP BY of sends", not bad, f"{len(snap['kept'])} broadcasts, {len(bad)} differ", bad[:10]
    )


def _caps(posts, caps: dict[str, int]) -> Check:
    times: dict[str, list[float]] = defaultdict(list)
    for post in posts:
        times[post[1]].append(post[0])
    worst, bad = [], []
    for phone, cap in sorted(caps.items()):
        most = max_in_any_second(times.get(phone, []))
        worst.append(f"{phone}: {most}/{cap}")
        if most > cap:
            bad.append(f"{phone}: {most} posts in one second, cap {cap}")
    return Check("every channel's cap held in every second", not bad, "busiest second " + ", ".join(worst), bad)


def _messaging_limit(posts, org_of_phone) -> Check:
    """Meta's count: a number counts when an accepted send reaches it and it was not counted in the window."""
    window = LIMIT_WINDOW_SECONDS - LIMIT_WINDOW_SLACK
    counted: dict[str, float] = {}
    order: list[tuple[float, str]] = []
    most = 0
    head = 0
    for post in sorted(posts, key=lambda p: p[0]):
        if (
            org_of_phone.get(post[1]) != LIMITED_ORG
            or str(post[3]).startswith(REFUSED_PREFIXES)
            or post[3] in ("hang", "drop")
        ):
            continue
        now, number = post[0], post[2]
        while head < len(order) and order[head][0] <= now - window:
            at, old = order[head]
            if counted.get(old) == at:
                del counted[old]
            head += 1
        if number in counted:
            continue
        counted[number] = now
        order.append((now, number))
        most = max(most, len(counted))
    ok = most <= LIMITED_LIMIT
    figure = f"{LIMITED_ORG}: at most {most} numbers in a {window:g} s window (limit {LIMITED_LIMIT})"
    return Check("no messaging limit passed", ok, figure, [] if ok else [figure])


def _suppressed(posts, ledger, org_of_phone) -> Check:
    bad, marketing = [], 0
    for post in posts:
        if TEMPLATES.get(post[5]) != "MARKETING":
            continue
        marketing += 1
        org = org_of_phone.get(post[1])
        for added, removed in ledger.suppressions.get((org, f"+{post[2]}"), []):
            if added + SUPPRESSION_SLACK < post[0] and (removed is None or removed > post[0]):
                bad.append(f"{org} +{post[2]} posted at {post[0]:.2f}, suppressed at {added:.2f}")
    listed = sum(len(v) for v in ledger.suppressions.values())
    figure = f"{marketing} MARKETING posts, {listed} suppressions, {len(bad)} posted while suppressed"
    return Check("no MARKETING send to a suppressed number", not bad, figure, bad[:10])


def _events(snap, received: Counter, arrivals: dict[str, list[float]], interruptions) -> Check:
    healthy = [row for row in snap["deliveries"] if "/ok/" in row[2]]
    # A killed worker's deliveries stay leased for 5 minutes (events/outbox.py), and the later events of the same
    # message wait behind them (order per message): late, not lost.
    held = {(row[10], row[11]) for row in healthy if row[1] == "pending" and row[3]}
    waiting = [
        row for row in healthy if not received.get(row[0]) and row[1] == "pending" and (row[10], row[11]) in held
    ]
    missing = [str(row[:10]) for row in healthy if not received.get(row[0]) and row not in waiting]
    leased = waiting
    redelivered, bad = _event_duplicates(arrivals, interruptions)
    figure = (
        f"{len(healthy)} events for healthy endpoints, {len(healthy) - len(missing) - len(leased)} received, "
        f"{len(missing)} missing, {len(leased)} held by a killed worker's 5-minute lease (or behind one), "
        f"{redelivered} re-delivered after an interrupted attempt, {len(bad)} other duplicates by id"
    )
    ok = not missing and not bad
    return Check("every event delivered to a healthy endpoint once", ok, figure, (missing + bad)[:10])


def _event_duplicates(arrivals: dict[str, list[float]], interruptions) -> tuple[int, list[str]]:
    """Receipts after the first of an event id: allowed only when a worker was killed (or restarted) or PostgreSQL
    was away between the earlier receipt and this one (a POST made, its "delivered" not written: posted again once
    its lease ended, at least once). Any other duplicate is a fault."""
    redelivered, bad = 0, []
    for event_id, times in arrivals.items():
        times = sorted(times)
        for earlier, later in zip(times, times[1:], strict=False):
            cut = [
                what
                for began, ended, what in interruptions
                if began - EVENT_SLACK <= later and ended + EVENT_SLACK >= earlier
            ]
            if cut:
                redelivered += 1
            else:
                bad.append(f"event {event_id}: received again {later - earlier:.1f} s later, no interruption between")
    return redelivered, bad


def _no_500(web_log: str, ledger) -> Check:
    lines = []
    for line in web_log.splitlines():
        if '"status"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("status") == 500:
            lines.append(f"{record.get('method')} {record.get('path')} {record.get('request_id')}")
    seen = ledger.answers_500
    figure = f"{len(lines)} answers 500 in the access log, {len(seen)} 5xx (not 503) seen by clients"
    return Check("0 responses 500 from web", not lines and not seen, figure, (lines + seen)[:10])


def _processes(procs: dict) -> Check:
    bad = [f"{name}: {p.unexpected_exits}" for name, p in procs.items() if p.unexpected_exits]
    dead = [name for name, p in procs.items() if not p.alive()]
    kills = ", ".join(f"{name} {p.killed_by_scenario}" for name, p in procs.items())
    figure = f"killed by the scenario: {kills}; {len(bad)} died otherwise; {len(dead)} not alive"
    return Check("every process alive or restarted only by the scenario", not bad and not dead, figure, bad + dead)


def _harness(ledger, faults_errors: list[str]) -> Check:
    """The schedule was played: every create accepted, every fault injected. A scheduled create that a long outage
    delayed past its own `scheduled_at` is refused, rightly, and only noted."""
    problems = [e for e in ledger.errors if "scheduled_at" not in e] + faults_errors
    accepted = ledger.statuses.get("create 202", 0)
    figure = f"{accepted} creates accepted, {len(problems)} traffic or fault actions failed"
    return Check("the scenario ran as scheduled", not problems, figure, problems[:10])


def org_of_phone() -> dict[str, str]:
    return {phone: org for org, items in ORGS.items() for phone, _ in items}
