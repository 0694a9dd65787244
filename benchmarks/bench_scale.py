"""Benchmark: the same speed with ten million sends stored (docs/operations.md). `make bench-scale` (not in make test).

One run, three states of one PostgreSQL:
  small     the caller's organization only: 50 broadcasts of 5,000 sends (250,000), ANALYZEd (a steady state);
  10M COPY  right after COPY brought it to 2,000 broadcasts of 5,000 over 50 organizations (10 million sends),
            autovacuum off on the two tables and no ANALYZE: the statistics still describe the small table, as
            they do in production in the minutes after a bulk load (fresh statistics cannot be assumed);
  10M ANALYZE the same after ANALYZE.
In each it measures over HTTP (gunicorn, 2 sync workers) the median of RUNS runs of: ingest of 5,000 recipients,
a broadcast's status, the list of 50 broadcasts, a deep recipients page, a signed 1,000-status webhook; and
in-process the claim of a running broadcast's first batch, the sweeper's queries and the admin overview (one
organization and all 50, over a day of per-minute and a week of hourly rollups per channel). It EXPLAINs every statement
of those paths (the events path too, with an endpoint) and flags any plan that reads a whole table; the plans go
to var/bench_scale_explain.txt. At 10M it also times the retention purge of one broadcast's 5,000 sends.
Target: every median within 1.2x (or +10 ms) of the small database's; the 1,000-status webhook under 60 ms; the
admin overview under 100 ms.
"""

import hashlib
import hmac
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
APP_SECRET = "bench-app-secret"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["WHATSAPP_APP_SECRET"] = APP_SECRET
os.environ["WEBHOOKS_ALLOW_PRIVATE"] = "true"
os.environ["API_RATE_LIMITS"] = "1000000/min"
os.environ["API_ORG_RATE_LIMITS"] = "1000000/min"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BROADCASTS = int(os.environ.get("BENCH_SCALE_BROADCASTS", "2000"))
ORGS = 50
PER = 5000
CALLER_BROADCASTS = 50
PENDING_BROADCASTS = 100  # parked (scheduled far ahead): 500,000 pending sends in the big table

import django  # noqa: E402

django.setup()

import orjson  # noqa: E402
import requests  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks.bench_ingest import body as ingest_body  # noqa: E402
from benchmarks.bench_ingest import numbers as ingest_numbers  # noqa: E402
from benchmarks.scale_overview import overview_figures, overview_queries, rollups_seed  # noqa: E402
from broadcasts import retention  # noqa: E402
from broadcasts.api.pagination import cursor_encode  # noqa: E402
from broadcasts.delivery import (  # noqa: E402
    claims,
    dispatch,
    recovery,  # noqa: E402
)
from broadcasts.lifecycle import broadcast_finalize  # noqa: E402
from broadcasts.models import Broadcast, BroadcastStatus  # noqa: E402
from core.ids import object_id  # noqa: E402
from events.endpoints import endpoint_create  # noqa: E402
from events.models import WebhookEndpoint  # noqa: E402
from templates_registry.models import Channel, Template  # noqa: E402
from tests.gunicorn_process import gunicorn  # noqa: E402
from tokens.models import Organization  # noqa: E402
from tokens.services import token_create  # noqa: E402

EXPLAIN_PATH = ROOT / "var" / "bench_scale_explain.txt"
COLUMNS = (
    'broadcast_id, index, "to", variables, status, attempts, unknown_outcomes, message_id, error_code, error_title,'
    " error_message, error_retryable, sent_at, updated_at"
)
VARIABLES = '{"nombre": "Ana", "monto": "10"}'
# Send statuses of a finished broadcast, by index % 20: 5 % FAILED, 10 % SENT, 25 % DELIVERED, 60 % READ.
FINISHED = ["FAILED", "SENT", "SENT"] + ["DELIVERED"] * 5 + ["READ"] * 12


def finished_counts(n: int) -> dict[str, int]:
    counts = dict.fromkeys(("pending", "sent", "delivered", "read", "failed", "cancelled"), 0)
    for i in range(n):
        counts[FINISHED[i % 20].lower()] += 1
    return counts


# --- seeding: COPY from a generator, indexes as in production --------------------------------------------------


