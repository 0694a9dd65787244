"""The admin page that shows a just-created secret (API token, endpoint signing secret) once.

It is the rendered answer to the add form's POST: the secret is never put in Django's messages (cookie storage by
default) or the session, so it lives nowhere but in that one response (which the admin marks never-cache).
"""

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

_ATTRIBUTE = "_secret_shown_once"


def secret_remember(request: HttpRequest, secret: str) -> None:
    """Keep the new secret on this request only, for ``secret_once_response`` (called from ``save_model``)."""
    setattr(request, _ATTRIBUTE, secret)


def secret_once_response(
    request: HttpRequest, *, model_admin: admin.ModelAdmin, obj: Model, label: str, note: str
) -> TemplateResponse | None:
    """The one-time page for ``obj``, or None when this request created no secret (then the admin goes on as usual)."""
    secret = getattr(request, _ATTRIBUTE, None)
    if secret is None:
        return None
    opts = model_admin.model._meta
    name = f"admin:{opts.app_label}_{opts.model_name}"
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "title": f"{label} created",
        "object": obj,
        "label": label,
        "note": note,
        "secret": secret,
        "changelist_url": reverse(f"{name}_changelist", current_app=model_admin.admin_site.name),
        "change_url": reverse(f"{name}_change", args=[obj.pk], current_app=model_admin.admin_site.name),
        "add_url": reverse(f"{name}_add", current_app=model_admin.admin_site.name),
    }
    return TemplateResponse(request, "core/admin/secret_once.html", context)
