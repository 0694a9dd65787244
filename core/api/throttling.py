"""Per-token request limits (docs/api.md: ``API_RATE_LIMITS``, default ``60/min,1000/hour``).

Fixed-window counters in the Django cache (Redis in production), one per window, so every web
process shares them. The setting is read at each request: a deploy (or a test) can change it
without a restart. Requests without a token (health, schema, docs, Meta's webhooks) are not
counted here: they have no token to count against.

What was counted is left on the request for the ``RateLimit-Policy`` / ``RateLimit`` headers
(IETF draft-ietf-httpapi-ratelimit-headers, structured-field form; core.middleware adds them):

    RateLimit-Policy: "min";q=60;w=60, "hour";q=1000;w=3600
    RateLimit: "min";r=57;t=42

``RateLimit`` is the tightest window: the fewest requests left (``r``), then the longest wait until
its window starts over (``t``, seconds). With Redis, counting every window is one round trip.
"""

import re
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
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


# The Django request attribute holding the windows counted for it (read by core.middleware).
REQUEST_ATTRIBUTE = "rate_limit_windows"
_WINDOW_NAMES = {1: "sec", 60: "min", 3600: "hour", 86400: "day"}


@dataclass(frozen=True)
class WindowCount:
    """One limit's window as this request left it."""

    limit: int
    window: int  # seconds
    used: int  # requests counted in the current window (this one included when it was allowed)
    reset: float  # seconds until the window starts over

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


def _key(token_pk: Any, window: int, slot: int) -> str:
    return f"throttle:token:{token_pk}:{window}:{slot}"


def _redis_client(key: str) -> Any | None:
    """The raw client behind Django's Redis cache (one pipeline for every window), or None for other caches."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(key, write=True)
    return None


def _windows(now: float) -> list[tuple[int, int, int, float]]:
    """(limit, window, slot, reset) for every configured limit at ``now``."""
    out = []
    for limit, window in rate_limits_parse(settings.API_RATE_LIMITS):
        slot = int(now // window)
        out.append((limit, window, slot, (slot + 1) * window - now))
    return out


def _count(token_pk: Any, windows: list[tuple[int, int, int, float]]) -> tuple[list[int], list[str], Any]:
    """Counts one request in every window: (used per window, the keys, the client or None)."""
    keys = [_key(token_pk, window, slot) for _limit, window, slot, _reset in windows]
    client = _redis_client(keys[0]) if keys else None
    if client is not None:
        made = [cache.make_and_validate_key(k) for k in keys]
        pipe = client.pipeline(transaction=False)
        for key, (_limit, window, _slot, _reset) in zip(made, windows, strict=True):
            # SET NX EX then INCR: the key expires with its window; as cache.add() + cache.incr() in one trip.
            pipe.set(key, 0, ex=window + 1, nx=True)
            pipe.incr(key)
        results = pipe.execute()
        return [int(n) for n in results[1::2]], made, client
    used = []
    for key, (_limit, window, _slot, _reset) in zip(keys, windows, strict=True):
        cache.add(key, 0, timeout=window + 1)
        try:
            used.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window + 1)
            used.append(1)
    return used, keys, None


def _give_back(keys: list[str], client: Any) -> None:
    if client is not None:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.decr(key)
        pipe.execute()
        return
    for key in keys:
        try:
            cache.decr(key)
        except ValueError:
            pass


def rate_limit_peek(token_pk: Any) -> list[WindowCount]:
    """The token's windows as they stand, counting nothing (one read)."""
    windows = _windows(time.time())
    keys = [_key(token_pk, window, slot) for _limit, window, slot, _reset in windows]
    found = cache.get_many(keys)
    return [
        WindowCount(limit=limit, window=window, used=int(found.get(key) or 0), reset=reset)
        for key, (limit, window, _slot, reset) in zip(keys, windows, strict=True)
    ]


def rate_limit_headers(windows: list[WindowCount]) -> dict[str, str]:
    """``RateLimit-Policy`` (every limit) and ``RateLimit`` (the tightest) for these windows."""
    if not windows:
        return {}

    def name(window: int) -> str:
        return _WINDOW_NAMES.get(window, f"{window}s")

    policy = ", ".join(f'"{name(w.window)}";q={w.limit};w={w.window}' for w in windows)
    tightest = min(windows, key=lambda w: (w.remaining, -w.reset))
    # Rounded up as Retry-After is (core.api.exception_handler), so a 429's t and Retry-After agree.
    reset = max(1, int(tightest.reset + 0.999))
    return {
        "RateLimit-Policy": policy,
        "RateLimit": f'"{name(tightest.window)}";r={tightest.remaining};t={reset}',
    }


class TokenRateThrottle(BaseThrottle):
    """Counts each authenticated request in every window; rejected requests are given back."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if token is None or getattr(view, "token_throttle", True) is False or _is_docs(view):
            return True
        windows = _windows(time.time())
        if not windows:
            return True
        used, keys, client = _count(token.pk, windows)
        waits = [reset for (limit, _w, _s, reset), n in zip(windows, used, strict=True) if n > limit]
        if waits:
            _give_back(keys, client)
            used = [n - 1 for n in used]
            self._wait = max(waits)
        setattr(
            request._request,
            REQUEST_ATTRIBUTE,
            [
                WindowCount(limit=limit, window=window, used=n, reset=reset)
                for (limit, window, _slot, reset), n in zip(windows, used, strict=True)
            ],
        )
        return not waits

    def wait(self) -> float | None:
        return self._wait
