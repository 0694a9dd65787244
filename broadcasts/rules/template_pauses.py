"""Template health (docs/rules.md): a template Meta paused or disabled pauses every running broadcast of it.

Three ways in, one rule:
- a ``message_template_status_update`` PAUSED or DISABLED (broadcasts/status_updates/inbound.py calls
  ``broadcasts_pause_for_template`` in the webhook's transaction, after the template's own update);
- error 132015 / 132016 in the answer to a POST (the delivery run pauses its broadcast, as on an account-level
  error: whatsapp.errors classes them ``TEMPLATE``, ``pause_reason_for_error`` names the reason);
- the same codes in a ``failed`` status webhook (``broadcasts_pause_for_failed_statuses``).

The paused reason is ``{"code": "template_paused" | "template_disabled", "message"}``. Resume is refused while the
template is not APPROVED (broadcasts/services.py), and a broadcast falling due then is held PAUSED by
lifecycle.broadcasts_start. Costs nothing on the hot path: no gate, since the posting gate (a conditional UPDATE
that passes only while the broadcast is IN_PROGRESS) already stops every POST of a paused broadcast.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from broadcasts import lifecycle
from broadcasts.models import Broadcast, BroadcastStatus, Send
from whatsapp.inbound.statuses import StatusUpdate

# Meta's template status -> the paused_reason code of the broadcasts it pauses.
PAUSING_TEMPLATE_STATUSES: dict[str, str] = {"PAUSED": "template_paused", "DISABLED": "template_disabled"}
# Meta's error codes that mean the same at send time (or in a failed status).
PAUSING_ERROR_CODES: dict[str, str] = {"132015": "template_paused", "132016": "template_disabled"}


def pause_reason_for_template(*, status: str, reason: str = "") -> dict[str, str]:
    code = PAUSING_TEMPLATE_STATUSES.get(status, "template_paused")
    message = f"Meta {'disabled' if code == 'template_disabled' else 'paused'} the template ({status})."
    if reason and reason.upper() != "NONE":
        message = f"{message[:-1]}: {reason}."
    return {"code": code, "message": message}


def pause_reason_for_error(*, code: str, message: str) -> dict[str, str]:
    """The paused_reason of a broadcast whose send Meta refused with 132015/132016 (Meta's message kept)."""
    return {"code": PAUSING_ERROR_CODES.get(code, "template_paused"), "message": f"{code}: {message}"}


def broadcasts_pause_for_template(*, template_id: int, status: str, reason: str = "", fence: bool = True) -> list[str]:
    """Pause every PENDING or IN_PROGRESS broadcast of the template when ``status`` is PAUSED or DISABLED; returns
    their ids. Runs in the caller's transaction (the webhook's); each broadcast publishes ``broadcast.paused``
    after commit.

    With ``fence`` the commit is followed by ONE posting fence (lifecycle's 0.4 s wait, whatever the number of
    broadcasts) before the caller returns: the webhook's 2xx then means that no POST of these broadcasts can leave
    any more. Decision: the fence is worth its 0.4 s here, because Meta's template pauses are rare and the webhook
    answers well within Meta's timeout anyway.
    """
    if status not in PAUSING_TEMPLATE_STATUSES:
        return []
    paused_reason = pause_reason_for_template(status=status, reason=reason)
    return _broadcasts_pause(
        Broadcast.objects.filter(template_id=template_id), reason_of=lambda _: paused_reason, fence=fence
    )


def broadcasts_pause_for_failed_statuses(*, statuses: Iterable[StatusUpdate], fence: bool = True) -> list[str]:
    """A ``failed`` status with 132015/132016 pauses its send's broadcast when its metadata.phone_number_id is that
    broadcast's channel (the send itself stays FAILED: Meta had accepted it, and an accepted send is never posted
    again). Returns the paused broadcasts' ids; one indexed
    lookup of those wamids, and nothing at all when no such status came."""
    codes: dict[str, tuple[str, str, str]] = {}
    for update in statuses:
        error = update.first_error
        if update.status == "failed" and error is not None and error.code in PAUSING_ERROR_CODES:
            codes[update.wamid] = (error.code, error.details or error.message or error.title, update.phone_number_id)
    if not codes:
        return []
    reasons: dict[str, dict[str, str]] = {}
    for wamid, broadcast_id, phone_number_id in Send.objects.filter(message_id__in=list(codes)).values_list(
        "message_id", "broadcast_id", "broadcast__channel__phone_number_id"
    ):
        code, message, named = codes[wamid]
        # Only a status of the broadcast's own channel (a missing metadata.phone_number_id names none).
        if named and named == phone_number_id:
            reasons.setdefault(broadcast_id, pause_reason_for_error(code=code, message=message))
    if not reasons:
        return []
    return _broadcasts_pause(
        Broadcast.objects.filter(id__in=list(reasons)), reason_of=lambda b: reasons[b.id], fence=fence
    )


def _broadcasts_pause(queryset, *, reason_of, fence: bool) -> list[str]:
    paused: list[str] = []
    fenced = not fence
    with transaction.atomic():
        running = queryset.filter(status__in=lifecycle.PAUSABLE_STATUSES).select_for_update().order_by("id")
        for broadcast in running:
            # One fence covers them all: it waits once, after the commit that pauses every one of them.
            needs_fence = not fenced and broadcast.status == BroadcastStatus.IN_PROGRESS
            if lifecycle.broadcast_pause(broadcast=broadcast, reason=reason_of(broadcast), fence=needs_fence):
                paused.append(broadcast.id)
                fenced = fenced or needs_fence
    return paused
