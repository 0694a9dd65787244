"""Campaigns in the portal: list, a page per broadcast with its progress and sends, and the same
Cancel / Pause / Resume the API has (they call the same services)."""

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from broadcasts import selectors, services
from broadcasts.models import Broadcast, Send, SendStatus
from core.errors import ApplicationError

SENDS_PER_PAGE = 50

ACTIONS: dict[str, Callable[..., Broadcast]] = {
    "cancel": services.broadcast_cancel,
    "pause": services.broadcast_pause,
    "resume": services.broadcast_resume,
}


def _progress_bar(done: int, total: int) -> str:
    percent = round(100 * done / total) if total else 100
    return format_html(
        '<div style="width:120px;background:#eee;border-radius:3px;display:inline-block;vertical-align:middle">'
        '<div style="width:{}%;background:#417690;height:10px;border-radius:3px"></div></div> {}%',
        percent,
        percent,
    )


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = [
        "campaign_name",
        "organization",
        "channel",
        "template_name",
        "language",
        "status",
        "progress",
        "total_recipients",
        "created_at",
        "scheduled_at",
    ]
    list_filter = ["status", "organization", "channel", "created_at", "scheduled_at"]
    search_fields = ["id", "campaign_name", "template_name", "organization__name"]
    list_select_related = ["organization", "channel"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]
    actions = ["cancel_selected", "pause_selected", "resume_selected"]
    change_form_template = "admin/broadcasts/broadcast_change_form.html"
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
        "paused_reason",
        "total_recipients",
        "scheduled_at",
        "created_at",
        "started_at",
        "completed_at",
        "updated_at",
    ]
    fields = ["campaign_name", *readonly_fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Broadcast]:
        # A correlated subquery per listed row (the page only), not a join over every send.
        pending = (
            Send.objects.filter(broadcast=OuterRef("pk"), status=SendStatus.PENDING)
            .order_by()
            .values("broadcast")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(pending_sends=Subquery(pending, output_field=IntegerField()))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # broadcasts come from the API

    @admin.display(description="progress")
    def progress(self, obj: Broadcast) -> str:
        pending = obj.pending_sends or 0
        return _progress_bar(obj.total_recipients - pending, obj.total_recipients)

    # --- actions: the API's services, one broadcast at a time ---------------------------------

    def _apply(self, request: HttpRequest, queryset: QuerySet[Broadcast], action: str) -> None:
        done, refused = 0, []
        for broadcast in queryset:
            try:
                ACTIONS[action](broadcast_id=broadcast.id)
                done += 1
            except ApplicationError as exc:
                refused.append(f"{broadcast.campaign_name}: {exc.message}")
        if done:
            self.message_user(request, f"{action.title()}: {done} broadcast(s).", messages.SUCCESS)
        for message in refused:
            self.message_user(request, message, messages.WARNING)

    @admin.action(description="Cancel selected broadcasts", permissions=["change"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "cancel")

    @admin.action(description="Pause selected broadcasts", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "pause")

    @admin.action(description="Resume selected broadcasts", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Broadcast]) -> None:
        self._apply(request, queryset, "resume")

    # --- the broadcast page ------------------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/do/<str:action>/",
                self.admin_site.admin_view(self.action_view),
                name="broadcasts_broadcast_action",
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
            self.message_user(request, f"{action.title()}: done.", messages.SUCCESS)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.WARNING)
        return HttpResponseRedirect(reverse("admin:broadcasts_broadcast_change", args=[broadcast.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        broadcast = Broadcast.objects.filter(pk=object_id).first()
        extra_context = extra_context or {}
        if broadcast is not None:
            extra_context.update(self._campaign_context(request, broadcast))
        return super().change_view(request, object_id, form_url, extra_context)

    def _campaign_context(self, request: HttpRequest, broadcast: Broadcast) -> dict:
        counts = selectors.broadcast_counts(broadcast_ids=[broadcast.id])[broadcast.id]
        status_filter = request.GET.get("sends_status", "").upper()
        if status_filter not in SendStatus.values:
            status_filter = ""
        sends = Send.objects.filter(broadcast_id=broadcast.id).order_by("index")
        if status_filter:
            sends = sends.filter(status=status_filter)
        page = Paginator(
            sends.only("index", "to", "status", "attempts", "message_id", "error_code", "error_message", "updated_at"),
            SENDS_PER_PAGE,
        ).get_page(request.GET.get("sends_page"))
        return {
            "campaign_counts": counts,
            "campaign_error_rate": selectors.error_rate(counts=counts, total=broadcast.total_recipients),
            "campaign_progress": _progress_bar(
                broadcast.total_recipients - counts["pending"], broadcast.total_recipients
            ),
            "campaign_error_codes": selectors.broadcast_error_codes(broadcast=broadcast),
            "sends_page": page,
            "sends_status": status_filter,
            "send_statuses": SendStatus.values,
            "campaign_actions": list(ACTIONS),
        }
