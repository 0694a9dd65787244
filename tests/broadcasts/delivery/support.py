"""Helpers of the delivery tests that watch a broadcast go out for real."""

from broadcasts.models import Broadcast, Send
from tests.delivery_support import broadcast_settled, wait_for


def sends_by_number(broadcast) -> dict[str, Send]:
    return {s.to: s for s in Send.objects.filter(broadcast=broadcast)}


def settle(broadcast, timeout=30):
    try:
        wait_for(lambda: broadcast_settled(broadcast.id), timeout=timeout, message=f"broadcast {broadcast.id} settled")
    except AssertionError as exc:
        rows = list(
            Send.objects.filter(broadcast=broadcast).values(
                "to", "status", "attempts", "next_attempt_at", "lease_expires_at", "error_code"
            )
        )
        status = Broadcast.objects.get(id=broadcast.id).status
        raise AssertionError(f"{exc}: broadcast {status}, sends {rows}") from None
    broadcast.refresh_from_db()
    return broadcast
