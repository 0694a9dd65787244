"""The errors of one body: every message under its path (``recipients[17].to``), all reported at once."""

Errors = dict[str, list[str]]


def error_add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)
