"""Outbound customer events (CONTRACT section 9): the one entry point other apps call.

Owned by the webhooks issue (5). Callers invoke these AFTER their transaction commits
(``transaction.on_commit``), with ids only; they must be cheap when the organization has no
endpoint (the delivery engine calls them for every chunk of sends).
"""

from collections.abc import Sequence


def message_events_publish(*, send_ids: Sequence[int], status: str) -> None:
    """Record ``message.<status>`` events (status: SENT, DELIVERED, READ, FAILED) for sends that
    just moved to ``status``, and queue their delivery to the organization's endpoints."""
    return None


def broadcast_event_publish(*, broadcast_id: str, event_type: str) -> None:
    """Record ``broadcast.paused`` or ``broadcast.completed`` for a broadcast and queue its delivery."""
    return None
