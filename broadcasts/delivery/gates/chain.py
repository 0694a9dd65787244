"""The admission gates in the order a send meets them at posting time (see admission.py)."""

from __future__ import annotations

from collections.abc import Sequence

from broadcasts.delivery.gates.admission import Gate
from broadcasts.delivery.gates.budget import budget_gate
from broadcasts.delivery.gates.consent import consent_gate
from broadcasts.delivery.gates.frequency_cap import frequency_cap_gate
from broadcasts.delivery.gates.marketing_hold import marketing_hold_gate
from broadcasts.delivery.gates.messaging_limit import messaging_limit_gate
from broadcasts.delivery.gates.region import region_gate
from broadcasts.delivery.gates.send_window import send_window_gate

# Consent first (an opted-out number fails at once), then the regions Meta sends no marketing to (fail at once, no
# query), then the send window (a send outside it waits, so nothing below counts it), the frequency cap (decided
# only for a send that would be posted now), the waits (marketing hold, messaging limit), and the budget last: only
# a send that would really be posted now reserves its price.
GATES: Sequence[Gate] = (
    consent_gate,
    region_gate,
    send_window_gate,
    frequency_cap_gate,
    marketing_hold_gate,
    messaging_limit_gate,
    budget_gate,
)
