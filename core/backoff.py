"""Exponential backoff with jitter, shared by the delivery engine and the customer events."""

import random


def backoff_seconds(*, attempts: int, base: float, cap: float, jitter: float) -> float:
    """Delay before attempt ``attempts + 1``: ``base * 2^(attempts-1)`` +-``jitter`` (a fraction: 0.25 spreads it
    over 75-125 %, so retries of many sends do not arrive together), never above ``cap``."""
    delay = base * 2 ** max(0, attempts - 1) * random.uniform(1 - jitter, 1 + jitter)
    return min(cap, delay)
