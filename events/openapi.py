"""The customer events in the OpenAPI 3.1 schema (``GET /v1/schema``, top-level ``webhooks``): every event type with
its body and the signature headers of docs/api.md.

drf-spectacular (0.27.1+) renders ``SPECTACULAR_SETTINGS["WEBHOOKS"]``, a list of import paths to the
``OpenApiWebhook`` objects below (config/settings.py names each). Each is given as a raw operation object, because
drf-spectacular's webhook views drop header parameters, and the headers are half of what a receiver needs.

This is documentation only: the payloads are built by their producers (``broadcasts/notifications.py`` for
``message.*`` and ``broadcast.*``, ``events/ping.py`` for ``ping``) and ``events`` imports none of them; the tests
validate the bodies actually POSTed against these schemas, so the two cannot drift apart unnoticed.
"""

from typing import Any

from drf_spectacular.utils import OpenApiWebhook

from events.models import EventType

Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    """OpenAPI 3.1 (JSON Schema 2020-12) null: the type list gains "null" (``nullable`` is gone in 3.1)."""
    return {**schema, "type": [schema["type"], "null"]}


def _header(name: str, description: str, pattern: str) -> Schema:
    """A required string header of every event POST."""
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern},
    }


SIGNATURE_HEADERS: list[Schema] = [
    _header(
        "X-Webhook-Id",
        "The event id, the same on every retry: de-duplicate on it.",
        "^evt_[0-9a-f]{24}$",
    ),
    _header(
        "X-Webhook-Timestamp",
        "Unix seconds of this attempt. Reject a timestamp far from your clock (e.g. more than 5 min).",
        "^[0-9]+$",
    ),
    _header(
        "X-Webhook-Signature",
        "Space-separated `v1=<hex HMAC-SHA256(key = the secret's UTF-8 bytes, message = \"<X-Webhook-"
        "Timestamp>.<raw body>\")>`, one per signing secret (two during a secret rotation's overlap, the new one "
        "first). Accept the request when any of them matches.",
        "^v1=[0-9a-f]{64}( v1=[0-9a-f]{64})*$",
    ),
    _header(
        "webhook-id",
        "Standard Webhooks: the event id (the same as X-Webhook-Id).",
        "^evt_[0-9a-f]{24}$",
    ),
    _header(
        "webhook-timestamp",
        "Standard Webhooks: Unix seconds of this attempt (the same as X-Webhook-Timestamp).",
        "^[0-9]+$",
    ),
    _header(
        "webhook-signature",
        "Standard Webhooks: space-separated `v1,<base64 HMAC-SHA256(key = base64-decoded part of the "
        'secret after "whsec_", message = "<webhook-id>.<webhook-timestamp>.<raw body>")>`, one per signing secret '
        "(new first). The `standardwebhooks` and svix libraries verify it: `Webhook(secret).verify(body, headers)`.",
        "^v1,[A-Za-z0-9+/]+=*( v1,[A-Za-z0-9+/]+=*)*$",
    ),
]

RESPONSES: Schema = {
    "2XX": {"description": "Received: any 2xx answer delivers the event (its body is ignored)."},
    "default": {
        "description": "Anything else (another status, a redirect, no complete answer within 10 s) is a failed "
        "attempt: retried with exponential backoff for 24 h; 50 failed attempts in a row disable the endpoint."
    },
}

BROADCAST_STATUSES = ["PENDING", "IN_PROGRESS", "PAUSED", "COMPLETED", "FAILED", "CANCELLED"]
SUPPRESSION_SOURCES = ["api", "user_preferences", "131050"]


def message_data(status: str) -> Schema:
    error = {
        "type": "object",
        "description": "Why the message failed: Meta's error code (or ours, e.g. `opted_out`) and its message.",
        "required": ["code", "message", "retryable"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "retryable": {"type": "boolean"},
        },
    }
    return {
        "type": "object",
        "required": ["broadcast_id", "index", "to", "message_id", "status", "error", "meta_data"],
        "properties": {
            "broadcast_id": {"type": "string", "description": "The broadcast of POST /v1/messages/bulk."},
            "index": {"type": "integer", "minimum": 0, "description": "The recipient's position in the request."},
            "to": {"type": "string", "description": "The recipient, E.164.", "examples": ["+34600000001"]},
            "message_id": _nullable({"type": "string", "description": "Meta's wamid; null when never accepted."}),
            "status": {"type": "string", "const": status},
            "error": _nullable(error) if status == "FAILED" else {"type": "null"},
            "meta_data": {"description": "The recipient's `meta_data` of the request, as it was given (any JSON)."},
        },
    }


def broadcast_data() -> Schema:
    counts = {
        "type": "object",
        "description": "Sends per status, every key present.",
        "required": ["pending", "sent", "delivered", "read", "failed", "cancelled"],
        "properties": {
            key: {"type": "integer", "minimum": 0}
            for key in ("pending", "sent", "delivered", "read", "failed", "cancelled")
        },
    }
    paused_reason = {
        "type": "object",
        "description": "Why it was paused (on broadcast.paused): `manual` on request, or the account-level error.",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    }
    return {
        "type": "object",
        "required": ["broadcast_id", "status", "counts", "error_rate", "completed_at"],
        "properties": {
            "broadcast_id": {"type": "string"},
            "status": {"type": "string", "enum": BROADCAST_STATUSES},
            "counts": counts,
            "error_rate": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "failed / (total - pending - cancelled); 0 when nothing was attempted.",
            },
            "completed_at": _nullable({"type": "string", "format": "date-time"}),
            "paused_reason": paused_reason,
        },
    }


