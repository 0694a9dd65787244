"""Customer webhook endpoints (docs/api.md): URL rules, registration, enabling and disabling, and the
cached list of active endpoints every publisher reads.

A URL is accepted when it is http(s) with a host whose every address is public (unless WEBHOOKS_ALLOW_PRIVATE);
the transport (``events/transport.py``) resolves and checks the host again on every attempt, with these rules.
"""

import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, ConflictError, NotFoundError
from events import queue
from events.models import DeliveryStatus, EventDelivery, EventType, WebhookEndpoint
from events.signing import secret_generate
from tokens.models import Organization

logger = logging.getLogger(__name__)

# The types an endpoint can subscribe to: every type but ``ping``, which goes only on request, to one endpoint.
EVENT_TYPES: tuple[str, ...] = tuple(t for t in EventType.values if t != EventType.PING)
ACTIVE_ENDPOINTS_CACHE_KEY = "events:active-endpoints:v1"
ACTIVE_ENDPOINTS_CACHE_SECONDS = 60
ADDRESS_REFUSED = "The URL's host does not resolve to a public address (private, loopback, link-local or reserved)."


@dataclass(frozen=True)
class IssuedEndpoint:
    endpoint: WebhookEndpoint
    secret: str  # shown once, in the 201 answer


@dataclass(frozen=True)
class EndpointRef:
    """What the publisher needs of an active endpoint; small enough to cache for every org."""

    id: str
    organization_id: int
    events: tuple[str, ...]

    def subscribes_to(self, event_type: str) -> bool:
        return not self.events or event_type in self.events


