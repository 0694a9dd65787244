"""DRF authentication for ``Authorization: Bearer kbai_pk_<secret>`` (docs/api.md)."""

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tokens.models import AccessToken
from tokens.services import token_authenticate

# The challenge of every 401 (RFC 6750); the exception handler sends it on each 401.
WWW_AUTHENTICATE = "Bearer"
# "Bearer kbai_pk_" and at most 128 secret characters (tokens.services.TOKEN_RE), with room to spare.
MAX_HEADER_LENGTH = 512


class TokenUser:
    """The request's principal: the organization behind a token, not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, token: AccessToken) -> None:
        self.token = token
        self.organization = token.organization
        self.pk = f"token:{token.pk}"
        self.id = self.pk

    def __str__(self) -> str:
        return f"token {self.token.prefix}"

    def has_perm(self, perm: str, obj=None) -> bool:
        return False  # a token is not a Django user; its rights are its scopes


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Missing header: anonymous (the permission answers 401); anything else but a live token: 401."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, AccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.strip():
            return None
        # A token is short printable ASCII: anything else (NUL, latin-1 bytes, megabytes) is malformed
        # before it is split, hashed or looked up.
        if len(header) > MAX_HEADER_LENGTH or not header.isascii() or not header.isprintable():
            raise exceptions.AuthenticationFailed("Malformed Authorization header; expected 'Bearer kbai_pk_...'.")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed("Malformed Authorization header; expected 'Bearer kbai_pk_...'.")
        token = token_authenticate(raw=parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE
