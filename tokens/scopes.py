"""The scopes a token may hold (docs/operations.md)."""

MESSAGES_BULK = "messages:bulk"
MESSAGES_SEND = "messages:send"
TEMPLATES_READ = "templates:read"
WEBHOOKS_MANAGE = "webhooks:manage"

KNOWN_SCOPES: tuple[str, ...] = (MESSAGES_BULK, MESSAGES_SEND, TEMPLATES_READ, WEBHOOKS_MANAGE)