# IPv6 forms that carry an IPv4 address which the network may translate to and reach: they are judged by that
# IPv4 address, or ``[64:ff9b::10.0.0.1]`` would reach a private host through a NAT64 gateway.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: the operator picks the prefix length
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ``::a.b.c.d``


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address may stand for (IPv4-mapped, 6to4, NAT64, IPv4-compatible); [] if none."""
    value = int(ip)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _NAT64_WELL_KNOWN:
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]
    if ip in _NAT64_LOCAL_USE:
        # A /96 prefix (the last 32 bits) or a /48 one (RFC 6052: bits 48-63 and 72-87, around the zero u-octet):
        # both readings must be public.
        split = ((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF)
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF), ipaddress.IPv4Address(split)]
    if ip in _IPV4_COMPATIBLE and value > 1:  # :: and ::1 are judged as themselves
        return [ipaddress.IPv4Address(value)]
    return []


def _address_is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded:
            return all(v4.is_global and not v4.is_multicast for v4 in embedded)
    return ip.is_global and not ip.is_multicast


def endpoint_url_resolve(*, host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (TCP), in the resolver's order, without repeats; [] when it does not."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return list(dict.fromkeys(info[4][0] for info in infos))


def addresses_refusal(*, host: str, addresses: Sequence[str]) -> str | None:
    """Why these resolved addresses may not be posted to, or None (always None with WEBHOOKS_ALLOW_PRIVATE)."""
    if not addresses:
        return f"The host '{host}' does not resolve."
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    # Every address counts: a name with one public and one private address could be steered to either. The
    # message never names the address: it would turn registration and ping into a lookup service for our own DNS.
    if not all(_address_is_public(a) for a in addresses):
        return ADDRESS_REFUSED
    return None


def endpoint_url_check_addresses(*, host: str, port: int, allow_unresolvable: bool = False) -> str | None:
    """Resolves ``host``; returns why it is refused (private, loopback, ...) or None when public.

    ``allow_unresolvable`` is for registration: a name that does not resolve yet (new DNS record,
    resolver down) is accepted, because every delivery attempt resolves and checks it again, and then
    connects to exactly the address it checked (see delivery_post).
    """
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return None
    addresses = endpoint_url_resolve(host=host, port=port)
    if not addresses and allow_unresolvable:
        return None
    return addresses_refusal(host=host, addresses=addresses)


def endpoint_url_validate(*, url: Any) -> str:
    """An http(s) URL with a host, whose every address is public unless WEBHOOKS_ALLOW_PRIVATE."""

    def invalid(message: str) -> ApplicationError:
        return ApplicationError("The webhook URL is not acceptable.", details={"url": [message]})

    if not isinstance(url, str) or not url.strip():
        raise invalid("A URL is required.")
    url = url.strip()
    if len(url) > 2048:
        raise invalid("The URL is longer than 2048 characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid(f"Not a valid URL: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise invalid("The URL must use http or https.")
    if not parts.hostname:
        raise invalid("The URL must have a host.")
    reason = endpoint_url_check_addresses(
        host=parts.hostname, port=port or (443 if parts.scheme == "https" else 80), allow_unresolvable=True
    )
    if reason:
        raise invalid(reason)
    return url


def endpoint_events_validate(*, events: Any) -> list[str]:
    """A list of known event types, without repeats; empty or omitted means every type."""
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ApplicationError("Invalid events.", details={"events": ["Must be a list of event type strings."]})
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ApplicationError(
            "Invalid events.",
            details={"events": [f"Unknown event type '{e}'. Known: {', '.join(EVENT_TYPES)}." for e in unknown]},
        )
    return list(dict.fromkeys(events))


def _active_endpoints_invalidate() -> None:
    try:
        cache.delete(ACTIVE_ENDPOINTS_CACHE_KEY)
    except Exception as exc:  # noqa: BLE001 - Redis down: the cached list expires by itself within its TTL
        logger.warning("events: could not invalidate the active-endpoints cache (%s)", exc)


def _active_endpoints_changed() -> None:
    # Now (this process sees its own change at once) and again after commit, so that a reader
    # that re-cached the old list before our commit does not keep it for a whole TTL.
    _active_endpoints_invalidate()
    transaction.on_commit(_active_endpoints_invalidate)


def endpoints_cap_check(*, organization_id: int) -> None:
    """ConflictError when the organization has WEBHOOK_ENDPOINTS_MAX endpoints (deleted ones do not count)."""
    limit = int(settings.WEBHOOK_ENDPOINTS_MAX)
    count = WebhookEndpoint.objects.filter(organization_id=organization_id, deleted_at__isnull=True).count()
    if count >= limit:
        raise ConflictError(
            f"The organization has {count} webhook endpoints, the most allowed; delete one first.",
            details={"limit": limit},
        )


def endpoint_create(*, organization: Organization, url: Any, events: Any = None) -> IssuedEndpoint:
    clean_url = endpoint_url_validate(url=url)
    clean_events = endpoint_events_validate(events=events)
    secret = secret_generate()
    with transaction.atomic():
        # The organization's row lock serialises its creations: two at once cannot both see room for one more.
        Organization.objects.select_for_update().filter(pk=organization.pk).values_list("pk", flat=True).first()
        endpoints_cap_check(organization_id=organization.pk)
        endpoint = WebhookEndpoint.objects.create(
            organization=organization, url=clean_url, events=clean_events, secret=secret
        )
    _active_endpoints_changed()
    return IssuedEndpoint(endpoint=endpoint, secret=secret)


def endpoint_secret_rotate(*, endpoint_id: str, organization: Organization | None = None) -> IssuedEndpoint:
    """A new signing secret (returned once). The one it replaces keeps signing beside it (both signatures on every
    POST) for SECRET_ROTATION_OVERLAP_SECONDS, then stops. Only one previous secret is kept: rotating again during
    an overlap ends the older secret's overlap at once. ``organization`` None: any organization's (the admin)."""
    overlap = timedelta(seconds=max(0, int(settings.SECRET_ROTATION_OVERLAP_SECONDS)))
    with transaction.atomic():
        endpoints = WebhookEndpoint.objects.select_for_update().filter(id=endpoint_id, deleted_at__isnull=True)
        if organization is not None:
            endpoints = endpoints.filter(organization=organization)
        endpoint = endpoints.first()
        if endpoint is None:
            raise NotFoundError("Webhook endpoint not found.")
        now = timezone.now()
        secret = secret_generate()
        endpoint.previous_secret = endpoint.secret if overlap else None
        endpoint.previous_secret_expires_at = now + overlap if overlap else None
        endpoint.secret = secret
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    logger.info("events: signing secret of endpoint %s rotated (overlap %d s)", endpoint.id, overlap.total_seconds())
    return IssuedEndpoint(endpoint=endpoint, secret=secret)


def endpoint_delete(*, organization: Organization, endpoint_id: str) -> None:
    """Soft delete: the endpoint disappears for the customer and its pending deliveries are dropped."""
    now = timezone.now()
    changed = WebhookEndpoint.objects.filter(id=endpoint_id, organization=organization, deleted_at__isnull=True).update(
        deleted_at=now, is_active=False
    )
    if not changed:
        raise NotFoundError("Webhook endpoint not found.")
    EventDelivery.objects.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, last_error="Endpoint deleted.", locked_until=None
    )
    _active_endpoints_changed()


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Re-enables a disabled endpoint (admin action): its failure streak starts again from zero."""
    WebhookEndpoint.objects.filter(id=endpoint.id, deleted_at__isnull=True).update(
        is_active=True, disabled_at=None, disabled_reason="", consecutive_failures=0
    )
    _active_endpoints_changed()
    transaction.on_commit(lambda: queue.delivery_enqueue(endpoint.id), robust=True)


def endpoint_disable(*, endpoint_id: str, reason: str) -> None:
    WebhookEndpoint.objects.filter(id=endpoint_id, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:255]
    )
    _active_endpoints_changed()


def endpoints_active() -> list[EndpointRef]:
    """Every active endpoint of every organization: one cached query, shared by all processes.

    The cache is only a shortcut: with Redis down the list comes from the database, so events are still
    recorded (an outcome's events must never be lost to a Redis blip)."""
    try:
        cached = cache.get(ACTIVE_ENDPOINTS_CACHE_KEY)
    except Exception as exc:  # noqa: BLE001
        logger.warning("events: active-endpoints cache unavailable, reading the database (%s)", exc)
        cached, cache_up = None, False
    else:
        cache_up = True
    if cached is not None:
        return [EndpointRef(id=i, organization_id=o, events=tuple(e)) for i, o, e in cached]
    rows = list(
        WebhookEndpoint.objects.filter(is_active=True, deleted_at__isnull=True).values_list(
            "id", "organization_id", "events"
        )
    )
    if cache_up:
        try:
            cache.set(ACTIVE_ENDPOINTS_CACHE_KEY, rows, ACTIVE_ENDPOINTS_CACHE_SECONDS)
        except Exception as exc:  # noqa: BLE001
            logger.warning("events: could not cache the active endpoints (%s)", exc)
    return [EndpointRef(id=i, organization_id=o, events=tuple(e or ())) for i, o, e in rows]
