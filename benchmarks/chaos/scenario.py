"""The seeded schedule: the organizations and channels, then every traffic action and every fault, with its time.

Everything random comes from one `random.Random(seed)` here, before anything runs: the same seed gives the same
schedule (what then happens in what order still depends on timing).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

# About 50,000 sends in an hour, scaled with the duration.
SENDS_PER_SECOND = 50_000 / 3600
# Traffic is created in the first 80 % of the run and faults start in the first 70 %: the rest drains.
TRAFFIC_END, FAULTS_END = 0.80, 0.70
# One fault begins every this many seconds on average (they overlap: several at once).
FAULT_EVERY_SECONDS = 11.0
FAULT_KINDS = {
    # kind: weight
    "kill_worker": 4,
    "kill_web": 2,
    "kill_beat": 1,
    "kill_sandbox": 1,
    "redis_restart": 1,
    "redis_flush": 1,
    "postgres_restart": 1,
    "sandbox_5xx": 2,
    "sandbox_hang": 1,
    "sandbox_slow": 1,
    "status_duplicates": 2,
    "status_burst": 2,
    "clock_skew": 1,
}
TEMPLATES = {"welcome_v2": "MARKETING", "aviso_chaos": "UTILITY"}
TEMPLATE_BODY = "Hola {{nombre}}, tu saldo es {{monto}}"
# The organization whose messaging limit binds (250 numbers per MESSAGING_LIMIT_WINDOW_SECONDS, 60 s here).
LIMITED_ORG, LIMITED_LIMIT = "chaos-d", 250
ORGS = {
    # organization: [(phone_number_id, max_mps)], one WABA (portfolio) per organization
    "chaos-a": [("310000000000001", 40), ("310000000000002", 10)],
    "chaos-b": [("320000000000001", 80), ("320000000000002", 5)],
    "chaos-c": [("330000000000001", 20)],
    LIMITED_ORG: [("340000000000001", 30)],
}
POOL_SIZE = 150  # numbers each organization sends to again and again (suppressions act on these)


@dataclass
class Action:
    at: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "kind": self.kind, **self.params}


def waba_of(org: str) -> str:
    return f"9{sorted(ORGS).index(org) + 1:014d}"


def pool_number(org: str, n: int) -> str:
    return f"+57301{sorted(ORGS).index(org)}{n:06d}"


@dataclass
class Scenario:
    seed: int
    duration: float
    traffic: list[Action]
    faults: list[Action]

    def digest(self) -> str:
        text = json.dumps([a.as_dict() for a in self.traffic + self.faults], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def planned_sends(self) -> int:
        return sum(a.params["size"] for a in self.traffic if a.kind == "create")


def build(seed: int, duration: float, *, skew_available: bool) -> Scenario:
    rng = random.Random(seed)
    traffic = _traffic(rng, duration)
    faults = _faults(rng, duration, skew_available=skew_available)
    return Scenario(seed=seed, duration=duration, traffic=traffic, faults=faults)


def _traffic(rng: random.Random, duration: float) -> list[Action]:
    end = duration * TRAFFIC_END
    target = int(SENDS_PER_SECOND * duration)
    channels = [(org, phone, mps) for org, items in sorted(ORGS.items()) for phone, mps in items]
    actions: list[Action] = []
    planned, created, fresh = 0, 0, 0
    # Creates spread evenly over the traffic window, each at a seeded jitter.
    while planned < target:
        # The limited organization gets twice its share: its 250 numbers a minute must bind now and then.
        weights = [(mps + 10) * (2 if org == LIMITED_ORG else 1) for org, _, mps in channels]
        org, phone, mps = rng.choices(channels, weights=weights)[0]
        # Big enough to queue, small enough that its channel drains it within ~15 % of the run.
        most = max(5, int(mps * duration * 0.15))
        if org == LIMITED_ORG:
            most = min(most, 200)
        small, medium, large = rng.randint(1, 10), rng.randint(10, 100), rng.randint(100, 600)
        size = min(most, rng.choices([small, medium, large], weights=[5, 4, 1])[0])
        size = max(1, min(size, target - planned + 1))
        pooled = min(size, rng.randint(0, max(1, size // 5)))
        recipients = {"fresh_start": fresh, "fresh": size - pooled, "pool": rng.sample(range(POOL_SIZE), pooled)}
        fresh += size - pooled
        params = {
            "org": org,
            "phone": phone,
            "template": rng.choice(list(TEMPLATES)),
            "size": size,
            "scheduled_in": rng.choice([0, 0, 0, 0, rng.uniform(15, 35)]),
            "ref": created,
            **recipients,
        }
        actions.append(Action(at=0.0, kind="create", params=params))
        planned += size
        created += 1
    for n, action in enumerate(actions):
        action.at = end * (n + rng.random()) / len(actions)
    steering = int(duration / 6)
    for _ in range(steering):
        at = rng.uniform(2, end)
        # A target among the broadcasts created before `at` (resolved to an id at run time).
        before = sum(1 for a in actions if a.kind == "create" and a.at < at)
        kind = rng.choices(
            ["cancel", "pause", "retry", "dry_run", "suppress", "unsuppress", "poll", "webhook_failing", "idem"],
            weights=[2, 3, 2, 2, 3, 2, 4, 1, 1],
        )[0]
        org = rng.choice(sorted(ORGS))
        params: dict[str, Any] = {"org": org}
        if kind in ("cancel", "pause", "retry", "poll") and before:
            # One of the latest few: steering acts on broadcasts that are still running.
            params["ref"] = before - 1 - rng.randrange(min(before, 4))
        elif kind in ("cancel", "pause", "retry", "poll"):
            continue
        if kind == "pause":
            params["resume_after"] = rng.uniform(2, 15)
        if kind in ("suppress", "unsuppress"):
            params["number"] = pool_number(org, rng.randrange(POOL_SIZE))
        if kind in ("dry_run", "idem"):
            org, phone, _ = rng.choice(channels)
            params.update(org=org, phone=phone, size=rng.randint(1, 50))
        if kind == "webhook_failing":
            params["mode"] = rng.choice(["500", "slow"])
        actions.append(Action(at=at, kind=kind, params=params))
    actions.sort(key=lambda a: a.at)
    return actions


def _faults(rng: random.Random, duration: float, *, skew_available: bool) -> list[Action]:
    faults: list[Action] = []
    at = rng.uniform(5, 10)
    kinds, weights = zip(*FAULT_KINDS.items(), strict=True)
    while at < duration * FAULTS_END:
        kind = rng.choices(kinds, weights=weights)[0]
        params: dict[str, Any] = {"down_for": round(rng.uniform(1, 6), 2)}
        if kind == "kill_worker" or kind == "clock_skew":
            params["worker"] = rng.randint(1, 2)
        if kind in ("sandbox_5xx", "sandbox_hang", "sandbox_slow", "status_duplicates", "status_burst"):
            params["down_for"] = round(rng.uniform(2, 8), 2)
        if kind == "sandbox_5xx":
            params["outcome"] = rng.choice(["http500", "http503", "raw502"])
        if kind == "sandbox_slow":
            params["outcome"] = f"slow:{rng.choice([300, 1500, 7000])}"
        if kind == "clock_skew":
            params["skew"] = rng.choice(["+7s", "-7s", "+45s", "-45s"])
            params["down_for"] = round(rng.uniform(10, 25), 2)
            params["available"] = skew_available
        faults.append(Action(at=at, kind=kind, params=params))
        at += rng.expovariate(1 / FAULT_EVERY_SECONDS)
    return faults
