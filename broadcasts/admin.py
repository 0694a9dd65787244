"""Campaigns for operators (docs/operations.md): the broadcast list with truthful progress, a page per broadcast with
the
actions its state allows (the API's own services), the sends found by number or wamid across broadcasts, and a
CSV export. Nothing here deletes a broadcast or a send. The page's chart, funnel, failures and Retry by code:
admin_page.py; the sends: admin_sends.py; rate cards and suppression lists: admin_rules.py.
"""

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

import broadcasts.admin_rules  # noqa: F401  registers the rate card and suppression list admins
import broadcasts.admin_sends  # noqa: F401  registers the sends' admin
from broadcasts import admin_page, lifecycle, selectors
from broadcasts.exports import sends_csv_lines, sends_for_csv
from broadcasts.models import Broadcast, BroadcastStatus, SendStatus
from broadcasts.pricing import money
from broadcasts.services import broadcast_cancel, broadcast_pause, broadcast_resume
from core.admin_display import utc_time
from core.errors import ApplicationError
from tokens.admin_visibility import TokenFieldsHidden

ACTIONS: dict[str, Callable[..., Broadcast]] = {
    "cancel": broadcast_cancel,
    "pause": broadcast_pause,
    "resume": broadcast_resume,
}
PAST_TENSE = {"cancel": "Cancelled", "pause": "Paused", "resume": "Resumed"}
# The broadcast page reloads itself this often while the broadcast moves.
REFRESH_SECONDS = 5
REFRESHING_STATES = (BroadcastStatus.PENDING, BroadcastStatus.IN_PROGRESS)

# Progress bar segments: (name, title, colour). done = sent (sent, delivered, read) + failed.
_SEGMENTS = (
    ("sent", "sent, delivered or read", "#2e7d32"),
    ("failed", "failed", "#c62828"),
    ("cancelled", "cancelled", "#8d8d8d"),
    ("pending", "pending", "#e3e3e3"),
)


def progress_bar(counts: dict[str, int], total: int) -> str:
    """A bar with one segment per outcome: cancelled sends are their own segment, never counted as done."""
    sizes = {
        "sent": counts["sent"] + counts["delivered"] + counts["read"],
        "failed": counts["failed"],
        "cancelled": counts["cancelled"],
    }
    done = sizes["sent"] + sizes["failed"]
    sizes["pending"] = max(total - done - sizes["cancelled"], 0)
    segments = format_html_join(
        "",
        '<span class="progress-segment" data-segment="{}" data-count="{}" title="{}: {}" '
        'style="width:{}%;background:{};height:10px;display:inline-block"></span>',
        (
            (name, sizes[name], title, sizes[name], f"{100 * sizes[name] / total:.2f}" if total else "0", colour)
            for name, title, colour in _SEGMENTS
        ),
    )
    percent = round(100 * done / total) if total else 100
    return format_html(
        '<span class="progress" data-total="{}" data-done="{}">'
        '<span style="display:inline-flex;width:140px;background:#e3e3e3;border-radius:3px;overflow:hidden;'
        'vertical-align:middle">{}</span> '
        '<span class="progress-label">{}% done ({} of {}), {} cancelled, {} pending</span></span>',
        total,
        done,
        segments,
        percent,
        done,
        total,
        sizes["cancelled"],
        sizes["pending"],
    )


def error_rate_text(counts: dict[str, int], total: int) -> str:
    """docs/api.md's error_rate (failed / attempted) as a percentage."""
    return f"{100 * selectors.error_rate(counts=counts, total=total):.1f}%"


def sends_url(broadcast_id: str | None = None, status: str | None = None) -> str:
    """The send list, filtered by broadcast and status when given."""
    params = {}
    if broadcast_id is not None:
        params["broadcast__id__exact"] = broadcast_id
    if status is not None:
        params["status__exact"] = status
    url = reverse("admin:broadcasts_send_changelist")
    return f"{url}?{urlencode(params)}" if params else url


