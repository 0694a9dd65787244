"""What one body of Meta's statuses says of each wamid, folded into the single move it implies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from broadcasts.models import SendStatus
from whatsapp.errors import status_failure_classify
from whatsapp.inbound.statuses import StatusUpdate

# Meta's words -> ours. "sent" (and anything unknown) moves nothing: the Graph API's 200 made it SENT.
META_STATUSES = {"delivered": SendStatus.DELIVERED, "read": SendStatus.READ, "failed": SendStatus.FAILED}

# The statuses a send may be in for a move to the key to apply.
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    SendStatus.DELIVERED: (SendStatus.SENT,),
    SendStatus.READ: (SendStatus.SENT, SendStatus.DELIVERED),
    SendStatus.FAILED: (SendStatus.SENT, SendStatus.DELIVERED),
}


@dataclass
class Fold:
    """Everything one body says about one wamid, folded into the single move it implies."""

    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    error_code: str = ""
    error_title: str = ""
    error_message: str = ""
    # As an answer to the POST with that code would say (whatsapp/errors.py's table, docs/rules.md).
    error_retryable: bool = False
    # The change's metadata.phone_number_id ("" when unknown): a send of another channel is not moved.
    phone_number_id: str = ""
    # The user's BSUID Meta named (``recipient_user_id``): stored on a send that has none, with the move.
    user_id: str = ""

    @property
    def target(self) -> str:
        # A read message was delivered and did not fail: READ wins over anything else in one body.
        if self.read_at is not None:
            return SendStatus.READ
        if self.failed_at is not None:
            return SendStatus.FAILED
        return SendStatus.DELIVERED


def _error(update: StatusUpdate) -> tuple[str, str, str]:
    """(code, title, message) from ``errors[0]``; the message prefers ``error_data.details``."""
    first = update.first_error
    code = first.code if first is not None else None
    title = first.title[:255] if first is not None else ""
    message = (first.details or first.message) if first is not None else ""
    return (code if code is not None else "unknown")[:64], title, message or title


def _failure_retryable(update: StatusUpdate) -> bool:
    """``retryable`` of a failed status: its ``errors[0].code`` classed as an answer to the POST with that code
    would be (whatsapp/errors.py), so a send's error reads the same whichever way it arrived."""
    first = update.first_error
    return status_failure_classify(first.code if first is not None else None)[1]


def statuses_fold(statuses: Iterable[StatusUpdate]) -> dict[str, Fold]:
    folds: dict[str, Fold] = {}
    for update in statuses:
        wamid = update.wamid
        target = META_STATUSES.get(update.status)
        if len(wamid) > 128 or target is None:
            continue
        # An unreadable timestamp means "now".
        at = update.timestamp or timezone.now()
        fold = folds.setdefault(wamid, Fold())
        fold.phone_number_id = fold.phone_number_id or update.phone_number_id
        fold.user_id = fold.user_id or update.recipient_user_id
        if target == SendStatus.DELIVERED:
            fold.delivered_at = min(fold.delivered_at or at, at)
        elif target == SendStatus.READ:
            fold.read_at = min(fold.read_at or at, at)
        else:
            fold.failed_at = min(fold.failed_at or at, at)
            fold.error_code, fold.error_title, fold.error_message = _error(update)
            fold.error_retryable = _failure_retryable(update)
    return folds


def delivered_at_of(target: str, fold: Fold) -> datetime | None:
    # Decision: a READ that arrives without DELIVERED also stamps delivered_at (with the read
    # time), because a read message was necessarily delivered; a later "delivered" is then ignored.
    if target == SendStatus.READ:
        return fold.delivered_at or fold.read_at
    return fold.delivered_at
