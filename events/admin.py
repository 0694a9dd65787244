"""Admin for outbound events: endpoints (create, see failures, re-enable, rotate the secret, ping), read-only events
and deliveries."""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from redis.exceptions import RedisError

from core.errors import ApplicationError
from core.secret_page import secret_once_response, secret_remember
from core.timefmt import iso_utc
from events import endpoints
from events.models import DeliveryAttempt, Event, EventDelivery, WebhookEndpoint
from events.ping import endpoint_ping

# The attribute of the request carrying the service's refusal to the add form answered again (see add_view).
_REFUSAL = "_webhook_endpoint_refusal"
REDIS_DOWN = "Redis is unavailable: try again."


class _CreateRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebhookEndpointAddForm(forms.ModelForm):
    # endpoint_create's refusal at save time, shown as the form's error when the add page is answered again.
    refusal: str | None = None

    class Meta:
        model = WebhookEndpoint
        fields = ["organization", "url", "events"]

    def clean_url(self) -> str:
        try:
            return endpoints.endpoint_url_validate(url=self.cleaned_data.get("url"))
        except ApplicationError as exc:
            raise forms.ValidationError(exc.details.get("url") or exc.message) from exc

    def clean_events(self) -> list[str]:
        try:
            return endpoints.endpoint_events_validate(events=self.cleaned_data.get("events") or [])
        except ApplicationError as exc:
            raise forms.ValidationError(exc.details.get("events") or exc.message) from exc

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.refusal:
            raise forms.ValidationError(self.refusal)
        organization = cleaned.get("organization")
        if organization is not None:
            # The form's early word; endpoint_create checks again under the organization's lock.
            try:
                endpoints.endpoints_cap_check(organization_id=organization.pk)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "organization", "is_active", "disabled_at", "consecutive_failures", "created_at"]
    list_filter = ["is_active", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["url", "id", "organization__name"]
    list_select_related = ["organization"]
    # The secret is never shown after creation: it is excluded from every form and list.
    readonly_fields = [
        "id",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "consecutive_failures",
        "previous_secret_expires_at",
        "deleted_at",
    ]
    actions = ["reenable"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = WebhookEndpointAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        refusal = getattr(request, _REFUSAL, None)
        if obj is None and refusal:
            form = type(form.__name__, (form,), {"refusal": refusal})
        return form

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except _CreateRefused as refused:
            # The admin's transaction is rolled back (nothing stored); the same POST is answered again, its form
            # invalid with the service's reason, so the operator gets what they typed back beside the error.
            setattr(request, _REFUSAL, refused.message)
            return super().add_view(request, form_url, extra_context)

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        if obj is None:
            return ["organization", "url", "events"]
        return ["id", "organization", "url", "events", *self.readonly_fields[1:]]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        if obj is None:
            return []
        return ["organization", "url", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            issued = endpoints.endpoint_create(organization=obj.organization, url=obj.url, events=obj.events)
        except ApplicationError as exc:
            # The form's checks passed but the service, under the organization's lock, refused: another endpoint
            # took the last place meanwhile (or the URL's host now resolves elsewhere). Raised out of the admin's
            # transaction so nothing of this save is kept; add_view answers with the form.
            raise _CreateRefused(exc.message) from exc
        obj.pk = issued.endpoint.pk
        obj.secret = issued.secret
        # Shown by response_add on the page answering this POST: never in a message (a cookie) or the session.
        secret_remember(request, issued.secret)

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue=None):
        page = secret_once_response(
            request,
            model_admin=self,
            obj=obj,
            label="Signing secret",
            note="Copy the signing secret now: it will not be shown again.",
        )
        return page or super().response_add(request, obj, post_url_continue)

    # --- delete: the API's soft delete (events/endpoints.py), never a row delete ----------------------------------
    # A row deleted under the publishers' cached endpoint list would fail every event write of the organization
    # until the cache expires; the service also drops the endpoint's pending deliveries and refreshes that cache.

    def has_delete_permission(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> bool:
        if obj is not None and obj.deleted_at is not None:
            return False  # deleted already: kept as the record of its deliveries
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(self, objs, request: HttpRequest):
        # The confirmation page lists what goes: the endpoints alone (their deliveries and events are kept, so no
        # cascade to collect, nor a delete permission on them to ask for).
        endpoints_only = [str(endpoint) for endpoint in objs]
        return endpoints_only, {WebhookEndpoint._meta.verbose_name_plural: len(endpoints_only)}, set(), []

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        self._delete([obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        self._delete(queryset.filter(deleted_at__isnull=True))

    def _delete(self, rows) -> None:
        for endpoint in rows:
            try:
                endpoints.endpoint_delete(organization=endpoint.organization, endpoint_id=endpoint.id)
            except ApplicationError:  # deleted meanwhile (another operator, the API): the outcome is the same
                continue

    @admin.action(description="Re-enable (reset consecutive failures)")
    def reenable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset.filter(deleted_at__isnull=True):
            endpoints.endpoint_enable(endpoint=endpoint)
        self.message_user(request, "Re-enabled.", messages.SUCCESS)

    # --- the endpoint page's buttons (admin/events/webhookendpoint/change_form.html), each a POST -------------

    def get_urls(self):
        return [
            path(
                "<path:object_id>/rotate-secret/",
                self.admin_site.admin_view(self.rotate_secret_view),
                name="events_webhookendpoint_rotate_secret",
            ),
            path(
                "<path:object_id>/reenable/",
                self.admin_site.admin_view(self.reenable_view),
                name="events_webhookendpoint_reenable",
            ),
            path(
                "<path:object_id>/ping/", self.admin_site.admin_view(self.ping_view), name="events_webhookendpoint_ping"
            ),
            *super().get_urls(),
        ]

    def _endpoint_for_button(self, request: HttpRequest, object_id: str) -> WebhookEndpoint | HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id, deleted_at__isnull=True)
        if not self.has_change_permission(request, endpoint):
            return HttpResponse(status=403)
        return endpoint

    def _back_to(self, endpoint: WebhookEndpoint) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:events_webhookendpoint_change", args=[endpoint.pk]))

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A new secret, shown once on the page answering this POST (as the add page does)."""
        endpoint = self._endpoint_for_button(request, object_id)
        if isinstance(endpoint, HttpResponse):
            return endpoint
        try:
            issued = endpoints.endpoint_secret_rotate(endpoint_id=endpoint.id)
        except ApplicationError as exc:  # deleted since the page was shown
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:events_webhookendpoint_changelist"))
        secret_remember(request, issued.secret)
        until = issued.endpoint.previous_secret_expires_at
        overlap = f"The old secret keeps signing beside it until {iso_utc(until)}." if until else ""
        return secret_once_response(
            request,
            model_admin=self,
            obj=issued.endpoint,
            label="New signing secret",
            note=f"Copy the new signing secret now: it will not be shown again. {overlap}".strip(),
        )

    def reenable_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint_for_button(request, object_id)
        if isinstance(endpoint, HttpResponse):
            return endpoint
        endpoints.endpoint_enable(endpoint=endpoint)
        self.message_user(request, "Re-enabled.", messages.SUCCESS)
        return self._back_to(endpoint)

    def ping_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        endpoint = self._endpoint_for_button(request, object_id)
        if isinstance(endpoint, HttpResponse):
            return endpoint
        try:
            result = endpoint_ping(endpoint=endpoint)
        except ApplicationError as exc:  # another ping of the organization in flight
            self.message_user(request, exc.message, messages.WARNING)
            return self._back_to(endpoint)
        except RedisError:  # the organization's ping lock lives in Redis (the API answers 503)
            self.message_user(request, REDIS_DOWN, messages.ERROR)
            return self._back_to(endpoint)
        if result.ok:
            self.message_user(request, f"Ping delivered: HTTP {result.status} in {result.duration_ms} ms.")
        else:
            self.message_user(request, f"Ping failed after {result.duration_ms} ms: {result.error}", messages.WARNING)
        return self._back_to(endpoint)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the outbox's record of what was sent to whom: made and kept by the system


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["id", "type", "organization", "created_at"]
    list_filter = ["type"]
    search_fields = ["id", "ordering_key"]
    list_select_related = ["organization"]
    show_full_result_count = False


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["event", "endpoint", "status", "attempts", "next_attempt_at", "last_status_code", "delivered_at"]
    list_filter = ["status"]
    search_fields = ["event__id", "endpoint__url"]
    list_select_related = ["event", "endpoint"]
    raw_id_fields = ["event", "endpoint"]
    show_full_result_count = False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ["delivery", "attempted_at", "status_code", "error", "duration_ms"]
    raw_id_fields = ["delivery"]
    show_full_result_count = False
