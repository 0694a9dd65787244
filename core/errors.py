"""The one error type of the domain. The API's exception handler turns it into the envelope."""

from typing import Any


class ApplicationError(Exception):
    """A failure the caller can act on, with a stable machine-readable ``code``.

    ``status`` is the HTTP status the API answers with; services choose it because they know
    what went wrong (validation, conflict, not found), views stay thin.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "validation_error",
        status: int = 400,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or {}


class NotFoundError(ApplicationError):
    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message, code="not_found", status=404)


class ConflictError(ApplicationError):
    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code="conflict", status=409, details=details)


class RateLimitedError(ApplicationError):
    """429: come back after ``retry_after_seconds`` (the API answers it as ``Retry-After`` too)."""

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(1, int(retry_after_seconds))
        super().__init__(
            message, code="rate_limited", status=429, details={"retry_after_seconds": self.retry_after_seconds}
        )
