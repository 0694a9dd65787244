"""The portal's token pages: only staff holding ``tokens.manage_tokens`` (and superusers) see them."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from core.admin_display import utc_time
from core.secret_page import secret_once_response, secret_remember
from tokens.admin_visibility import tokens_visible
from tokens.forms import AccessTokenChangeForm, AccessTokenCreateForm, OrganizationForm
from tokens.frequency_cap import frequency_cap_name, frequency_cap_of, organization_frequency_cap_set
from tokens.limits import limit_name
from tokens.models import AccessToken, Organization
from tokens.services import organization_messaging_limit_set, token_create, token_revoke


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "messaging_limit_display", "frequency_cap_display", "created_at_display"]
    search_fields = ["name"]
    created_at_display = utc_time("created_at", "created at")
    messaging_limit_set_at_display = utc_time("messaging_limit_set_at", "messaging limit set at")
    readonly_fields = ["created_at_display", "messaging_limit_set_at_display"]
    form = OrganizationForm
    fields = ["name", "limit", "messaging_limit_set_at_display", "frequency_cap", "created_at_display"]

    @admin.display(description="messaging limit", ordering="messaging_limit")
    def messaging_limit_display(self, obj: Organization) -> str:
        return limit_name(obj.messaging_limit)

    @admin.display(description="marketing frequency cap")
    def frequency_cap_display(self, obj: Organization) -> str:
        return frequency_cap_name(frequency_cap_of(obj))

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        # Through the one writer: a new limit starts a fresh count and wakes the sends waiting for it.
        if "limit" in form.changed_data:
            organization_messaging_limit_set(organization=obj, limit=form.cleaned_data["limit"])
        if "frequency_cap" in form.changed_data:
            organization_frequency_cap_set(organization=obj, cap=form.cleaned_data["frequency_cap"])

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # it would take its broadcasts, sends and tokens (the audit trail) with it


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("no", "Active (not revoked)"), ("yes", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "name",
        "organization",
        "scopes_display",
        "created_at_display",
        "last_used_at_display",
        "expires_at_display",
        "revoked_at_display",
    ]
    list_filter = [RevokedFilter, "organization"]
    list_select_related = ["organization"]
    search_fields = ["prefix", "name", "organization__name"]
    actions = ["revoke_tokens"]
    change_form_template = "admin/tokens/accesstoken/change_form.html"
    created_at_display = utc_time("created_at", "created at")
    last_used_at_display = utc_time("last_used_at", "last used at")
    expires_at_display = utc_time("expires_at", "expires at")
    revoked_at_display = utc_time("revoked_at", "revoked at")
    change_readonly_fields = [
        "prefix",
        "organization",
        "created_at_display",
        "created_by",
        "last_used_at_display",
        "expires_at_display",
        "revoked_at_display",
    ]

    # --- who may see tokens at all -----------------------------------------------------
    def _can_manage(self, request: HttpRequest) -> bool:
        return tokens_visible(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._can_manage(request)

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._can_manage(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._can_manage(request)

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self._can_manage(request)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # tokens are revoked, never deleted: their rows are the audit trail

    # --- forms ----------------------------------------------------------------------------
    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = AccessTokenChangeForm if obj is not None else AccessTokenCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "scopes", "expires_at"]
        return ["name", "scopes", *self.change_readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return self.change_readonly_fields if obj is not None else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = token_create(
            organization=form.cleaned_data["organization"],
            scopes=form.cleaned_data["scopes"],
            name=form.cleaned_data.get("name") or "",
            expires_at=form.cleaned_data.get("expires_at"),
            created_by=request.user,
        )
        # The admin goes on with `obj` (log entry, redirect): make it the row token_create wrote.
        obj.pk = issued.token.pk
        obj.refresh_from_db()
        obj._state.adding = False
        # Shown by response_add on the page answering this POST: never in a message (a cookie) or the session.
        secret_remember(request, issued.secret)

    def response_add(self, request, obj, post_url_continue=None):
        page = secret_once_response(
            request,
            model_admin=self,
            obj=obj,
            label="API token",
            note="Copy the token now: only its hash is stored, and it will not be shown again.",
        )
        return page or super().response_add(request, obj, post_url_continue)

    @admin.display(description="scopes")
    def scopes_display(self, obj: AccessToken) -> str:
        return ", ".join(obj.scopes or [])

    # --- revoke from the token's own page ----------------------------------------------------
    def get_urls(self):
        return [
            path(
                "<path:object_id>/revoke/",
                self.admin_site.admin_view(self.revoke_view),
                name="tokens_accesstoken_revoke",
            ),
            *super().get_urls(),
        ]

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST (with the admin's CSRF check): revoke this token, back to its page."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self._can_manage(request):
            return HttpResponse(status=403)
        token = self.get_object(request, object_id)
        if token is None:
            raise Http404("No such token.")
        was_revoked = token.is_revoked
        token = token_revoke(token_or_prefix=token)
        if was_revoked:
            self.message_user(request, f"{token.prefix}… was already revoked.", level=messages.WARNING)
        else:
            self.message_user(request, f"Revoked {token.prefix}….", level=messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:tokens_accesstoken_change", args=[token.pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        token = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if token is not None and token.revoked_at is None and self._can_manage(request):
            extra_context["revoke_url"] = reverse("admin:tokens_accesstoken_revoke", args=[token.pk])
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token_or_prefix=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", level=messages.SUCCESS)
