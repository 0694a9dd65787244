"""Who may see API tokens in the admin, and hiding them on other models' pages.

A token's prefix and name identify a credential that acts for its organization: only staff holding
``tokens.manage_tokens`` (and superusers) see them, on the token pages and everywhere a row points at a token.
"""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

MANAGE_TOKENS = "tokens.manage_tokens"
HIDDEN = "(a token: shown to token managers only)"


def tokens_visible(*, user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(MANAGE_TOKENS))


class TokenFieldsHidden:
    """A ModelAdmin mixin: the fields named in ``token_fields`` (foreign keys to a token) are shown as they are to
    token managers, and replaced by ``token_hidden`` for other staff (on the page and in its form)."""

    token_fields: tuple[str, ...] = ()

    def _token_gate(self, request: HttpRequest, fields) -> list:
        if tokens_visible(user=request.user):
            return list(fields)
        gated = ["token_hidden" if name in self.token_fields else name for name in fields]
        return list(dict.fromkeys(gated))  # one placeholder, however many token fields

    def get_fields(self, request: HttpRequest, obj=None):
        return self._token_gate(request, super().get_fields(request, obj))

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self._token_gate(request, super().get_readonly_fields(request, obj))

    def token_hidden(self, obj) -> str:
        if not any(getattr(obj, f"{name}_id", None) for name in self.token_fields):
            return "-"
        return HIDDEN

    token_hidden.short_description = "API token"
