"""Scope checks: a view names the scope it needs in ``required_scope``."""

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from tokens.models import AccessToken


class HasRequiredScope(permissions.BasePermission):
    """401 without a valid token, 403 ``insufficient_scope`` when it lacks the view's ``required_scope``.

    A view may name one scope (``required_scope = "messages:bulk"``) or several that are all needed
    (a tuple). A view without ``required_scope`` only needs a live token.
    """

    message = "This token lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, AccessToken):
            raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
        required = getattr(view, "required_scope", None)
        if not required:
            return True
        needed = (required,) if isinstance(required, str) else tuple(required)
        missing = [scope for scope in needed if not request.auth.has_scope(scope)]
        if missing:
            raise exceptions.PermissionDenied(f"This token lacks the '{', '.join(missing)}' scope.")
        return True
