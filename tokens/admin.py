"""The portal's token pages: only staff holding ``tokens.manage_tokens`` (and superusers) see them."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.secret_page import secret_once_response, secret_remember
from tokens.forms import AccessTokenChangeForm, AccessTokenCreateForm
from tokens.models import AccessToken, Organization
from tokens.services import token_create, token_revoke

MANAGE_TOKENS = "tokens.manage_tokens"


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]


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
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = [RevokedFilter, "organization"]
    list_select_related = ["organization"]
    search_fields = ["prefix", "name", "organization__name"]
    actions = ["revoke_tokens"]
    change_readonly_fields = [
        "prefix",
        "organization",
        "created_at",
        "created_by",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]

    # --- who may see tokens at all -----------------------------------------------------
    def _can_manage(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff and request.user.has_perm(MANAGE_TOKENS)

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

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[AccessToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            token_revoke(token_or_prefix=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", level=messages.SUCCESS)
