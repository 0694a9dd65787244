"""Helpers of the delivery tests that watch a broadcast go out for real."""

from broadcasts.models import Broadcast, Send
from templates_registry.models import Template
from tests.delivery_support import broadcast_settled, wait_for

# The app secret the sandbox signs Meta's webhooks with in the tests of the `meta_webhooks` fixture (conftest.py).
META_APP_SECRET = "consent-app-secret"


def utility_template(template) -> Template:
    """A UTILITY twin of a MARKETING test template (same body and variables, another name)."""
    return Template.objects.create(
        waba_id=template.waba_id,
        name="order_update",
        language="es",
        status=Template.Status.APPROVED,
        category="UTILITY",
        parameter_format=template.parameter_format,
        components=template.components,
        body_variables=template.body_variables,
    )


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
