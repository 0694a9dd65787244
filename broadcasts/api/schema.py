"""OpenAPI description of the bearer token, so every token-protected operation shows it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "tokens.authentication.BearerTokenAuthentication"
    name = "bearerToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kbai_pk_<secret>",
            "description": "An access token; bulk endpoints need the `messages:bulk` scope.",
        }
