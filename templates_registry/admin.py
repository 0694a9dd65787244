"""The portal's channel and template pages."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from core.admin_display import utc_time
from core.errors import ApplicationError
from templates_registry.models import Channel, Template
from templates_registry.services import GRAPH_ID_RE, templates_sync


class ChannelForm(forms.ModelForm):
    """The Graph access token is write-only: never rendered back; blank on change keeps the current one."""

    access_token = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        required=False,
        help_text="Write-only. Leave blank to keep the current token.",
    )

    class Meta:
        model = Channel
        fields = ["organization", "name", "phone_number_id", "waba_id", "access_token", "max_mps", "marketing_messages"]

    def _graph_id(self, field: str, what: str) -> str:
        value = (self.cleaned_data.get(field) or "").strip()
        if not GRAPH_ID_RE.fullmatch(value):
            raise forms.ValidationError(f"Must be Meta's numeric {what} (digits only, at most 20).")
        return value

    def clean_phone_number_id(self) -> str:
        return self._graph_id("phone_number_id", "phone number id")

    def clean_waba_id(self) -> str:
        return self._graph_id("waba_id", "WhatsApp Business account id")

    def clean_access_token(self) -> str:
        value = (self.cleaned_data.get("access_token") or "").strip()
        if value:
            return value
        if self.instance.pk and self.instance.access_token:
            return self.instance.access_token
        raise forms.ValidationError("Required for a new channel.")


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = [
        "id",
        "name",
        "organization",
        "phone_number_id",
        "waba_id",
        "max_mps",
        "marketing_messages",
        "quality_event",
        "quality_limit_tier",
        "created_at_display",
    ]
    list_filter = ["organization", "marketing_messages"]
    list_select_related = ["organization"]
    search_fields = ["id", "name", "phone_number_id", "waba_id", "organization__name"]
    created_at_display = utc_time("created_at", "created at")
    quality_updated_at_display = utc_time("quality_updated_at", "quality updated at")
    # Number health from Meta's phone_number_quality_update (docs/rules.md): shown, never edited.
    readonly_fields = ["id", "created_at_display", "quality_event", "quality_limit_tier", "quality_updated_at_display"]
    actions = ["sync_templates"]

    # The error page of a failed save (DEBUG) must not show the posted access token.
    @method_decorator(sensitive_post_parameters("access_token"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.action(description="Sync templates from Meta", permissions=["change"])
    def sync_templates(self, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        for channel in queryset:
            try:
                count = templates_sync(channel=channel)
            except ApplicationError as exc:
                self.message_user(request, f"{channel}: {exc.message}", level=messages.ERROR)
            else:
                self.message_user(request, f"{channel}: {count} template(s) synced.", level=messages.SUCCESS)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Read-only: templates come from Meta (sync, its status webhooks) or create_template. The status is Meta's
    verdict: marking APPROVED here what Meta has not approved would only let broadcasts through that Meta refuses."""

    list_display = [
        "name",
        "language",
        "status",
        "category",
        "quality",
        "status_event",
        "parameter_format",
        "waba_id",
        "updated_at_display",
    ]
    list_filter = ["status", "quality", "language", "category", "parameter_format"]
    search_fields = ["name", "waba_id", "meta_id"]
    readonly_fields = fields = [
        "status",
        "waba_id",
        "meta_id",
        "name",
        "language",
        "category",
        "quality",
        "status_event",
        "status_reason",
        "status_event_time",
        "parameter_format",
        "components",
        "header_variables",
        "body_variables",
        "created_at_display",
        "updated_at_display",
    ]
    created_at_display = utc_time("created_at", "created at")
    updated_at_display = utc_time("updated_at", "updated at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by `create_template` or `sync_templates`, with their variables extracted

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # every field is Meta's (or the create_template command's): the page is a view

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # broadcasts keep a reference to their template
