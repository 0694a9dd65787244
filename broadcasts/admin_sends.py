"""The sends for operators: found by number (as an operator types it) or wamid across broadcasts, or one
broadcast's sends in request order; read-only, never deleted. Registered by broadcasts/admin.py."""

import re
from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from broadcasts.models import Broadcast, Send
from broadcasts.phones import phone_to_e164
from core.admin_display import utc_time
from whatsapp.numbers import is_bsuid

_NUMBER_PUNCTUATION = re.compile(r"[\s\-().\u00a0]")


def typed_number_e164(raw: str) -> str | None:
    """A number as an operator types it (``+34 600-11 22 33``, ``0034...``, ``34600...``) in E.164, or None."""
    number = _NUMBER_PUNCTUATION.sub("", raw)
    if number.startswith("00"):
        number = "+" + number[2:]
    elif number.isdigit():
        number = "+" + number
    return phone_to_e164(number)


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` rows (``COUNT`` over a ``LIMIT`` subquery), never the whole sends table."""

    CAP = 10_000
    capped = False

    @cached_property
    def count(self) -> int:
        n = self.object_list.order_by()[: self.CAP + 1].count()
        self.capped = n > self.CAP
        return min(n, self.CAP)


@admin.register(Send)
class SendAdmin(admin.ModelAdmin):
    """Read-only. Search is exact (indexed): the number (normalized to E.164) or the wamid."""

    list_display = [
        "index",
        "to",
        "status",
        "message_id",
        "attempts",
        "error_code",
        "updated_at_display",
        "broadcast_link",
    ]
    list_filter = ["status"]
    list_select_related = ["broadcast"]
    search_fields = ["to", "message_id"]
    search_help_text = (
        "Exact phone number (any format, e.g. +34 600 11 22 33), exact BSUID or exact wamid, across broadcasts."
    )
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # per-status counts over the whole sends table
    list_per_page = 100

    updated_at_display = utc_time("updated_at", "updated at")
    sent_at_display = utc_time("sent_at", "sent at")
    delivered_at_display = utc_time("delivered_at", "delivered at")
    read_at_display = utc_time("read_at", "read at")
    failed_at_display = utc_time("failed_at", "failed at")
    next_attempt_at_display = utc_time("next_attempt_at", "next attempt at")

    fields = readonly_fields = [
        "broadcast",
        "index",
        "to",
        "status",
        "message_id",
        "attempts",
        "unknown_outcomes",
        "error_code",
        "error_title",
        "error_message",
        "error_retryable",
        "variables",
        "meta_data",
        "pricing",
        "price",
        "billed_at",
        "next_attempt_at_display",
        "sent_at_display",
        "delivered_at_display",
        "read_at_display",
        "failed_at_display",
        "updated_at_display",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # sends change only through the engine, the webhooks and the broadcast's actions

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def get_ordering(self, request: HttpRequest) -> list[str]:
        # One broadcast's sends in request order (its unique (broadcast, index) index); else the newest first.
        if "broadcast__id__exact" in request.GET:
            return ["broadcast", "index"]
        return ["-id"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Send], search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(message_id=term)
        number = typed_number_e164(term)
        if number is not None:
            match |= Q(to=number)
        elif is_bsuid(term):  # a recipient given by user_id: its BSUID is its to
            match |= Q(to=term)
        return queryset.filter(match), False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = extra_context or {}
        broadcast_id = request.GET.get("broadcast__id__exact")
        broadcast = (
            Broadcast.objects.filter(pk=broadcast_id).only("id", "campaign_name").first() if broadcast_id else None
        )
        if broadcast is not None:
            extra_context["title"] = f"Sends of {broadcast}"
            extra_context["send_broadcast"] = broadcast
        return super().changelist_view(request, extra_context)

    @admin.display(description="broadcast", ordering="broadcast")
    def broadcast_link(self, obj: Send) -> str:
        url = reverse("admin:broadcasts_broadcast_change", args=[obj.broadcast_id])
        return format_html('<a href="{}">{}</a>', url, obj.broadcast.campaign_name)
