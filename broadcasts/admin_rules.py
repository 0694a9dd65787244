"""The admin of two of Meta's rules, for operators: the rate cards (read-only history, the newest in force) and the
suppression lists (docs/rules.md; read-only, entries taken off through the service). Registered by broadcasts/admin.py.
"""

from django.contrib import admin
from django.http import HttpRequest

from broadcasts.models import RateCard, RateCardPrice, Suppression
from broadcasts.phones import phone_to_e164
from broadcasts.rules import suppressions


class RateCardPriceInline(admin.TabularInline):
    model = RateCardPrice
    fields = readonly_fields = ["country", "category", "price"]
    can_delete = False
    extra = 0
    ordering = ["category", "country"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RateCard)
class RateCardAdmin(admin.ModelAdmin):
    """Read-only: cards come from ``manage.py load_rate_card``; the newest is in force, older ones are history."""

    list_display = ["id", "currency", "loaded_at"]
    ordering = ["-loaded_at", "-id"]
    fields = readonly_fields = ["currency", "loaded_at"]
    inlines = [RateCardPriceInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """The suppression lists (docs/rules.md), read-only: entries come from the API and Meta's webhooks. Staff may
    take entries off, by the action or an entry's Delete button: both through the service."""

    list_display = ["number", "organization", "source", "reason", "created_at"]
    list_filter = ["source", "organization"]
    list_select_related = ["organization"]
    search_fields = ["to"]
    search_help_text = "An E.164 number (+57 300 123 4567): found by its hash, erased contacts included."
    readonly_fields = ["organization", "to", "to_hash", "source", "reason", "created_at"]
    actions = ["remove_selected"]
    ordering = ["-created_at", "-id"]

    @admin.display(description="number")
    def number(self, obj: Suppression) -> str:
        return obj.to or "(erased)"

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().replace(" ", "")
        if not term:
            return queryset, False
        e164 = phone_to_e164(term if term.startswith("+") else f"+{term}")
        if e164 is None:
            return queryset.none(), False
        return queryset.filter(to_hash=suppressions.number_hash(e164)), False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # remove_selected says what it does: the customer is told
        return actions

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    # The entry page's Delete button ends here too: through the service, never a bare row delete.
    def delete_model(self, request, obj: Suppression) -> None:
        _suppressions_remove([obj])

    def delete_queryset(self, request, queryset) -> None:
        _suppressions_remove(queryset)

    @admin.action(description="Take the selected numbers off the suppression list", permissions=["delete"])
    def remove_selected(self, request, queryset) -> None:
        removed = _suppressions_remove(queryset)
        self.message_user(request, f"{removed} number(s) taken off the suppression list.")


def _suppressions_remove(rows) -> int:
    """Through the service, so the customer gets ``suppression.removed`` (as ``DELETE /v1/suppressions/{to}``)."""
    removed = 0
    for row in rows:
        if row.to:
            removed += suppressions.suppression_remove(organization_id=row.organization_id, to=row.to)
        else:  # an erased contact: only its hash is left, no number to tell the customer
            removed += Suppression.objects.filter(pk=row.pk).delete()[0]
    return removed