def _lines(broadcast_id: str, n: int, *, kind: str, stamp: str, wamid_prefix: str):
    ok_tail = f"\t\t\t\t\\N\t{stamp}\t{stamp}\n"  # no error, error_retryable NULL, sent_at, updated_at
    for i in range(n):
        to = f"+57300{i:07d}"
        if kind == "pending":
            yield f"{broadcast_id}\t{i}\t{to}\t{VARIABLES}\tPENDING\t0\t0\t\\N\t\t\t\t\\N\t\\N\t{stamp}\n"
        elif kind == "sent":
            yield f"{broadcast_id}\t{i}\t{to}\t{VARIABLES}\tSENT\t1\t0\t{wamid_prefix}{i}{ok_tail}"
        else:
            status = FINISHED[i % 20]
            if status == "FAILED":
                yield (
                    f"{broadcast_id}\t{i}\t{to}\t{VARIABLES}\tFAILED\t1\t0\t\\N\t131026\tUndeliverable\t"
                    f"Message undeliverable.\tf\t\\N\t{stamp}\n"
                )
            else:
                yield f"{broadcast_id}\t{i}\t{to}\t{VARIABLES}\t{status}\t1\t0\t{wamid_prefix}{i}{ok_tail}"


def seed(specs: list[dict]) -> float:
    """Broadcast rows (ORM) and their sends (one COPY per 20 broadcasts, each batch committed). Returns seconds."""
    started = time.perf_counter()
    for k in range(0, len(specs), 20):
        batch = specs[k : k + 20]
        with transaction.atomic():
            Broadcast.objects.bulk_create([s["row"] for s in batch])
            with connection.cursor() as cursor, cursor.copy(f"COPY broadcasts_send ({COLUMNS}) FROM STDIN") as copy:
                for s in batch:
                    buffer = []
                    for line in _lines(s["row"].id, s["n"], kind=s["kind"], stamp=s["stamp"], wamid_prefix=s["wamid"]):
                        buffer.append(line)
                        if len(buffer) >= 5000:
                            copy.write("".join(buffer).encode())
                            buffer = []
                    if buffer:
                        copy.write("".join(buffer).encode())
    return time.perf_counter() - started


def spec(org, channel, template, *, kind: str, created_at, n: int = PER) -> dict:
    bid = object_id()
    row = Broadcast(
        id=bid,
        organization=org,
        channel=channel,
        template=template,
        template_name=template.name,
        language=template.language,
        campaign_name=f"seed {kind}",
        total_recipients=n,
        created_at=created_at,
    )
    if kind == "pending":
        row.status, row.scheduled_at, row.pending = BroadcastStatus.PENDING, created_at + timedelta(days=365), n
    elif kind == "sent":
        row.status, row.started_at, row.sent = BroadcastStatus.IN_PROGRESS, created_at, n
    else:
        row.status, row.started_at = BroadcastStatus.COMPLETED, created_at
        row.completed_at = created_at + timedelta(hours=1)
        for name, value in finished_counts(n).items():
            setattr(row, name, value)
    return {"row": row, "n": n, "kind": kind, "stamp": created_at.isoformat(), "wamid": f"wamid.{bid}."}


# --- measuring ----------------------------------------------------------------------------------------------------


def median_ms(fn, runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def signed(statuses: list[dict], *, phone_number_id: str) -> tuple[bytes, dict[str, str]]:
    # The channel's own number: a status naming another channel changes nothing (docs/rules.md).
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": phone_number_id}, "statuses": statuses}
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "w", "changes": [{"field": "messages", "value": value}]}],
    }
    raw = orjson.dumps(payload)
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}


def delivered_body(broadcast_id: str) -> tuple[bytes, dict[str, str]]:
    now = str(int(time.time()))
    phone_number_id = Broadcast.objects.filter(id=broadcast_id).values_list("channel__phone_number_id", flat=True)[0]
    return signed(
        [
            {"id": f"wamid.{broadcast_id}.{i}", "status": "delivered", "timestamp": now, "recipient_id": "1"}
            for i in range(1000)
        ],
        phone_number_id=phone_number_id,
    )


