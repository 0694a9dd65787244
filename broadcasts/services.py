"""Writes of the bulk API: create a broadcast, cancel, pause and resume it.

The API and the admin call these: each finds the broadcast for the organization under its row lock, asks
broadcasts/lifecycle.py for the transition (the one definition of its allowed source states and of what it does
to the sends) and turns a refusal into a ConflictError. The delivery engine calls lifecycle directly.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from broadcasts import lifecycle, pricing
from broadcasts.bulk_requests import broadcast_estimate, bulk_request_check, template_needed_variables
from broadcasts.idempotency import (
    HEADER,
    idempotency_cutoff,
    idempotency_key_validate,
    idempotency_replay,
    request_hash,
)
from broadcasts.models import Broadcast, BroadcastStatus, IdempotencyRecord, Send, SendStatus
from broadcasts.notifications import message_events_publish
from broadcasts.queue import enqueue_dispatch
from broadcasts.rollups import activity_add
from broadcasts.selectors import broadcast_get_for_update
from broadcasts.send_rows import MISSING_VARIABLES, send_rows, sends_insert
from broadcasts.validation.request import campaign_name_default
from broadcasts.validation.scheduling import parse_scheduled_at
from core.errors import ApplicationError, ConflictError
from core.ids import object_id
from core.timefmt import iso_utc
from templates_registry.models import Template
from tokens.models import AccessToken, Organization

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BroadcastCreateResult:
    body: dict[str, Any]  # the 202 body
    replayed: bool  # True when an Idempotency-Key matched an earlier request


def broadcast_create(
    *,
    organization: Organization,
    body: Any,
    token: AccessToken | None = None,
    idempotency_key: str | None = None,
) -> BroadcastCreateResult:
    """Validate a bulk request completely, then store it in ONE transaction.

    All-or-nothing: any error raises before anything is written. Dispatch is enqueued only
    after commit, so a worker never looks for rows that are not there yet.
    """
    key = idempotency_key_validate(key=idempotency_key)
    body_hash = request_hash(body=body) if key else ""
    if key:
        replay = idempotency_replay(organization=organization, key=key, body_hash=body_hash)
        if replay is not None:
            return BroadcastCreateResult(body=replay, replayed=True)

    now = timezone.now()
    checked = bulk_request_check(organization=organization, body=body, now=now)
    request, channel, template, card = checked.request, checked.channel, checked.template, checked.card
    broadcast_id = object_id()
    campaign_name = request.campaign_name or campaign_name_default(template_name=template.name, now=now)
    rows = send_rows(
        recipients=request.recipients, needed=template_needed_variables(template), send_window=request.send_window
    )
    failed = sum(1 for row in rows if row.missing)
    estimate = broadcast_estimate(
        card=card,
        organization_id=organization.id,
        channel_id=channel.id,
        category=template.category,
        recipients=[r for r, row in zip(request.recipients, rows, strict=True) if not row.missing],
        now=now,
    )
    response = {
        "broadcast_id": broadcast_id,
        "status": BroadcastStatus.PENDING.value,
        "total_recipients": len(rows),
        "scheduled_at": iso_utc(request.scheduled_at),
    }
    try:
        with transaction.atomic():
            broadcast = Broadcast.objects.create(
                id=broadcast_id,
                organization=organization,
                channel=channel,
                template=template,
                created_by_token=token,
                template_name=template.name,
                language=template.language,
                campaign_name=campaign_name,
                total_recipients=len(rows),
                scheduled_at=request.scheduled_at,
                header_media=request.header_media,
                created_at=now,
                # The kept counts, written with the sends (broadcasts/counts.py moves them from here on).
                pending=len(rows) - failed,
                failed=failed,
                rate_card=card,
                cost_currency=card.currency if card is not None else "",
                cost_estimated=estimate.total if estimate is not None else None,
                max_cost=request.max_cost,
                send_window=request.send_window,
            )
            if key:
                # An expired record would block the unique (organization, key) forever.
                IdempotencyRecord.objects.filter(
                    organization=organization, key=key, created_at__lt=idempotency_cutoff(now=now)
                ).delete()
                IdempotencyRecord.objects.create(
                    organization=organization,
                    key=key,
                    request_hash=body_hash,
                    response_body=response,
                    broadcast=broadcast,
                    created_at=now,
                )
            sends_insert(broadcast_id=broadcast_id, rows=rows, now=now)
            if failed:
                # The overview's failures by code (broadcasts/rollups.py): one statement, only with such sends.
                activity_add(now=now, failures=[(broadcast_id, MISSING_VARIABLES)] * failed)
                failed_ids = list(
                    Send.objects.filter(broadcast_id=broadcast_id, status=SendStatus.FAILED).values_list(
                        "id", flat=True
                    )
                )
                transaction.on_commit(lambda: message_events_publish(send_ids=failed_ids, status="FAILED"))
            if request.scheduled_at is None:
                transaction.on_commit(lambda: enqueue_dispatch(broadcast_id))
    except IntegrityError:
        if not key:
            raise
        # A concurrent request with the same key committed first: answer as it did.
        replay = idempotency_replay(organization=organization, key=key, body_hash=body_hash)
        if replay is None:
            raise ConflictError(
                "A request with this Idempotency-Key is being processed; retry shortly.",
                details={HEADER: ["Concurrent request with the same key."]},
            ) from None
        return BroadcastCreateResult(body=replay, replayed=True)
    return BroadcastCreateResult(body=response, replayed=False)


def broadcast_cancel(*, broadcast_id: str, organization: Organization | None = None) -> Broadcast:
    """Cancel a broadcast that has not ended; its pending sends no worker holds become CANCELLED.

    A send a worker holds right now (live lease) is left to that worker, which finds the broadcast
    CANCELLED and cancels it when it has not posted it yet. Returns once no POST can leave any more.
    """
    with transaction.atomic():
        broadcast = broadcast_get_for_update(broadcast_id=broadcast_id, organization=organization)
        if not lifecycle.broadcast_cancel(broadcast=broadcast):
            raise ConflictError(f"The broadcast is already {broadcast.status}; it cannot be cancelled.")
    return broadcast


def broadcast_pause(
    *,
    broadcast_id: str,
    organization: Organization | None = None,
    reason: dict[str, str] | None = None,
) -> Broadcast:
    """PENDING or IN_PROGRESS -> PAUSED; ``reason`` defaults to a manual pause. Returns once no POST can leave
    any more (lifecycle's posting fence)."""
    with transaction.atomic():
        broadcast = broadcast_get_for_update(broadcast_id=broadcast_id, organization=organization)
        if not lifecycle.broadcast_pause(broadcast=broadcast, reason=reason):
            raise ConflictError(f"A {broadcast.status} broadcast cannot be paused.")
    return broadcast


def _template_approved_or_conflict(*, broadcast: Broadcast) -> None:
    """docs/api.md: no resume while the broadcast's template is not APPROVED (Meta paused, disabled ... it)."""
    status = Template.objects.filter(pk=broadcast.template_id).values_list("status", flat=True).first()
    if status != Template.Status.APPROVED:
        raise ConflictError(
            f"The broadcast's template {broadcast.template_name} [{broadcast.language}] is {status}, not APPROVED; "
            "it can be resumed once Meta approves the template again.",
            details={"template_status": [str(status)]},
        )


def broadcast_resume(*, broadcast_id: str, organization: Organization | None = None) -> Broadcast:
    """PAUSED -> IN_PROGRESS (or PENDING when it never started), then wake the workers.

    A scheduled broadcast that is not due yet stays PENDING without dispatch: beat starts it.
    """
    with transaction.atomic():
        broadcast = broadcast_get_for_update(broadcast_id=broadcast_id, organization=organization)
        if broadcast.status == BroadcastStatus.PAUSED:
            _template_approved_or_conflict(broadcast=broadcast)
        if broadcast.status == BroadcastStatus.PAUSED and pricing.budget_exhausted(broadcast=broadcast):
            raise ConflictError(
                "The broadcast reached its max_cost; resuming is not offered. Cancel it, or send the rest in a "
                "new broadcast."
            )
        if not lifecycle.broadcast_resume(broadcast=broadcast):
            raise ConflictError(f"Only a PAUSED broadcast can be resumed; this one is {broadcast.status}.")
        due = broadcast.scheduled_at is None or broadcast.scheduled_at <= timezone.now()
        if broadcast.started_at or due:
            transaction.on_commit(lambda: enqueue_dispatch(broadcast.id))
    return broadcast


# Codes one retry may name: enough for every code of docs/rules.md's table and then some.
RETRY_CODES_MAX = 50
RETRY_CODE_MAX_LENGTH = 64  # the stored error_code's length


# How far ahead a retry may be put off (docs/api.md ``not_before``).
RETRY_NOT_BEFORE_MAX = timedelta(days=30)


def retry_request_validate(*, body: Any, now: datetime) -> tuple[list[str] | None, datetime | None]:
    """(``error_codes``, ``not_before``) of a retry body, every problem reported at once (400).

    ``error_codes``: absent or null = every retryable failure; else a list of 1-50 non-empty strings (codes are
    strings everywhere, docs/api.md); an unknown code is fine: it matches nothing. ``not_before``: absent or null =
    at once; else an ISO 8601 instant with an offset, in the future, at most 30 days ahead."""
    if body is None or body == {}:
        return None, None
    if not isinstance(body, dict):
        raise ApplicationError("The request is invalid; see details.", details={"body": ["Must be an object."]})
    details: dict[str, list[str]] = {
        key: ["Unknown field."] for key in sorted(set(body) - {"error_codes", "not_before"})
    }
    codes = body.get("error_codes")
    problem = None
    if codes is None:
        pass
    elif not isinstance(codes, list) or not codes:
        problem = "Must be a non-empty array of error codes (strings)."
    elif len(codes) > RETRY_CODES_MAX:
        problem = f"At most {RETRY_CODES_MAX} error codes."
    elif not all(isinstance(code, str) and code.strip() for code in codes):
        problem = 'Every error code must be a non-empty string, e.g. "131049".'
    elif any(len(code) > RETRY_CODE_MAX_LENGTH or "\x00" in code for code in codes):
        problem = f"Every error code must be at most {RETRY_CODE_MAX_LENGTH} characters, without NUL."
    if problem is not None:
        details["error_codes"] = [problem]
    not_before, problem = parse_scheduled_at(body.get("not_before"), now=now, max_ahead=RETRY_NOT_BEFORE_MAX)
    if problem is not None:
        details["not_before"] = [problem]
    if details:
        raise ApplicationError("The request is invalid; see details.", details=details)
    return (sorted({code.strip() for code in codes}) if codes is not None else None), not_before


def broadcast_retry(
    *, broadcast_id: str, organization: Organization | None = None, body: Any = None
) -> tuple[Broadcast, int]:
    """Re-queue the broadcast's retryable failures (of the body's ``error_codes``, when given; from its
    ``not_before`` on, when given) and wake the workers; returns the broadcast and how many sends are pending again.
    409 for a CANCELLED or purged broadcast. The dispatch after commit finds nothing due before ``not_before`` and
    schedules the broadcast's wake for then (delivery/dispatch.py)."""
    error_codes, not_before = retry_request_validate(body=body, now=timezone.now())
    with transaction.atomic():
        broadcast = broadcast_get_for_update(broadcast_id=broadcast_id, organization=organization)
        retried = lifecycle.broadcast_retry(broadcast=broadcast, error_codes=error_codes, not_before=not_before)
        if retried is None:
            reason = "its sends were purged" if broadcast.purged_at is not None else f"it is {broadcast.status}"
            raise ConflictError(f"The broadcast cannot be retried: {reason}.")
        if retried and broadcast.status == BroadcastStatus.IN_PROGRESS:
            transaction.on_commit(lambda: enqueue_dispatch(broadcast.id))
    return broadcast, retried
