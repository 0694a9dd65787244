"""Everything the fake Meta knows: its config, and the state of one run (reset between tests).

Every piece of state lives in the sandbox process on purpose: it stands in for Meta, not for our service.
"""

from __future__ import annotations

import itertools
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sandbox.catalogue import default_templates
from sandbox.outcomes import parse_outcome


@dataclass
class SandboxConfig:
    latency_ms: float = 50.0
    default_outcome: str = "ok"
    phone_mps_cap: int | None = None
    # Meta's pair rate limit (131056): the same recipient again on the same phone number sooner than this.
    pair_rate_limit_ms: float | None = None
    hang_seconds: float = 120.0
    max_recorded: int = 500_000
    webhook_url: str | None = None
    app_secret: str | None = None
    delivered_after_ms: float = 1000.0
    read_after_ms: float = 3000.0
    # A `sent` status this long after each accepted send (Meta posts one first of all); None posts none.
    sent_after_ms: float | None = None
    # phone_number_id -> {"waba_id", "display_phone_number"}: only used to dress the webhooks.
    phone_numbers: dict[str, dict[str, str]] = field(default_factory=dict)
    # Users with a WhatsApp username (numbers or BSUIDs): their status webhooks leave `recipient_id` out.
    username_users: list[str] = field(default_factory=list)
    # Regions whose numbers (and BSUIDs) Meta does not deliver MARKETING templates to: accepted, then a `failed`
    # status with 131049, as Meta does for US numbers.
    marketing_blocked_regions: list[str] = field(default_factory=lambda: ["US"])

    def updated(self, changes: dict[str, Any]) -> SandboxConfig:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        config = replace(self, **changes)
        config.validate()
        return config

    def validate(self) -> None:
        if not isinstance(self.latency_ms, (int, float)) or self.latency_ms < 0:
            raise ValueError("latency_ms must be a number >= 0")
        if not isinstance(self.max_recorded, int) or self.max_recorded < 1:
            raise ValueError("max_recorded must be a positive integer")
        if self.phone_mps_cap is not None and (not isinstance(self.phone_mps_cap, int) or self.phone_mps_cap < 1):
            raise ValueError("phone_mps_cap must be a positive integer or null")
        if self.pair_rate_limit_ms is not None and (
            not isinstance(self.pair_rate_limit_ms, (int, float)) or self.pair_rate_limit_ms <= 0
        ):
            raise ValueError("pair_rate_limit_ms must be a number > 0 or null")
        if self.sent_after_ms is not None and (
            not isinstance(self.sent_after_ms, (int, float)) or self.sent_after_ms < 0
        ):
            raise ValueError("sent_after_ms must be a number >= 0 or null")
        for name in ("hang_seconds", "delivered_after_ms", "read_after_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
        for name in ("username_users", "marketing_blocked_regions"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise ValueError(f"{name} must be a list of non-empty strings")
        if not all(
            len(region) == 2 and region.isalpha() and region.isupper() for region in self.marketing_blocked_regions
        ):
            raise ValueError("marketing_blocked_regions must hold ISO 3166 region codes such as US")
        parse_outcome(self.default_outcome)

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["app_secret"] = "***" if self.app_secret else None
        return data


def digits(number: Any) -> str:
    return "".join(ch for ch in str(number) if ch.isdigit())


# Brazilian area codes whose mobiles kept their ninth digit on WhatsApp; elsewhere the wa_id lacks it.
_BR_NINTH_DIGIT_AREAS = frozenset({11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28})


def wa_id_of(to_digits: str) -> str:
    """The WhatsApp ID Meta answers in `contacts[0].wa_id` for a number, as it differs from E.164 in three
    countries: Mexico's mobiles keep the old "1" after 52 (52 55... -> 521 55...), Argentina's the "9" after 54
    (54 11... -> 549 11...), and Brazil's drop the ninth digit outside area codes 11-19, 21, 22, 24, 27, 28
    (55 92 9xxxx xxxx -> 55 92 xxxx xxxx). Every other number is its own digits."""
    n = to_digits
    if n.startswith("52") and len(n) == 12:
        return f"521{n[2:]}"
    if n.startswith("54") and len(n) == 12:
        return f"549{n[2:]}"
    if n.startswith("55") and len(n) == 13 and n[4] == "9" and int(n[2:4]) not in _BR_NINTH_DIGIT_AREAS:
        return f"55{n[2:4]}{n[5:]}"
    return n


# One record of the arrival log per POST to /messages or /marketing_messages:
# (seq, received_at, phone_number_id, authorization, raw body, outcome, to digits (or the BSUID of a `recipient`
# send), path).
SEQ, RECEIVED_AT, PHONE_NUMBER_ID, AUTHORIZATION, RAW, OUTCOME, TO_DIGITS, PATH = range(8)


class SandboxState:
    """The config in force and what one run remembers; `reset()` starts a new run (a new `generation`)."""

    def __init__(self, config: SandboxConfig):
        config.validate()
        self.initial_config = config
        self.run_id = secrets.token_hex(4)
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        initial = self.initial_config
        self.config = replace(
            initial,
            phone_numbers=dict(initial.phone_numbers),
            username_users=list(initial.username_users),
            marketing_blocked_regions=list(initial.marketing_blocked_regions),
        )
        self.scripts: dict[str, deque[str]] = {}
        # The arrival log. Recording must not cap throughput: one tuple per POST (see SEQ ... TO_DIGITS).
        # Bounded so a long `make run` cannot eat the machine's memory (~0.7 KB a record); the oldest go first.
        self.requests: deque[tuple] = deque(maxlen=self.config.max_recorded)
        self.seq = itertools.count(1)
        self.wamids = itertools.count(1)
        self.cap_windows: dict[str, deque[float]] = defaultdict(deque)
        self.last_accepted: dict[tuple[str, str], float] = {}
        # BSUID -> the number whose send told Meta's answer that BSUID: a BSUID send's statuses name that number.
        self.numbers_by_bsuid: dict[str, str] = {}
        self.templates: dict[str | None, list[dict[str, Any]]] = {None: default_templates()}
        # Status webhooks not posted yet: a heap of (due_at, seq, phone_number_id, status).
        self.webhook_queue: list[tuple[float, int, str, dict[str, Any]]] = []
        self.webhook_seq = itertools.count(1)
        self.webhook_stats = {"posts": 0, "statuses": 0, "failed_posts": 0, "retries": 0}
        # Template name -> Meta error code its sends answer with (132015 paused, 132016 disabled, ...).
        self.template_errors: dict[str, int] = {}
        self.generation += 1

    # ---- scripted outcomes -----------------------------------------------------------------------------------

    def next_outcome(self, to_digits: str) -> str:
        script = self.scripts.get(to_digits)
        if script:
            outcome = script.popleft()
            if not script:
                del self.scripts[to_digits]
            return outcome
        return self.config.default_outcome

    # ---- Meta's rate limits ----------------------------------------------------------------------------------

    def over_cap(self, phone_number_id: str, now: float) -> bool:
        cap = self.config.phone_mps_cap
        if cap is None:
            return False
        window = self.cap_windows[phone_number_id]
        while window and window[0] <= now - 1.0:
            window.popleft()
        return len(window) >= cap

    def pair_limited(self, phone_number_id: str, to_digits: str, now: float) -> bool:
        gap_ms = self.config.pair_rate_limit_ms
        if gap_ms is None:
            return False
        last = self.last_accepted.get((phone_number_id, to_digits))
        return last is not None and now - last < gap_ms / 1000.0

    def count_accepted(self, phone_number_id: str, to_digits: str, now: float) -> None:
        # Only accepted sends count, as Meta counts the messages it takes, not the ones it refuses.
        if self.config.phone_mps_cap is not None:
            self.cap_windows[phone_number_id].append(now)
        if self.config.pair_rate_limit_ms is not None:
            self.last_accepted[(phone_number_id, to_digits)] = now