class World:
    def __init__(self) -> None:
        self.orgs = [Organization.objects.create(name=f"scale-{k}") for k in range(ORGS)]
        self.channels, self.templates = [], []
        for k, org in enumerate(self.orgs):
            channel = Channel.objects.create(
                organization=org, phone_number_id=f"1700000{k:08d}", waba_id=f"2700000{k:08d}", access_token="x"
            )
            template = Template.objects.create(
                waba_id=channel.waba_id,
                name="welcome_v2",
                language="es",
                status=Template.Status.APPROVED,
                components=[{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}],
                body_variables=["nombre", "monto"],
            )
            self.channels.append(channel)
            self.templates.append(template)
        self.caller = self.orgs[0]
        self.token = token_create(organization=self.caller, scopes=["messages:bulk"]).secret
        # A channel of the caller's with nothing else running: the claim's broadcasts.
        self.claim_channel = Channel.objects.create(
            organization=self.caller,
            phone_number_id="179999999999999",
            waba_id=self.channels[0].waba_id,
            access_token="x",
        )
        self.pool = ingest_numbers(PER * (RUNS + 1) * 3)
        self.ingested = 0
        self.operator = rollups_seed(self.channels + [self.claim_channel])


def measure(world: World, base: str, label: str, explain_out) -> dict[str, float]:
    session = requests.Session()
    auth = {"Authorization": f"Bearer {world.token}"}
    url = f"{base}/v1/messages/bulk"
    caller_ids = list(
        Broadcast.objects.filter(organization=world.caller, campaign_name="seed done").values_list("id", flat=True)
    )
    target = caller_ids[len(caller_ids) // 2]
    figures: dict[str, float] = {}

    def ingest() -> None:
        raw = ingest_body(world.channels[0].id, world.pool, world.ingested * PER, f"ingest {world.ingested}")
        world.ingested += 1
        started = time.perf_counter()
        response = session.post(url, data=raw, headers={**auth, "Content-Type": "application/json"}, timeout=120)
        assert response.status_code == 202, response.text[:300]
        ingest.times.append((time.perf_counter() - started) * 1000)

    ingest.times = []
    for _ in range(RUNS + 1):
        ingest()
    figures["ingest 5,000"] = statistics.median(ingest.times[1:])

    def get(path: str, params=None) -> None:
        response = session.get(f"{base}{path}", headers=auth, params=params, timeout=30)
        assert response.status_code == 200, response.text[:300]

    figures["status GET"] = median_ms(lambda: get(f"/v1/messages/bulk/{target}"))
    figures["list GET (50)"] = median_ms(lambda: get("/v1/messages/bulk", {"limit": 50}))
    deep = {"limit": 100, "cursor": cursor_encode(4800)}
    figures["recipients, deep page"] = median_ms(lambda: get(f"/v1/messages/bulk/{target}/recipients", deep))
    figures["recipients, deep, status=read"] = median_ms(
        lambda: get(f"/v1/messages/bulk/{target}/recipients", {**deep, "status": "read"})
    )

    # The webhook: each run a fresh broadcast of 1,000 SENT sends (their wamids in the index, like every other).
    hooks = [spec(world.caller, world.channels[0], world.templates[0], kind="sent", created_at=timezone.now(), n=1000)]
    hooks += [
        spec(world.caller, world.channels[0], world.templates[0], kind="sent", created_at=timezone.now(), n=1000)
        for _ in range(RUNS)
    ]
    seed(hooks)
    times = []
    for k, h in enumerate(hooks):
        raw, headers = delivered_body(h["row"].id)
        started = time.perf_counter()
        response = session.post(f"{base}/v1/webhooks/whatsapp", data=raw, headers=headers, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text[:300]
        if k:
            times.append(elapsed)
    assert Broadcast.objects.get(id=hooks[-1]["row"].id).delivered == 1000
    figures["webhook 1,000 statuses"] = statistics.median(times)

    # The claim: the first batch of a running broadcast of 5,000 pending sends (in-process, the engine's call).
    claim = spec(world.caller, world.claim_channel, world.templates[0], kind="pending", created_at=timezone.now())
    claim["row"].status, claim["row"].scheduled_at, claim["row"].started_at = (
        BroadcastStatus.IN_PROGRESS,
        None,
        timezone.now(),
    )
    seed([claim])

    def release() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE broadcasts_send SET lease_expires_at = NULL, attempts = 0 WHERE broadcast_id = %s"
                " AND lease_expires_at IS NOT NULL",
                [claim["row"].id],
            )

    times = []
    for _ in range(RUNS + 1):
        started = time.perf_counter()
        got = claims.channel_claim_next(channel_id=world.claim_channel.id)
        times.append((time.perf_counter() - started) * 1000)
        assert got is not None and got[0].id == claim["row"].id
        release()
    figures["claim (first batch)"] = statistics.median(times[1:])

    def sweeper_queries() -> None:
        recovery.sends_recover_expired()
        list(Broadcast.objects.filter(status=BroadcastStatus.CANCELLED, pending__gt=0).values_list("id", flat=True))
        list(dispatch.broadcasts_in_progress())
        broadcast_finalize(broadcast_id=claim["row"].id)
        retention.broadcasts_purge_due()

    figures["sweeper + finalize queries"] = median_ms(sweeper_queries)

    # The admin overview (in-process: the view, its queries and its template), one organization and all of them.
    figures.update(overview_figures(operator=world.operator, organization_id=world.caller.id, median_ms=median_ms))

    explain_paths(world, label, target, claim["row"].id, sweeper_queries, explain_out)
    Broadcast.objects.filter(id=claim["row"].id).update(status=BroadcastStatus.CANCELLED)
    return figures


# --- EXPLAIN every statement of the hot paths -------------------------------------------------------------------


def explain_paths(world: World, label: str, target: str, claim_id: str, sweeper_queries, out) -> None:
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world.token}"}
    hook = spec(world.caller, world.channels[0], world.templates[0], kind="sent", created_at=timezone.now(), n=1000)
    seed([hook])
    endpoint_create(organization=world.caller, url="http://127.0.0.1:9/bench")  # the events path, recorded
    cache.clear()
    paths = {}
    with CaptureQueriesContext(connection) as ctx:
        raw, headers = delivered_body(hook["row"].id)
        client.post(
            "/v1/webhooks/whatsapp",
            data=raw,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=headers["X-Hub-Signature-256"],
        )
    paths["webhook 1,000 + events"] = list(ctx.captured_queries)
    WebhookEndpoint.objects.all().delete()
    cache.clear()
    for name, path, params in (
        ("status GET", f"/v1/messages/bulk/{target}", {}),
        ("list GET", "/v1/messages/bulk", {"limit": 50}),
        ("recipients deep", f"/v1/messages/bulk/{target}/recipients", {"limit": 100, "cursor": cursor_encode(4800)}),
    ):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(path, params, **auth).status_code == 200
        paths[name] = list(ctx.captured_queries)
    with CaptureQueriesContext(connection) as ctx:
        claims.channel_claim_next(channel_id=world.claim_channel.id)
    paths["claim"] = list(ctx.captured_queries)
    paths.update(overview_queries(operator=world.operator, organization_id=world.caller.id))
    with CaptureQueriesContext(connection) as ctx:
        sweeper_queries()
    paths["sweeper + finalize + retention due"] = list(ctx.captured_queries)

    out.write(f"\n===== {label} =====\n")
    flagged = []
    small_scans = 0
    for name, queries in paths.items():
        for q in queries:
            sql = q["sql"]
            head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            if head not in ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH"):
                continue
            with connection.cursor() as cursor:
                try:
                    cursor.execute("EXPLAIN " + sql)
                except Exception as exc:  # noqa: BLE001 - a statement EXPLAIN cannot take; noted, not fatal
                    out.write(f"[{name}] (not explained: {exc})\n{sql[:300]}\n")
                    continue
                plan = "\n".join(row[0] for row in cursor.fetchall())
            out.write(f"--- [{name}] {sql[:400]}\n{plan}\n")
            if "Seq Scan on broadcasts_send" in plan:
                flagged.append(f"{name}: Seq Scan on broadcasts_send: {sql[:120]}")
            small_scans += "Seq Scan on broadcasts_broadcast" in plan
    print(
        f"  EXPLAIN [{label}]: {sum(len(q) for q in paths.values())} statements;"
        f" {len(flagged)} read the sends table whole; {small_scans} scan the broadcasts table"
    )
    for line in flagged:
        print("    !", line)


