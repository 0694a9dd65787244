"""Scripted outcomes (error injection): what the sandbox does with one send, by name.

A script queues outcomes per recipient (`POST /_sandbox/script`); unscripted sends take the config's default.
"""

from __future__ import annotations

from typing import Any

OUTCOME_HELP = (
    "ok | error:<code> | httpNNN (Meta error body) | rawNNN (non-JSON body) | hang | drop | slow:<ms> | "
    "failed_webhook:<code>"
)

# Outcomes the sandbox decides itself before any script is read (recorded in the arrival log under these names).
REFUSALS = frozenset({"unauthorized", "invalid", "capped", "pair_limited"})


def parse_outcome(outcome: Any) -> tuple[str, int | None]:
    """`("error", 131026)`, `("http", 500)`, `("ok", None)`, ...; raises ValueError for anything unknown."""
    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome must be a non-empty string: {OUTCOME_HELP}")
    if outcome in ("ok", "hang", "drop"):
        return outcome, None
    for prefix in ("error:", "failed_webhook:", "slow:"):
        if outcome.startswith(prefix) and outcome[len(prefix) :].isdecimal():
            return prefix[:-1], int(outcome[len(prefix) :])
    for prefix in ("http", "raw"):
        rest = outcome[len(prefix) :]
        if outcome.startswith(prefix) and rest.isdecimal() and 400 <= int(rest) <= 599:
            return prefix, int(rest)
    raise ValueError(f"unknown outcome {outcome!r}: {OUTCOME_HELP}")


def is_accepted(outcome: str) -> bool:
    """Whether Meta took the message (answered with a wamid): these count towards the rate limits."""
    return outcome in ("ok",) or outcome.startswith(("slow:", "failed_webhook:"))
