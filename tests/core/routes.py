"""Every route of the URLconf under /v1/, found by walking it: suites that must cover every endpoint (the body
limit, the envelope for every method) cover one added later without being touched."""

import re
from collections.abc import Callable, Iterator

from django.urls import URLPattern, URLResolver, get_resolver

from tests.core.hostile import UNKNOWN_ID

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# What stands for the catch-all (a regular expression, not a path): a path no other route takes.
UNROUTED = "/v1/no/such/endpoint"
_CONVERTER = re.compile(r"<[^>]+>")


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, Callable]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_routes() -> list[tuple[str, type | None]]:
    """(path, view class) of every route under /v1/, path arguments filled with an id that names nothing; the
    catch-all (a function) as ``(UNROUTED, None)``."""
    found = []
    for route, callback in _walk(get_resolver().url_patterns):
        if not route.startswith("v1"):
            continue
        view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
        found.append((UNROUTED, None) if view_class is None else ("/" + _CONVERTER.sub(UNKNOWN_ID, route), view_class))
    return sorted(set(found), key=lambda item: item[0])


def handled_methods(view_class: type | None) -> set[str]:
    """The methods a view answers itself (the catch-all: every one)."""
    if view_class is None:
        return set(METHODS)
    return (
        {m for m in METHODS if hasattr(view_class, m.lower())}
        | {"OPTIONS"}
        | ({"HEAD"} if hasattr(view_class, "get") else set())
    )