class BroadcastChangeList(ChangeList):
    """Counts for the whole page in one grouped query (docs/api.md's selector), not one per row."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        counts = selectors.broadcast_counts(broadcast_ids=[broadcast.id for broadcast in self.result_list])
        for broadcast in self.result_list:
            broadcast.send_counts = counts[broadcast.id]


@admin.register(Broadcast)
class BroadcastAdmin(TokenFieldsHidden, admin.ModelAdmin):
    list_display = [
        "campaign_name",
        "status",
        "paused_reason_text",
        "progress",
        "failed_sends",
        "error_rate",
        "cost",
        "total_recipients",
        "organization",
        "channel_number",
        "template_name",
        "created_at_display",
        "scheduled_at_display",
    ]
    list_filter = ["status", "organization", "channel", "template", "created_at", "scheduled_at"]
    search_fields = ["id", "campaign_name", "template_name", "organization__name"]
    list_select_related = ["organization", "channel"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    actions = ["cancel_selected", "pause_selected", "resume_selected"]
    change_form_template = "admin/broadcasts/broadcast_change_form.html"
    show_full_result_count = False
    token_fields = ("created_by_token",)  # its prefix and name: for token managers only

    created_at_display = utc_time("created_at", "created at")
    scheduled_at_display = utc_time("scheduled_at", "scheduled at")
    started_at_display = utc_time("started_at", "started at")
    completed_at_display = utc_time("completed_at", "completed at")
    updated_at_display = utc_time("updated_at", "updated at")

    # Everything is made by the system; only the campaign name is the customer's to fix.
    readonly_fields = [
        "id",
        "organization",
        "channel",
        "template",
        "created_by_token",
        "template_name",
        "language",
        "status",
        "paused_reason_text",
        "total_recipients",
        "cost",
        "send_window_text",
        "channel_lanes",
        "scheduled_at_display",
        "created_at_display",
        "started_at_display",
        "completed_at_display",
        "updated_at_display",
    ]
    fields = ["campaign_name", *readonly_fields]

    def get_changelist(self, request: HttpRequest, **kwargs):
        return BroadcastChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # broadcasts come from the API

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the history of what was sent to whom is kept; cancel stops a broadcast

    def save_model(self, request: HttpRequest, obj: Broadcast, form, change: bool) -> None:
        # Only the campaign name: a full save would write back a status the engine has changed since the page loaded.
        obj.save(update_fields=["campaign_name", "updated_at"])

    # --- columns -------------------------------------------------------------------------------

    @admin.display(description="progress")
    def progress(self, obj: Broadcast) -> str:
        return progress_bar(obj.send_counts, obj.total_recipients)

    @admin.display(description="channel", ordering="channel__phone_number_id")
    def channel_number(self, obj: Broadcast) -> str:
        return obj.channel.name or obj.channel.phone_number_id

    # Not named `failed`: that is the model's kept count, and a model field wins over an admin method of its name.
    @admin.display(description="failed")
    def failed_sends(self, obj: Broadcast) -> str:
        n = obj.send_counts["failed"]
        if not n:
            return "0"
        return format_html('<a href="{}">{}</a>', sends_url(obj.id, SendStatus.FAILED), n)

    @admin.display(description="error rate")
    def error_rate(self, obj: Broadcast) -> str:
        return error_rate_text(obj.send_counts, obj.total_recipients)

    @admin.display(description="cost")
    def cost(self, obj: Broadcast) -> str:
        """Billed / estimated (and the cap), in the rate card's currency (docs/rules.md): kept fields, no query."""
        if not obj.cost_currency:
            return "-"
        text = f"{money(obj.billed)} billed of {money(obj.cost_estimated) or '-'} estimated {obj.cost_currency}"
        return f"{text}, max {money(obj.max_cost)}" if obj.max_cost is not None else text

    @admin.display(description="send window")
    def send_window_text(self, obj: Broadcast) -> str:
        """``09:00-21:00 mon,tue (Europe/Madrid)``: the recipient's local time (docs/rules.md); "-" without one."""
        window = obj.send_window
        if not isinstance(window, dict):
            return "-"
        text = f"{window.get('start')}-{window.get('end')}"
        if window.get("days"):
            text += " " + ",".join(window["days"])
        zone = window.get("timezone")
        return f"{text} ({zone})" if zone else f"{text} (each recipient's zone)"

    @admin.display(description="channel's lanes now")
    def channel_lanes(self, obj: Broadcast) -> str:
        """The channel's running broadcasts per lane (AUTHENTICATION and UTILITY go before MARKETING: docs/rules.md)."""
        return "; ".join(
            f"{use.lane}: {use.broadcasts} running, {use.pending} pending"
            for use in selectors.channel_lanes(channel_id=obj.channel_id)
        )

    @admin.display(description="paused reason")
    def paused_reason_text(self, obj: Broadcast) -> str:
        reason = obj.paused_reason
        if not reason:
            return "-"
        if not isinstance(reason, dict):
            return str(reason)
        code, message = reason.get("code") or "", reason.get("message") or ""
        return f"{code}: {message}" if code and message else code or message or "-"

    # --- actions: the API's services, one broadcast at a time -------------------------------------

    def _apply(self, request: HttpRequest, queryset: QuerySet[Broadcast], action: str) -> None:
        done, skipped = 0, []
        for broadcast in queryset.select_related(None).only("id", "campaign_name", "status"):
            # Lifecycle's diagram says which statuses an action leaves from (the service checks it again, under
            # the row lock).
            if broadcast.status not in lifecycle.ACTIONS_FROM[action]:
                skipped.append(f"{broadcast.campaign_name} ({broadcast.status})")
                continue
            try:
                ACTIONS[action](broadcast_id=broadcast.id)
            except ApplicationError as exc:  # its state changed since it was listed
                skipped.append(f"{broadcast.campaign_name} ({exc.message})")
            else:
                done += 1
        if done:
            self.message_user(request, f"{PAST_TENSE[action]} {done} broadcast(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} broadcast(s) whose state does not allow {action}: {', '.join(skipped)}.",
                messages.WARNING,
            )

    @admin.action(description="Cancel selected broadcasts", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "cancel")

    @admin.action(description="Pause selected broadcasts", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "pause")

    @admin.action(description="Resume selected broadcasts (paused ones only)", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "resume")

    # --- the broadcast page ----------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/do/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="broadcasts_broadcast_action",
            ),
            path(
                "<path:object_id>/retry/",
                self.admin_site.admin_view(self.retry_view),
                name="broadcasts_broadcast_retry",
            ),
            path(
                "<path:object_id>/sends.csv",
                self.admin_site.admin_view(self.export_view),
                name="broadcasts_broadcast_sends_csv",
            ),
            *super().get_urls(),
        ]

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        broadcast = get_object_or_404(Broadcast, pk=object_id)
        if action not in ACTIONS or not self.has_change_permission(request, broadcast):
            return HttpResponse(status=403)
        try:
            ACTIONS[action](broadcast_id=broadcast.id)
            self.message_user(request, f"{PAST_TENSE[action]}.", messages.SUCCESS)
        except ApplicationError as exc:  # the service's verdict on this state
            self.message_user(request, exc.message, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk]))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return admin_page.retry_view(self, request, object_id)

    def export_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every send of the broadcast as CSV (docs/api.md's columns), streamed; ``?status=failed`` narrows it."""
        broadcast = get_object_or_404(Broadcast.objects.only("id"), pk=object_id)
        if not self.has_view_permission(request, broadcast):
            return HttpResponse(status=403)
        status = request.GET.get("status", "").upper() or None
        if status is not None and status not in SendStatus.values:
            return HttpResponse(f"Unknown send status {status!r}.", status=400, content_type="text/plain")
        response = StreamingHttpResponse(
            sends_csv_lines(sends_for_csv(broadcast_id=broadcast.id, status=status)),
            content_type="text/csv; charset=utf-8",
        )
        suffix = f"-{status.lower()}" if status else ""
        response["Content-Disposition"] = f'attachment; filename="broadcast-{broadcast.id}-sends{suffix}.csv"'
        return response

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        broadcast = Broadcast.objects.filter(pk=object_id).first()
        extra_context = extra_context or {}
        if broadcast is not None:
            extra_context.update(self._campaign_context(request, broadcast))
        return super().change_view(request, object_id, form_url, extra_context)

    def _campaign_context(self, request: HttpRequest, broadcast: Broadcast) -> dict:
        counts = selectors.broadcast_counts(broadcast_ids=[broadcast.id])[broadcast.id]
        can_act = self.has_change_permission(request, broadcast)
        return {
            "campaign_counts": counts,
            "campaign_error_rate": selectors.error_rate(counts=counts, total=broadcast.total_recipients),
            "campaign_error_rate_text": error_rate_text(counts, broadcast.total_recipients),
            "campaign_progress": progress_bar(counts, broadcast.total_recipients),
            "campaign_actions": lifecycle.actions_allowed(broadcast.status) if can_act else [],
            "campaign_sends_links": [
                ("all", broadcast.total_recipients, sends_url(broadcast.id)),
                *((status.lower(), counts[status.lower()], sends_url(broadcast.id, status)) for status in SendStatus),
            ],
            "campaign_export_url": reverse("admin:broadcasts_broadcast_sends_csv", args=[broadcast.pk]),
            "campaign_refresh_seconds": REFRESH_SECONDS if broadcast.status in REFRESHING_STATES else None,
            **admin_page.cockpit_context(broadcast=broadcast, counts=counts, can_act=can_act),
        }
