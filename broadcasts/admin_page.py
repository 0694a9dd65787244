"""The broadcast's admin page as an operator's cockpit (docs/operations.md): its sends over time as a chart with the
numbers beside it, the funnel, its failures by code with what each means and what to do, cost estimated against
billed, the paused reason with its fix, and a Retry by error code that calls the API's own retry service.

broadcasts/admin.py keeps the ModelAdmin; this module only builds what its change page shows and answers its
Retry form.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.safestring import mark_safe

from broadcasts import activity, lifecycle
from broadcasts.models import Broadcast, BroadcastStatus
from broadcasts.pricing import money
from broadcasts.rules.failure_advice import Fix, advice_for
from broadcasts.services import broadcast_retry
from core.errors import ApplicationError
from core.svg_charts import Series, line_chart

COLOURS = {"sent": "#1565c0", "delivered": "#2e7d32", "read": "#6a1b9a", "failed": "#c62828"}
LABEL_FORMATS = {"second": "%H:%M:%S", "minute": "%H:%M", "hour": "%m-%d %H:00", "day": "%Y-%m-%d"}
UNIT_CAPTIONS = {"second": "per second", "minute": "per minute", "hour": "per hour", "day": "per day"}


def bucket_label(at: datetime, unit: str) -> str:
    return at.strftime(LABEL_FORMATS[unit])


def activity_context(*, broadcast: Broadcast) -> dict[str, Any]:
    """The chart (inline SVG: every text in it is escaped by core.svg_charts) and its numbers as table rows."""
    timeline = activity.broadcast_timeline(broadcast_id=broadcast.id)
    unit = timeline.unit or "minute"
    labels = [bucket_label(at, unit) for at in timeline.buckets]
    first = timeline.buckets[0].strftime("%Y-%m-%d") if timeline.buckets else ""
    chart = line_chart(
        labels=labels,
        series=[Series(name=kind, colour=COLOURS[kind], values=timeline.counts[kind]) for kind in activity.SERIES],
        width=820,
        title=f"Sends of {broadcast.campaign_name or broadcast.id} over time",
        x_caption=f"UTC {first}, {UNIT_CAPTIONS[unit]}" if timeline.buckets else "",
    )
    return {
        "activity_chart": mark_safe(chart),  # every text in it was escaped where it was drawn
        "activity_unit": UNIT_CAPTIONS[unit],
        "activity_rows": [(bucket_label(at, unit), values) for at, values in timeline.rows()],
        "activity_totals": timeline.totals(),
    }


def funnel_context(*, counts: dict[str, int], total: int) -> list[dict[str, Any]]:
    """attempted -> sent -> delivered -> read, each with its share of the step before and a bar (of attempted)."""
    steps = activity.funnel(counts=counts, total=total)
    widest = steps[0].count or 1
    rows = []
    for before, step in zip([None, *steps], steps, strict=False):
        rows.append(
            {
                "name": step.name,
                "count": step.count,
                "rate": step.rate,
                "rate_text": f"{100 * step.rate:.1f}% of {before.name}" if step.rate is not None and before else "",
                "width": f"{100 * step.count / widest:.1f}",
            }
        )
    return rows


def _fix_url(fix: Fix, broadcast: Broadcast) -> str:
    if fix is Fix.CHANNEL:
        return reverse("admin:templates_registry_channel_change", args=[broadcast.channel_id])
    if fix is Fix.TEMPLATE and broadcast.template_id is not None:
        return reverse("admin:templates_registry_template_change", args=[broadcast.template_id])
    return ""


def failures_context(*, broadcast: Broadcast) -> list[dict[str, Any]]:
    rows = []
    for group in activity.broadcast_failures(broadcast_id=broadcast.id):
        advice = advice_for(group.code)
        rows.append(
            {
                "code": group.code or "-",
                "title": group.title,
                "message": group.message,
                "failed": group.failed,
                "retryable": group.retryable,
                # a Retry names codes: failed sends without one cannot be chosen
                "can_retry": bool(group.retryable and group.code),
                "kind": advice.kind.value,
                "meaning": advice.meaning,
                "action": advice.action,
                "fix_url": _fix_url(advice.fix, broadcast),
            }
        )
    return rows


def pause_context(*, broadcast: Broadcast) -> dict[str, Any] | None:
    """The paused reason with its fix, when the broadcast is PAUSED."""
    if broadcast.status != BroadcastStatus.PAUSED:
        return None
    reason = broadcast.paused_reason if isinstance(broadcast.paused_reason, dict) else {}
    code = str(reason.get("code") or "manual")
    advice = advice_for(code)
    return {
        "code": code,
        "message": reason.get("message") or "",
        "meaning": advice.meaning,
        "action": advice.action,
        "fix": advice.fix.value,
        "fix_url": _fix_url(advice.fix, broadcast),
        "fix_label": {Fix.CHANNEL: "the channel's page", Fix.TEMPLATE: "the template's page"}.get(advice.fix, ""),
    }


def cost_context(*, broadcast: Broadcast) -> dict[str, Any] | None:
    """Estimated (the whole broadcast, at creation) against billed so far (docs/rules.md), None without a card."""
    if not broadcast.cost_currency:
        return None
    estimated: Decimal | None = broadcast.cost_estimated
    share = f"{100 * broadcast.billed / estimated:.1f}%" if estimated else None
    return {
        "currency": broadcast.cost_currency,
        "estimated": money(estimated) or "-",
        "billed": money(broadcast.billed),
        "share": share,
        "max_cost": money(broadcast.max_cost),
    }


def retry_allowed(*, broadcast: Broadcast) -> bool:
    """The retry service's own precondition (lifecycle.RETRYABLE_FROM, sends not purged): the form is offered only
    where the service would act."""
    return broadcast.status in lifecycle.RETRYABLE_FROM and broadcast.purged_at is None


def cockpit_context(*, broadcast: Broadcast, counts: dict[str, int], can_act: bool) -> dict[str, Any]:
    failures = failures_context(broadcast=broadcast)
    return {
        **activity_context(broadcast=broadcast),
        "funnel": funnel_context(counts=counts, total=broadcast.total_recipients),
        "failures": failures,
        "pause": pause_context(broadcast=broadcast),
        "cost": cost_context(broadcast=broadcast),
        "retry_url": reverse("admin:broadcasts_broadcast_retry", args=[broadcast.pk])
        if can_act and failures and retry_allowed(broadcast=broadcast)
        else "",
    }


def _error_text(exc: ApplicationError) -> str:
    details = getattr(exc, "details", None) or {}
    problems = "; ".join(f"{field}: {' '.join(map(str, items))}" for field, items in details.items())
    return f"{exc.message} {problems}".strip()


def retry_view(model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str) -> HttpResponse:
    """POST error_codes (and an optional not_before) -> the API's retry service; its answer as a message."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    broadcast = get_object_or_404(Broadcast.objects.only("id"), pk=object_id)
    if not model_admin.has_change_permission(request, broadcast):
        return HttpResponse(status=403)
    codes = request.POST.getlist("error_codes")
    body: dict[str, Any] = {"error_codes": codes}
    if not_before := request.POST.get("not_before", "").strip():
        body["not_before"] = not_before
    try:
        _, retried = broadcast_retry(broadcast_id=broadcast.id, body=body)
    except ApplicationError as exc:  # nothing chosen, a bad not_before, a state that cannot retry
        model_admin.message_user(request, f"Not retried: {_error_text(exc)}", messages.WARNING)
    else:
        chosen = ", ".join(codes)
        if retried:
            when = f" from {not_before}" if not_before else ""
            text = f"Retry: {retried} send(s) of {chosen} pending again{when}."
            model_admin.message_user(request, text, messages.SUCCESS)
        else:
            model_admin.message_user(
                request, f"Retry: no retryable failed send of {chosen}; nothing re-queued.", messages.WARNING
            )
    return HttpResponseRedirect(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk]))
