"""The send-window gate alone: a send outside its window is deferred until its zone's next opening (reason
``send_window``), one inside goes on; no window, no verdict; one window computation per distinct zone."""

from datetime import UTC, datetime
from unittest import mock

from broadcasts.delivery.claims import Claimed
from broadcasts.delivery.gates import send_window as gate_module
from broadcasts.delivery.gates.admission import GateContext
from broadcasts.delivery.gates.send_window import send_window_gate
from broadcasts.models import WaitReason

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # Monday: 13:00 Madrid, 06:00 Mexico City, 21:00 Tokyo


def ctx(window) -> GateContext:
    return GateContext(
        broadcast_id="b", organization_id=1, channel_id="c", template_category="MARKETING", now=NOW, send_window=window
    )


def send(i: int, zone: str) -> Claimed:
    return Claimed(id=i, index=i, to=f"+3491234567{i}", variables={}, attempts=1, time_zone=zone)


def test_sends_outside_their_window_wait_until_it_opens():
    sends = [send(1, "Europe/Madrid"), send(2, "America/Mexico_City"), send(3, "Asia/Tokyo"), send(4, "Europe/Madrid")]
    verdict = send_window_gate(ctx({"start": "09:00", "end": "21:00"}), sends)
    assert [s.id for s in verdict.ready] == [1, 4]
    waits = {s.id: (wait, reason) for s, wait, reason in verdict.deferred}
    assert waits == {2: (3 * 3600.0, WaitReason.SEND_WINDOW), 3: (12 * 3600.0, WaitReason.SEND_WINDOW)}
    assert not verdict.failed and not verdict.returned and verdict.pause is None


def test_without_a_window_every_send_goes_on():
    sends = [send(1, ""), send(2, "")]
    assert send_window_gate(ctx(None), sends).ready == sends


def test_one_computation_per_distinct_zone():
    sends = [send(i, zone) for i in range(300) for zone in ("Europe/Madrid", "Asia/Tokyo")]
    with mock.patch.object(gate_module, "zones_open_at", wraps=gate_module.zones_open_at) as computed:
        verdict = send_window_gate(ctx({"start": "09:00", "end": "21:00"}), sends)
    assert computed.call_count == 1 and computed.call_args.args[1] == {"Europe/Madrid", "Asia/Tokyo"}
    assert len(verdict.ready) == 300 and len(verdict.deferred) == 300
