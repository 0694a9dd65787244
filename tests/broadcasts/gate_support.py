"""A gate's context for tests of the admission gates (broadcasts/delivery/gates/admission.py)."""

from datetime import UTC, datetime

from broadcasts.delivery.gates.admission import GateContext


def gate_ctx(organization_id: int, category: str = "MARKETING") -> GateContext:
    return GateContext(
        broadcast_id="b" * 24,
        organization_id=organization_id,
        channel_id="c" * 24,
        template_category=category,
        now=datetime.now(UTC),
    )
