"""What a ``failed`` status starts besides its send's move: Meta's per-user marketing limit (131049) holds
the number, a user's stop (131050) suppresses it, as the POST's answer would (CONTRACT 8, 11)."""

from __future__ import annotations

from collections.abc import Iterable

from broadcasts.models import Send, SuppressionSource
from broadcasts.rules.marketing_holds import holds_start, is_marketing_limit
from broadcasts.rules.suppressions import USER_STOPPED_MARKETING, USER_STOPPED_REASON, suppressions_add_many
from broadcasts.status_updates.folding import Fold


def failed_holds_start(*, items: list[tuple[int, Fold]], done: list[tuple[int, str]]) -> None:
    """Sends a ``failed`` status moved to FAILED with Meta's per-user marketing limit (131049) hold their number
    from the status's timestamp (broadcasts/rules/marketing_holds.py), in the same transaction. Nothing otherwise."""
    held = [(send_id, fold.failed_at) for send_id, fold in items if is_marketing_limit(fold.error_code)]
    if held:
        moved = {send_id for send_id, _ in done}
        holds_start(failures=[(send_id, at) for send_id, at in held if send_id in moved and at is not None])


def opted_out_record(*, failed: Iterable[tuple[int, Fold]], moved: Iterable[int]) -> None:
    """A ``failed`` status with 131050 suppresses the number, as the POST's answer does (CONTRACT 8, 11)."""
    moved_ids = set(moved)
    ids = [send_id for send_id, fold in failed if send_id in moved_ids and fold.error_code == USER_STOPPED_MARKETING]
    if ids:
        pairs = Send.objects.filter(id__in=ids).values_list("broadcast__organization_id", "to")
        suppressions_add_many(entries=pairs, source=SuppressionSource.ERROR_131050, reason=USER_STOPPED_REASON)
