"""Scope checks: a view names the scope it needs in ``required_scope``."""

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request


class HasRequiredScope(permissions.BasePermission):
    """401 without a valid token, 403 when the token lacks the view's ``required_scope``."""

    message = "This token lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.auth is None:
            raise exceptions.NotAuthenticated("Authentication credentials were not provided.")
        scope = getattr(view, "required_scope", None)
        if scope and not request.auth.has_scope(scope):
            self.message = f"This token lacks the '{scope}' scope."
            return False
        return True
