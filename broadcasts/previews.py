"""The dry run of ``POST /v1/messages/bulk`` (docs/rules.md): every rule of a real request, nothing stored, no call
to Meta; the answer is what the broadcast would cost and how long it would take. MARKETING recipients of
MARKETING_BLOCKED_REGIONS are neither posted nor priced (``estimate.blocked``), like suppressed ones, and so are those
the organization's marketing frequency cap would stop if posted now (``frequency_capped``). The cost is
``bulk_requests.broadcast_estimate``, the same computation that stores a created broadcast's ``cost.estimated``.

The rules of other modules it needs come in as callables, so the arithmetic is tested with fakes:
``suppressed_among`` (numbers on the organization's suppression list: not sent, cost nothing, MARKETING only),
``customer_windows_open`` (numbers whose customer-service window is open: the in-window price) and
``limit_outlook`` (the messaging limit: ``{"limit", "used", "would_wait"}``, plus ``"frees_at"`` when known).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from broadcasts.bulk_requests import (
    SuppressedAmong,
    WindowsOpen,
    broadcast_estimate,
    bulk_request_check,
    consent_suppressed,
    frequency_capped_positions,
    template_needed_variables,
)
from broadcasts.idempotency import idempotency_key_validate
from broadcasts.rules import customer_windows, marketing_regions, messaging_limit
from broadcasts.rules.send_windows import closed_zones_openings, window_eta_seconds
from broadcasts.send_rows import recipients_missing
from broadcasts.time_zones import recipient_zone
from broadcasts.validation.recipients import RecipientInput
from core.timefmt import iso_utc
from tokens.models import Organization

LimitOutlook = Callable[..., dict[str, Any]]


def broadcast_preview(
    *,
    organization: Organization,
    body: Any,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    suppressed_among: SuppressedAmong | None = None,
    customer_windows_open: WindowsOpen = customer_windows.customer_windows_open,
    limit_outlook: LimitOutlook = messaging_limit.outlook,
) -> dict[str, Any]:
    """The 200 body of a dry run; ApplicationError (400) exactly as ``broadcast_create`` would raise it.

    Reads only: no broadcast, no send, no idempotency record (the ``Idempotency-Key`` is checked for its form,
    then ignored: there is nothing to replay)."""
    idempotency_key_validate(key=idempotency_key)
    now = now or timezone.now()
    checked = bulk_request_check(organization=organization, body=body, now=now)
    request, channel, template, card = checked.request, checked.channel, checked.template, checked.card
    missing = recipients_missing(recipients=request.recipients, needed=template_needed_variables(template))
    sent = [r for r, miss in zip(request.recipients, missing, strict=True) if not miss]
    numbers = [r.to for r in sent]
    # Each rule's callable is asked only when it can change the answer.
    suppressed = consent_suppressed(
        organization_id=organization.id, category=template.category, numbers=numbers, suppressed_among=suppressed_among
    )
    blocked = marketing_regions.blocked_among(category=template.category, addresses=numbers)
    capped = frequency_capped_positions(
        organization_id=organization.id, category=template.category, numbers=numbers, suppressed=suppressed, now=now
    )
    to_post = [n for i, n in enumerate(numbers) if n not in suppressed and n not in blocked and i not in capped]
    outlook = limit_outlook(organization_id=organization.id, channel_id=channel.id, numbers=set(to_post), now=now)
    estimate = broadcast_estimate(
        card=card,
        organization_id=organization.id,
        channel_id=channel.id,
        category=template.category,
        recipients=sent,
        now=now,
        suppressed=suppressed,
        capped=capped,
        customer_windows_open=customer_windows_open,
    )
    start = request.scheduled_at or now
    return {
        "dry_run": True,
        "total_recipients": len(request.recipients),
        "missing_variables": sum(missing),
        # Also in the estimate (at no cost); here too, for a dry run without a rate card.
        "frequency_capped": len(capped),
        "estimate": estimate.as_json() if estimate is not None else None,
        "messaging_limit": {
            "limit": outlook.get("limit"),
            "used": outlook.get("used", 0),
            "would_wait": outlook.get("would_wait", 0),
        },
        "eta": iso_utc(
            _window_eta(
                eta=preview_eta(start=start, sends=len(to_post), max_mps=channel.max_mps, outlook=outlook),
                window=request.send_window,
                recipients=[r for r in sent if r.to not in suppressed and r.to not in blocked],
                start=start,
                max_mps=channel.max_mps,
            )
        ),
    }


def _window_eta(
    *,
    eta: datetime | None,
    window: dict[str, Any] | None,
    recipients: list[RecipientInput],
    start: datetime,
    max_mps: int,
) -> datetime | None:
    """``eta`` pushed back by the send window: the sends of the zones closed at ``start`` leave once theirs opens, at
    the cap (the same zones the real request would store: broadcasts/time_zones.py)."""
    if eta is None or window is None:
        return eta
    window_zone = window.get("timezone")
    by_zone = Counter(
        recipient_zone(recipient_zone=r.time_zone, window_zone=window_zone, address=r.to, geographic=r.geographic)
        for r in recipients
    )
    openings = closed_zones_openings(window, by_zone, start)
    return max(eta, start + timedelta(seconds=window_eta_seconds(openings=openings, rate=max_mps, now=start)))


def preview_eta(*, start: datetime, sends: int, max_mps: int, outlook: dict[str, Any]) -> datetime | None:
    """When the last send would leave: the channel's cap paces them from ``start``; sends that the messaging limit
    makes wait leave once it frees room (``frees_at`` when the outlook knows it, else a whole window later: an
    upper bound). None when nothing would be posted."""
    if sends <= 0:
        return None
    waiting = min(int(outlook.get("would_wait") or 0), sends)
    free = sends - waiting
    eta = start + timedelta(seconds=math.ceil(free / max_mps) if free else 0)
    if waiting:
        frees_at = outlook.get("frees_at")
        if not isinstance(frees_at, datetime):
            frees_at = start + timedelta(seconds=getattr(settings, "MESSAGING_LIMIT_WINDOW_SECONDS", 86400))
        eta = max(eta, frees_at) + timedelta(seconds=math.ceil(waiting / max_mps))
    return eta
