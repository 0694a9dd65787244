"""What a ``failed`` status starts besides its send's move: Meta's per-user marketing limit (131049) holds
the number, a user's stop (131050) suppresses it (docs/rules.md). Each effect is its rule's own function
(``marketing_holds.holds_start_for_failed``, ``suppressions.suppressions_add_for_failed``), the same the POST's
answer calls (delivery/outcomes.py); this module only hands them the sends a body moved to FAILED."""

from __future__ import annotations

from broadcasts.rules.marketing_holds import holds_start_for_failed
from broadcasts.rules.suppressions import suppressions_add_for_failed
from broadcasts.status_updates.folding import Fold


def failed_effects_apply(*, items: list[tuple[int, Fold]], done: list[tuple[int, str]]) -> None:
    """The effects of the sends a ``failed`` status moved to FAILED (``done``: the moved ids), from the status's
    error and timestamp, in the same transaction. Nothing (no query) when none failed with 131049 or 131050."""
    moved = {send_id for send_id, _ in done}
    failures = [(send_id, fold.error_code, fold.failed_at) for send_id, fold in items if send_id in moved]
    holds_start_for_failed(failures=failures)
    suppressions_add_for_failed(failures=failures)