def table_stats() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM broadcasts_send")
        sends = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('broadcasts_send'))")
        size = cursor.fetchone()[0]
    return f"{sends:,} sends, {Broadcast.objects.count():,} broadcasts, broadcasts_send {size} with indexes"


def main() -> None:
    call_command("migrate", verbosity=0)
    world = World()
    now = timezone.now()
    EXPLAIN_PATH.parent.mkdir(exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    with EXPLAIN_PATH.open("w") as explain_out, gunicorn(workers=2) as (base, _server):
        # small: the caller's 50 finished broadcasts, a steady state (ANALYZEd)
        small = [
            spec(
                world.caller,
                world.channels[0],
                world.templates[0],
                kind="done",
                created_at=now - timedelta(days=60, minutes=k),
            )
            for k in range(CALLER_BROADCASTS)
        ]
        for s in small:
            s["row"].campaign_name = "seed done"
        took = seed(small)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
            cursor.execute("CHECKPOINT")
        print(f"small: {table_stats()} (seeded in {took:.1f} s)")
        results["small"] = measure(world, base, "small", explain_out)

        # 10M: the other organizations' 1,950 broadcasts, COPYed with autovacuum off: no ANALYZE after the load
        with connection.cursor() as cursor:
            for table in ("broadcasts_send", "broadcasts_broadcast"):
                cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        big = []
        others = BROADCASTS - CALLER_BROADCASTS
        for k in range(others):
            org_k = 1 + k % (ORGS - 1)
            kind = "pending" if k < PENDING_BROADCASTS else "done"
            created = now - timedelta(days=180) + timedelta(minutes=k * 120)
            big.append(
                spec(world.orgs[org_k], world.channels[org_k], world.templates[org_k], kind=kind, created_at=created)
            )
        took = seed(big)
        with connection.cursor() as cursor:
            # The load's dirty pages written out now, not during the measurements (that is I/O, not plans).
            cursor.execute("CHECKPOINT")
        print(
            f"10M: {table_stats()}; COPY of {others * PER:,} sends took {took:.0f} s"
            f" ({others * PER / took:,.0f} rows/s)"
        )
        results["10M after COPY"] = measure(world, base, "10M after COPY (no ANALYZE)", explain_out)

        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE broadcasts_send")
            cursor.execute("ANALYZE broadcasts_broadcast")
            for table in ("broadcasts_send", "broadcasts_broadcast"):
                cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
        print(f"ANALYZE took {time.perf_counter() - started:.1f} s")
        results["10M after ANALYZE"] = measure(world, base, "10M after ANALYZE", explain_out)

        # Retention at 10M: one 5,000-send broadcast that ended 91 days ago, purged in batches of 5,000.
        old = (
            Broadcast.objects.filter(status=BroadcastStatus.COMPLETED, purged_at__isnull=True)
            .exclude(organization=world.caller)
            .order_by("created_at")
            .first()
        )
        Broadcast.objects.filter(id=old.id).update(completed_at=now - timedelta(days=91))
        started = time.perf_counter()
        done = retention.broadcast_sends_purge(broadcast_id=old.id)
        purge_ms = (time.perf_counter() - started) * 1000

    print(f"\nbench_scale: median of {RUNS} runs; gunicorn 2 sync workers; PostgreSQL + Redis on this machine")
    names = list(results["small"])
    print(f"  {'figure':34s} {'small':>9s} {'10M COPY':>9s} {'ratio':>6s} {'10M ANALYZE':>11s} {'ratio':>6s}  target")
    all_ok = True
    for name in names:
        small_v = results["small"][name]
        row = f"  {name:34s} {small_v:8.1f}ms"
        ok = True
        for state in ("10M after COPY", "10M after ANALYZE"):
            v = results[state][name]
            ok = ok and (v <= small_v * 1.2 or v <= small_v + 10)
            row += (
                f" {v:8.1f}ms {v / small_v:5.2f}x" if state == "10M after COPY" else f" {v:10.1f}ms {v / small_v:5.2f}x"
            )
        if name.startswith("webhook"):
            ok = ok and max(results[s][name] for s in results) < 60
        if name.startswith("admin overview"):
            ok = ok and max(results[s][name] for s in results) < 100
        all_ok = all_ok and ok
        print(row + ("  met" if ok else "  NOT met"))
    print(f"  retention purge of one broadcast's 5,000 sends at 10M: {purge_ms:.0f} ms ({done})")
    print(f"  EXPLAIN plans: {EXPLAIN_PATH}")
    print(
        "targets (each within 1.2x or +10 ms of small; webhook p50 < 60 ms; admin overview < 100 ms):",
        "met" if all_ok else "NOT met",
    )


if __name__ == "__main__":
    main()
