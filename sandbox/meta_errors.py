"""Meta's error codes as the sandbox answers them: the HTTP status, the message and the Graph error envelope.

The sandbox keeps its own copy of these few facts on purpose: it plays Meta, so it must not share the table our
client classifies with (a bug in one would then hide in the other).
"""

from __future__ import annotations

import secrets
from typing import Any

# HTTP status Meta answers with for an error code (most Graph errors are a plain 400).
ERROR_STATUS: dict[int, int] = {
    0: 401,
    190: 401,
    10: 403,
    368: 403,
    131031: 403,
    4: 429,
    80007: 429,
    130429: 429,
    131056: 429,
    131048: 429,
    1: 500,
    2: 503,
    131000: 500,
    131016: 503,
    131057: 503,
}
ERROR_MESSAGES: dict[int, str] = {
    0: "AuthException",
    1: "An unknown error occurred",
    2: "Service temporarily unavailable",
    4: "Application request limit reached",
    10: "Application does not have permission for this action",
    100: "Invalid parameter",
    190: "Error validating access token: Session has expired",
    368: "Temporarily blocked for policies violations",
    80007: "Rate limit issues",
    130429: "Rate limit hit",
    130472: "User's number is part of an experiment",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131026: "Message undeliverable",
    131031: "Account has been locked",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    131062: "Business-scoped User ID recipients are not supported for this message",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is paused due to low quality so it cannot be sent in a template message",
    132016: "Template has been paused too many times due to low quality and is now permanently disabled",
}
# `httpNNN` outcomes answer a Meta error body with the generic code Meta uses for that status.
STATUS_CODES: dict[int, int] = {429: 4, 500: 1, 502: 1, 503: 2, 504: 2}


def meta_error(code: int, *, details: str | None = None, message: str | None = None) -> dict[str, Any]:
    """Meta's error envelope, as the Graph API answers it."""
    text = message or ERROR_MESSAGES.get(code, "An unknown error occurred")
    return {
        "error": {
            "message": f"(#{code}) {text}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or text},
            "fbtrace_id": "A" + secrets.token_urlsafe(16),
        }
    }


def status_error(code: int | None, *, details: str | None = None) -> dict[str, Any]:
    """The `errors[0]` of a `failed` status webhook."""
    code = code or 131026
    text = ERROR_MESSAGES.get(code, "Message failed to send")
    return {
        "code": code,
        "title": text,
        "message": text,
        "error_data": {"details": details or f"{text} (sandbox)"},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