def suppression_data() -> Schema:
    return {
        "type": "object",
        "required": ["to", "source", "reason"],
        "properties": {
            "to": {"type": "string", "description": "The number, E.164."},
            "source": {"type": "string", "enum": SUPPRESSION_SOURCES},
            "reason": _nullable({"type": "string"}),
        },
    }


def ping_data() -> Schema:
    return {
        "type": "object",
        "required": ["endpoint_id", "message"],
        "properties": {"endpoint_id": {"type": "string"}, "message": {"type": "string", "const": "ping"}},
    }


def event_schema(event_type: str, data: Schema) -> Schema:
    """The body every event shares: ``{"id", "type", "created_at", "data"}``."""
    event_type = str(event_type)  # an EventType member renders as its value
    return {
        "type": "object",
        "required": ["id", "type", "created_at", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$", "description": "Stable across retries."},
            "type": {"type": "string", "const": event_type},
            "created_at": {"type": "string", "format": "date-time", "description": "When it happened (UTC)."},
            "data": data,
        },
    }


def _webhook(event_type: str, *, summary: str, description: str, data: Schema) -> OpenApiWebhook:
    event_type = str(event_type)
    operation = {
        "operationId": "event_" + event_type.replace(".", "_"),
        "summary": summary,
        "description": description,
        "tags": ["events"],
        "parameters": SIGNATURE_HEADERS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": event_schema(event_type, data)}}},
        "responses": RESPONSES,
    }
    return OpenApiWebhook(name=event_type, decorator={"post": operation})


_MESSAGE = "Subject: one message; its events arrive in the order sent < delivered < read | failed."
_BROADCAST = "Counts as GET /v1/messages/bulk/{id} shows them at that moment."

# Every webhook by event type, one row each: (event type, summary, description, data). The tests check it covers
# EventType and matches the settings' list.
WEBHOOKS: dict[str, OpenApiWebhook] = {
    str(event_type): _webhook(event_type, summary=summary, description=description, data=data)
    for event_type, summary, description, data in (
        (EventType.MESSAGE_SENT, "Meta accepted a message", _MESSAGE, message_data("SENT")),
        (EventType.MESSAGE_DELIVERED, "A message reached the recipient's phone", _MESSAGE, message_data("DELIVERED")),
        (EventType.MESSAGE_READ, "The recipient read a message", _MESSAGE, message_data("READ")),
        (
            EventType.MESSAGE_FAILED,
            "A message failed for good",
            _MESSAGE + " `error` says why.",
            message_data("FAILED"),
        ),
        (
            EventType.BROADCAST_PAUSED,
            "A broadcast was paused (by the API, or by an account-level error from Meta)",
            _BROADCAST,
            broadcast_data(),
        ),
        (
            EventType.BROADCAST_COMPLETED,
            "A broadcast ended: status COMPLETED, or FAILED when Meta accepted none of its messages",
            _BROADCAST,
            broadcast_data(),
        ),
        (
            EventType.BROADCAST_CANCELLED,
            "A broadcast was cancelled; its unsent messages count as cancelled",
            _BROADCAST,
            broadcast_data(),
        ),
        (
            EventType.SUPPRESSION_ADDED,
            "A number joined the organization's suppression list (no more MARKETING templates to it)",
            "`source`: the API, Meta's user_preferences stop webhook, or error 131050.",
            suppression_data(),
        ),
        (
            EventType.SUPPRESSION_REMOVED,
            "A number left the organization's suppression list",
            "Removed through the API or by Meta's user_preferences resume webhook.",
            suppression_data(),
        ),
        (
            EventType.PING,
            "A test event, sent on request by POST /v1/webhooks/{id}/ping",
            "Sent to that one endpoint whatever it subscribes to, signed like every event; not retried.",
            ping_data(),
        ),
    )
}

# The import paths SPECTACULAR_SETTINGS["WEBHOOKS"] (config/settings.py) names, one per event type.
MESSAGE_SENT = WEBHOOKS[EventType.MESSAGE_SENT]
MESSAGE_DELIVERED = WEBHOOKS[EventType.MESSAGE_DELIVERED]
MESSAGE_READ = WEBHOOKS[EventType.MESSAGE_READ]
MESSAGE_FAILED = WEBHOOKS[EventType.MESSAGE_FAILED]
BROADCAST_PAUSED = WEBHOOKS[EventType.BROADCAST_PAUSED]
BROADCAST_COMPLETED = WEBHOOKS[EventType.BROADCAST_COMPLETED]
BROADCAST_CANCELLED = WEBHOOKS[EventType.BROADCAST_CANCELLED]
SUPPRESSION_ADDED = WEBHOOKS[EventType.SUPPRESSION_ADDED]
SUPPRESSION_REMOVED = WEBHOOKS[EventType.SUPPRESSION_REMOVED]
PING = WEBHOOKS[EventType.PING]
