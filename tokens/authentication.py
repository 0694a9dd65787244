"""DRF authentication for ``Authorization: Bearer kbai_pk_<secret>`` (CONTRACT section 3)."""

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tokens.models import AccessToken
from tokens.services import token_authenticate


class TokenUser:
    """The request's principal: the organization behind a token, not a Django user."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, token: AccessToken) -> None:
        self.token = token
        self.organization = token.organization
        self.pk = f"token:{token.pk}"

    def __str__(self) -> str:
        return f"token {self.token.prefix}"


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[TokenUser, AccessToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # the permission answers 401 "missing"
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise exceptions.AuthenticationFailed("Malformed Authorization header; expected 'Bearer kbai_pk_...'.")
        token = token_authenticate(raw=parts[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired token.")
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
