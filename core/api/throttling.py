"""Per-token request limits (CONTRACT 5: ``API_RATE_LIMITS``, default ``60/min,1000/hour``).

Fixed-window counters in the Django cache (Redis in production), one per window, so every web
process shares them. The setting is read at each request: a deploy (or a test) can change it
without a restart. Requests without a token (health, schema, docs, Meta's webhooks) are not
counted here: they have no token to count against.
"""

import re
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*")


def rate_limits_parse(spec: str) -> list[tuple[int, int]]:
    """``"60/min,1000/hour"`` (also ``10/5s``) -> [(60, 60), (1000, 3600)] as (requests, seconds)."""
    limits = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _RATE.fullmatch(part.lower())
        if not match or match.group(3) not in _UNITS:
            raise ImproperlyConfigured(f"API_RATE_LIMITS: cannot read {part!r}; use e.g. 60/min,1000/hour.")
        count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), _UNITS[match.group(3)]
        limits.append((count, multiple * unit))
    return limits


def _is_docs(view: Any) -> bool:
    """The schema and docs views answer anyone, token or not: never throttled per token."""
    return any(klass.__module__.startswith("drf_spectacular.") for klass in type(view).__mro__)


class TokenRateThrottle(BaseThrottle):
    """Counts each authenticated request in every window; rejected requests are given back."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if token is None or getattr(view, "token_throttle", True) is False or _is_docs(view):
            return True
        now = time.time()
        counted: list[str] = []
        waits: list[float] = []
        for limit, window in rate_limits_parse(settings.API_RATE_LIMITS):
            slot = int(now // window)
            key = f"throttle:token:{token.pk}:{window}:{slot}"
            # add() then incr(): atomic in Redis, and the key expires with its window.
            cache.add(key, 0, timeout=window + 1)
            try:
                used = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window + 1)
                used = 1
            counted.append(key)
            if used > limit:
                waits.append((slot + 1) * window - now)
        if not waits:
            return True
        for key in counted:
            try:
                cache.decr(key)
            except ValueError:
                pass
        self._wait = max(waits)
        return False

    def wait(self) -> float | None:
        return self._wait
