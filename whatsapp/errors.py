"""Classification of Graph API failures: the ONE table deciding retry, fail or pause (docs/rules.md).

Pure Python, no Django import: the delivery engine, the webhook receiver and the sandbox all share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson


class ErrorClass(StrEnum):
    TRANSIENT = "transient"  # retried for that recipient with backoff
    PERMANENT = "permanent"  # that recipient fails at once
    ACCOUNT = "account"  # the whole broadcast pauses: no retry can fix it
    TEMPLATE = "template"  # Meta paused or disabled the template: the broadcast pauses, as on an account error


# Meta's error codes, https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
TRANSIENT_CODES: frozenset[int] = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057})
PERMANENT_CODES: frozenset[int] = frozenset(
    {100, 131008, 131009, 131026, 131047, 131049, 131050, 130472, 132000, 132001, 132012}
)
# 200-299 (permission errors) are a range, checked apart from this set.
ACCOUNT_CODES: frozenset[int] = frozenset({0, 190, 10, 368, 131031, 131042, 131048})
# Meta's per-user marketing limit: failed at once (never re-posted by the engine), yet `retryable: true`, because a
# `retry` may post it again once MARKETING_LIMIT_HOLD_SECONDS have passed since the failure (docs/rules.md).
MARKETING_LIMIT_CODE = 131049
RETRYABLE_PERMANENT_CODES: frozenset[int] = frozenset({MARKETING_LIMIT_CODE})
# 132015 template paused, 132016 template disabled (docs/rules.md: template-level).
TEMPLATE_CODES: frozenset[int] = frozenset({132015, 132016})

# Meta's titles for the codes we classify, used when an answer carries no title of its own.
TITLES: dict[int, str] = {
    0: "AuthException",
    1: "API Unknown",
    2: "API Service",
    4: "API Too Many Calls",
    10: "Permission Denied",
    100: "Invalid parameter",
    190: "Access token has expired",
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
    131049: "Meta chose not to deliver",
    131050: "User stopped marketing messages",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    132000: "Template Param Count Mismatch",
    132001: "Template does not exist",
    132012: "Template Parameter Format Mismatch",
    132015: "Template is Paused",
    132016: "Template is Disabled",
}


def _code_int(code: int | str | None) -> int | None:
    if code is None or isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    text = str(code).strip()
    return int(text) if text.isdecimal() else None


def _classify_status(http_status: int | None) -> ErrorClass:
    if http_status is None:
        # No answer at all (connection error, timeout): the message may or may not have gone out; try again.
        return ErrorClass.TRANSIENT
    if http_status == 429 or http_status >= 500:
        return ErrorClass.TRANSIENT
    if 400 <= http_status < 500:
        return ErrorClass.PERMANENT
    # A 2xx/3xx without a message id is an answer we do not understand (a proxy, a redirect): try again.
    return ErrorClass.TRANSIENT


def classify(*, code: int | str | None, http_status: int | None) -> ErrorClass:
    """Class of one failed send: Meta's `error.code` decides; the HTTP status only when the code is absent/unknown."""
    number = _code_int(code)
    if number is not None:
        if number in TRANSIENT_CODES:
            return ErrorClass.TRANSIENT
        if number in PERMANENT_CODES:
            return ErrorClass.PERMANENT
        if number in ACCOUNT_CODES or 200 <= number <= 299:
            return ErrorClass.ACCOUNT
        if number in TEMPLATE_CODES:
            return ErrorClass.TEMPLATE
        if http_status is None:
            # A Meta code we do not know, with no status to go by (a `failed` webhook): do not retry blindly.
            return ErrorClass.PERMANENT
    return _classify_status(http_status)


def is_retryable(*, code: int | str | None, error_class: ErrorClass) -> bool:
    """The ``retryable`` stored with a failed send: transient failures, and the permanent ones a later ``retry``
    may fix (131049)."""
    return error_class is ErrorClass.TRANSIENT or _code_int(code) in RETRYABLE_PERMANENT_CODES


def status_failure_classify(code: int | str | None) -> tuple[ErrorClass, bool]:
    """(class, retryable) of a ``failed`` status webhook's ``errors[0].code``: the same table as an answer to the
    POST (there is no HTTP status to go by, so an unknown or missing code is permanent)."""
    error_class = classify(code=code, http_status=None)
    if _code_int(code) is None:
        error_class = ErrorClass.PERMANENT
    return error_class, is_retryable(code=code, error_class=error_class)


@dataclass(frozen=True, slots=True)
class GraphError:
    """One failed Graph API answer, ready to be stored on a send (codes are strings everywhere, docs/api.md)."""

    code: str
    title: str
    message: str
    http_status: int | None
    error_class: ErrorClass
    subcode: str | None = None
    fbtrace_id: str | None = None

    @property
    def retryable(self) -> bool:
        return is_retryable(code=self.code, error_class=self.error_class)

    @property
    def account_level(self) -> bool:
        return self.error_class is ErrorClass.ACCOUNT

    @property
    def pauses_broadcast(self) -> bool:
        """Account- or template-level: the broadcast pauses, and the send waits for resume."""
        return self.error_class in (ErrorClass.ACCOUNT, ErrorClass.TEMPLATE)


def _error_object(body: bytes | str | dict | None) -> dict[str, Any] | None:
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    return error if isinstance(error, dict) else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_graph_error(status: int | None, body: bytes | str | dict | None) -> GraphError:
    """Read Meta's error envelope `{"error": {"code", "message", "error_data": {"details"}}}`; any body is tolerated.

    Without a Meta code the code is `http_<status>` (a word, so it is never mistaken for one of Meta's numbers).
    """
    error = _error_object(body)
    if error is None:
        code_number = None
        message = ""
        title = ""
        subcode = fbtrace = None
    else:
        code_number = _code_int(error.get("code"))
        message = _text(error.get("message"))
        error_data = error.get("error_data")
        details = _text(error_data.get("details")) if isinstance(error_data, dict) else ""
        if details and details not in message:
            message = f"{message}: {details}" if message else details
        title = _text(error.get("error_user_title")) or _text(error.get("title"))
        subcode_number = _code_int(error.get("error_subcode"))
        subcode = str(subcode_number) if subcode_number is not None else None
        fbtrace = _text(error.get("fbtrace_id")) or None

    if code_number is not None:
        code = str(code_number)
        title = title or TITLES.get(code_number, "") or _text(error.get("type")) or "Graph API error"
    else:
        code = f"http_{status}" if status is not None else "no_response"
        title = title or (f"HTTP {status}" if status is not None else "No response")
    if not message:
        message = title
    return GraphError(
        code=code,
        title=title,
        message=message,
        http_status=status,
        error_class=classify(code=code_number, http_status=status),
        subcode=subcode,
        fbtrace_id=fbtrace,
    )


def transport_error(*, code: str, message: str) -> GraphError:
    """A failure with no HTTP answer (`timeout`, `connection_error`): transient, the outcome may be unknown."""
    return GraphError(
        code=code,
        title=code.replace("_", " ").capitalize(),
        message=message,
        http_status=None,
        error_class=ErrorClass.TRANSIENT,
    )
