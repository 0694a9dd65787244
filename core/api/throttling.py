"""Request limits per token and per organization (docs/api.md: ``API_RATE_LIMITS``, default
``60/min,1000/hour``, and ``API_ORG_RATE_LIMITS``, default ``300/min,5000/hour``).

A request counts against its token's windows and against its organization's: more tokens buy an
organization no more requests. Fixed-window counters in the Django cache (Redis in production),
one per window, so every web process shares them. The settings are read at each request: a deploy
(or a test) can change them without a restart. Requests without a token (health, schema, docs,
Meta's webhooks) are not counted here: they have no token to count against.

What was counted is left on the request for the ``RateLimit-Policy`` / ``RateLimit`` headers
(IETF draft-ietf-httpapi-ratelimit-headers, structured-field form; core.middleware adds them); the
organization's windows are named ``org-``:

    RateLimit-Policy: "min";q=60;w=60, "hour";q=1000;w=3600, "org-min";q=300;w=60, "org-hour";q=5000;w=3600
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
from rest_framework.exceptions import Throttled
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


def rate_limits_parse(spec: str, *, setting: str = "API_RATE_LIMITS") -> list[tuple[int, int]]:
    """``"60/min,1000/hour"`` (also ``10/5s``) -> [(60, 60), (1000, 3600)] as (requests, seconds)."""
    limits = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _RATE.fullmatch(part.lower())
        if not match or match.group(3) not in _UNITS:
            raise ImproperlyConfigured(f"{setting}: cannot read {part!r}; use e.g. 60/min,1000/hour.")
        count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), _UNITS[match.group(3)]
        limits.append((count, multiple * unit))
    return limits


def _is_docs(view: Any) -> bool:
    """The schema and docs views answer anyone, token or not: never throttled per token."""
    return any(klass.__module__.startswith("drf_spectacular.") for klass in type(view).__mro__)


# The Django request attribute holding the windows counted for it (read by core.middleware).
REQUEST_ATTRIBUTE = "rate_limit_windows"
_WINDOW_NAMES = {1: "sec", 60: "min", 3600: "hour", 86400: "day"}


TOKEN = "token"
ORGANIZATION = "org"


@dataclass(frozen=True)
class WindowCount:
    """One limit's window as this request left it."""

    limit: int
    window: int  # seconds
    used: int  # requests counted in the current window (this one included when it was allowed)
    reset: float  # seconds until the window starts over
    scope: str = TOKEN  # whose requests it counts: the token's or its organization's

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class _Window:
    scope: str
    owner: Any  # the token's or the organization's primary key
    limit: int
    window: int
    slot: int
    reset: float

    @property
    def key(self) -> str:
        return f"throttle:{self.scope}:{self.owner}:{self.window}:{self.slot}"


def _redis_client(key: str) -> Any | None:
    """The raw client behind Django's Redis cache (one pipeline for every window), or None for other caches."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(key, write=True)
    return None


def _windows(now: float, *, token_pk: Any, organization_pk: Any) -> list[_Window]:
    """Every configured window of the token, then of its organization, at ``now``."""
    out = []
    specs = [(TOKEN, token_pk, settings.API_RATE_LIMITS, "API_RATE_LIMITS")]
    if organization_pk is not None:
        specs.append((ORGANIZATION, organization_pk, settings.API_ORG_RATE_LIMITS, "API_ORG_RATE_LIMITS"))
    for scope, owner, spec, setting in specs:
        for limit, window in rate_limits_parse(spec, setting=setting):
            slot = int(now // window)
            out.append(_Window(scope, owner, limit, window, slot, (slot + 1) * window - now))
    return out


def _count(windows: list[_Window]) -> tuple[list[int], list[str], Any]:
    """Counts one request in every window: (used per window, the keys, the client or None)."""
    keys = [w.key for w in windows]
    client = _redis_client(keys[0]) if keys else None
    if client is not None:
        made = [cache.make_and_validate_key(k) for k in keys]
        pipe = client.pipeline(transaction=False)
        for key, window in zip(made, windows, strict=True):
            # SET NX EX then INCR: the key expires with its window; as cache.add() + cache.incr() in one trip.
            pipe.set(key, 0, ex=window.window + 1, nx=True)
            pipe.incr(key)
        results = pipe.execute()
        return [int(n) for n in results[1::2]], made, client
    used = []
    for key, window in zip(keys, windows, strict=True):
        cache.add(key, 0, timeout=window.window + 1)
        try:
            used.append(cache.incr(key))
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window.window + 1)
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


def _counted(windows: list[_Window], used: list[int]) -> list[WindowCount]:
    return [
        WindowCount(limit=w.limit, window=w.window, used=n, reset=w.reset, scope=w.scope)
        for w, n in zip(windows, used, strict=True)
    ]


def rate_limit_peek(token_pk: Any, organization_pk: Any = None) -> list[WindowCount]:
    """The token's and its organization's windows as they stand, counting nothing (one read)."""
    windows = _windows(time.time(), token_pk=token_pk, organization_pk=organization_pk)
    found = cache.get_many([w.key for w in windows])
    return _counted(windows, [int(found.get(w.key) or 0) for w in windows])


def rate_limit_headers(windows: list[WindowCount]) -> dict[str, str]:
    """``RateLimit-Policy`` (every limit) and ``RateLimit`` (the tightest) for these windows."""
    if not windows:
        return {}

    def name(w: WindowCount) -> str:
        window = _WINDOW_NAMES.get(w.window, f"{w.window}s")
        return window if w.scope == TOKEN else f"{w.scope}-{window}"

    policy = ", ".join(f'"{name(w)}";q={w.limit};w={w.window}' for w in windows)
    tightest = min(windows, key=lambda w: (w.remaining, -w.reset))
    # Rounded up as Retry-After is (core.api.exception_handler), so a 429's t and Retry-After agree.
    reset = max(1, int(tightest.reset + 0.999))
    return {
        "RateLimit-Policy": policy,
        "RateLimit": f'"{name(tightest)}";r={tightest.remaining};t={reset}',
    }


class RateLimited(Throttled):
    """429 ``rate_limited``, saying whose limit was reached: the token's or its organization's."""

    def __init__(self, *, wait: float, scope: str) -> None:
        whose = "this token" if scope == TOKEN else "this token's organization (all its tokens together)"
        super().__init__(wait=wait, detail=f"Too many requests for {whose}.")
        self.scope = scope


class TokenRateThrottle(BaseThrottle):
    """Counts each authenticated request in every window of its token and of its organization; a refused request
    is given back to every window, so it uses up none of them."""

    def allow_request(self, request: Request, view: Any) -> bool:
        token = request.auth
        if token is None or getattr(view, "token_throttle", True) is False or _is_docs(view):
            return True
        windows = _windows(time.time(), token_pk=token.pk, organization_pk=getattr(token, "organization_id", None))
        if not windows:
            return True
        used, keys, client = _count(windows)
        over = [(w.reset, w.scope) for w, n in zip(windows, used, strict=True) if n > w.limit]
        if over:
            _give_back(keys, client)
            used = [n - 1 for n in used]
        setattr(request._request, REQUEST_ATTRIBUTE, _counted(windows, used))
        if over:
            # The longest wait of any window over its limit; named after the organization when it is one of them.
            wait = max(reset for reset, _scope in over)
            raise RateLimited(wait=wait, scope=ORGANIZATION if any(s == ORGANIZATION for _r, s in over) else TOKEN)
        return True
