"""The send-window gate (docs/rules.md "Campaign controls: send windows"; the rule is broadcasts/rules/send_windows.py):
a send whose recipient's local time is outside its broadcast's window waits (deferred, reason ``send_window``) until
the window next opens: PENDING with ``next_attempt_at`` at that opening, never failed for it and holding no worker
(the run hands it back; the broadcast's wake, or the sweeper, dispatches it again when it falls due).

No query: the window rides in the run's context and each send's zone was resolved at ingest (``Send.time_zone``);
one window computation per distinct zone of the batch. After the gates that fail a send at once, before those that
count or reserve something (marketing hold, messaging limit, budget): a send waiting for its window takes no room.
"""

from __future__ import annotations

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates.admission import Admission, GateContext
from broadcasts.models import WaitReason
from broadcasts.rules.send_windows import window_of, zones_open_at

WAIT_REASON = WaitReason.SEND_WINDOW


def send_window_gate(ctx: GateContext, sends: list[Claimed]) -> Admission:
    if ctx.send_window is None or not sends:
        return Admission(ready=list(sends))
    now = ctx.now
    opens = zones_open_at(window_of(ctx.send_window), {s.time_zone for s in sends}, now)
    verdict = Admission()
    for send in sends:
        wait = (opens[send.time_zone] - now).total_seconds()
        if wait > 0:
            verdict.deferred.append((send, wait, WAIT_REASON))
        else:
            verdict.ready.append(send)
    return verdict
