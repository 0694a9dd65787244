"""The admin overview (docs/operations.md): /admin/overview/, linked from the admin index. Per channel the last
hour's POSTs per minute against its cap and its busiest second against ``max_mps``, the messaging limit's use, the
running, paused and scheduled broadcasts, the last day's failures by code and this month's cost; for one
organization, or (superusers) for all. Read by broadcasts/overview.py from kept data only.

Charts are SVG drawn here on the server (no script, no outside asset), each with its numbers beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from broadcasts.overview import overview_read
from broadcasts.pricing import money
from tokens.models import Organization

# The index links here (its template adds the link above the app list).
admin.site.index_template = "admin/broadcasts/index_with_overview.html"

# Organizations offered by the selector; beyond this an operator types ?org=<id>.
MAX_ORGS = 500
BAR = "#1f6fb2"
CAP = "#c62828"
TRACK = "#e3e3e3"


# --- charts --------------------------------------------------------------------------------------------------
# Plain f-strings: every number is ours, every text goes through escape() once. (format_html per bar escaped each
# argument and cost ~0.1 ms a bar: 50 channels' charts took longer than the page's queries.)


def svg_bars(
    values: Sequence[int], *, labels: Sequence[str] = (), cap: int | None = None, width: int = 600, height: int = 120
) -> SafeString:
    """Vertical bars (one per value), the first and last labelled, and ``cap`` as a dashed line when it is within
    reach of the bars (a cap far above them would flatten every bar to nothing)."""
    top = max(max(values, default=0), 1)
    if cap and cap <= 1.25 * top:
        top = cap
    else:
        cap = None
    plot = height - 16
    step = width / max(len(values), 1)
    names = [escape(label) for label in labels]
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><rect x="0" y="0" width="{width}" height="{plot}" fill="#fafafa"/>'
    ]
    for i, v in enumerate(values):
        h = plot * v / top
        title = f"{names[i]}: {v}" if i < len(names) else str(v)
        parts.append(
            f'<rect class="bar" data-value="{int(v)}" x="{i * step + 0.5:.1f}" y="{plot - h:.1f}" '
            f'width="{max(step - 1, 1):.1f}" height="{h:.1f}" fill="{BAR}"><title>{title}</title></rect>'
        )
    if cap:
        y = plot - plot * cap / top
        parts.append(
            f'<line class="cap" x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="{CAP}" stroke-width="1.5" '
            f'stroke-dasharray="4 3"><title>cap {int(cap)}</title></line>'
        )
    if names:
        parts.append(
            f'<text x="0" y="{height - 2}" font-size="10">{names[0]}</text>'
            f'<text x="{width}" y="{height - 2}" font-size="10" text-anchor="end">{names[-1]}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and escaped text only


def svg_gauge(value: int | None, maximum: int | None, *, width: int = 220, height: int = 14) -> SafeString:
    """One horizontal bar, ``value`` of ``maximum`` (red past 90 %); an empty track when either is unknown."""
    share = min(value / maximum, 1.0) if value is not None and maximum else 0.0
    colour = CAP if share >= 0.9 else BAR
    return mark_safe(  # numbers only
        f'<svg class="gauge" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'data-share="{share:.4f}"><rect width="{width}" height="{height}" fill="{TRACK}" rx="3"/>'
        f'<rect class="fill" width="{width * share:.1f}" height="{height}" fill="{colour}" rx="3"/></svg>'
    )


def svg_hbars(items: Sequence[tuple[str, int]], *, width: int = 360, row: int = 18) -> SafeString:
    """Horizontal bars, one per (label, count), longest = the largest count."""
    top = max((n for _, n in items), default=0) or 1
    label_w, room = 90, width - 90 - 50
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{max(len(items), 1) * row}">'
    ]
    for i, (label, n) in enumerate(items):
        name, w, y = escape(label), room * n / top, i * row
        parts.append(
            f'<text x="0" y="{y + row - 5}" font-size="11">{name}</text>'
            f'<rect class="bar" data-label="{name}" data-value="{int(n)}" x="{label_w}" y="{y + 3}" width="{w:.1f}" '
            f'height="{row - 6}" fill="{CAP}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + row - 5}" font-size="11">{n}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # numbers and escaped text only


# --- the page ------------------------------------------------------------------------------------------------


def _organization_choice(request: HttpRequest) -> tuple[Organization | None, HttpResponse | None]:
    """``?org=<id>``; none given: all organizations for a superuser, else the first one (only superusers see the
    whole service at once)."""
    raw = request.GET.get("org", "")
    if raw in ("", "all") and request.user.is_superuser:
        return None, None
    if raw in ("", "all"):
        first = Organization.objects.order_by("name", "id").first()
        if first is None:
            return None, HttpResponseBadRequest("No organization yet.", content_type="text/plain")
        return first, None
    if not raw.isdigit() or len(raw) > 18:
        return None, HttpResponseBadRequest("org must be an organization id.", content_type="text/plain")
    return get_object_or_404(Organization, pk=int(raw)), None


def _hhmm(at: datetime) -> str:
    return f"{at:%H:%M}"


def overview_view(request: HttpRequest) -> HttpResponse:
    """GET /admin/overview/[?org=<id>|all] (staff, through ``admin.site.admin_view``; needs view on broadcasts)."""
    if not request.user.has_perm("broadcasts.view_broadcast"):
        raise PermissionDenied
    organization, error = _organization_choice(request)
    if error is not None:
        return error
    overview = overview_read(organization_id=organization.id if organization else None, now=timezone.now())
    labels = [_hhmm(minute) for minute in overview.minutes]
    # Flat values, computed here: the template only places them (a lookup through rate.channel... per value cost
    # more than the page's queries with 50 channels).
    channels = [
        {
            "id": rate.channel.id,
            "name": rate.channel.name or rate.channel.phone_number_id,
            "organization": rate.channel.organization.name,
            "max_mps": rate.channel.max_mps,
            "chart": svg_bars(rate.per_minute, labels=labels, cap=rate.channel.max_mps * 60),
            "posted": rate.posted,
            "average_mps": f"{rate.posted / 3600:.2f}",
            "last_minute": rate.per_minute[-1],
            "busiest_minute": max(rate.per_minute),
            "peak": rate.peak_second,
            "peak_gauge": svg_gauge(rate.peak_second, rate.channel.max_mps),
            "peak_percent": f"{100 * rate.peak_share:.0f}%",
            "peak_at": f"{rate.peak_at:%H:%M:%S} UTC" if rate.peak_at else "",
            "limit": rate.limit,
            "limit_used": "not counted yet" if rate.limit_used is None else rate.limit_used,
            "limit_gauge": svg_gauge(rate.limit_used, rate.limit),
        }
        for rate in overview.channels
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Overview" + (f": {organization.name}" if organization else ": all organizations"),
        "overview": overview,
        "organization": organization,
        "organizations": list(Organization.objects.order_by("name", "id").values_list("id", "name")[:MAX_ORGS]),
        "can_see_all": request.user.is_superuser,
        "channels": channels,
        "failures_chart": svg_hbars([(f.code, f.count) for f in overview.failures]) if overview.failures else "",
        "cost": [
            {"currency": c.currency, "estimated": money(c.estimated), "billed": money(c.billed), "n": c.broadcasts}
            for c in overview.cost
        ],
        "lists": [
            (key, overview.broadcasts[key], overview.broadcasts_more[key]) for key in ("running", "paused", "scheduled")
        ],
        "generated": f"{overview.now:%Y-%m-%d %H:%M:%S} UTC",
        "window": f"{labels[0]}–{labels[-1]} UTC",
    }
    return TemplateResponse(request, "admin/broadcasts/overview.html", context)
