"""What the delivery benchmarks share (bench_delivery.py and its scenarios): the workers' CPU time, the load, the
numbers, a channel with its template, and the wait for broadcasts to end. Import after django.setup()."""

from __future__ import annotations

import os
import time
from pathlib import Path

from broadcasts.models import Broadcast, Send
from templates_registry.models import Channel, Template
from tokens.models import Organization

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime (fields 14 and 15 of stat; 12 and 13 after the command name)
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def number(i: int, base: int) -> str:
    return f"+57300{base + i:07d}"


def make_channel(org: Organization, n: int, max_mps: int) -> tuple[Channel, Template]:
    channel = Channel.objects.create(
        organization=org,
        phone_number_id=f"1000000000{n:05d}",
        waba_id=f"2000000000{n:05d}",
        access_token=f"bench-token-{n}",
        max_mps=max_mps,
    )
    template = Template.objects.create(
        waba_id=channel.waba_id,
        name="welcome_v2",
        language="es",
        status=Template.Status.APPROVED,
        category="MARKETING",
        parameter_format=Template.ParameterFormat.NAMED,
        components=[{"type": "BODY", "text": "Hola {{nombre}}, tu saldo es {{monto}}"}],
        body_variables=["nombre", "monto"],
    )
    return channel, template


def steady_rate(arrivals: list[float], *, edge: float = 1.0) -> float:
    """Sends per second between the first arrival + ``edge`` and the last - ``edge`` (sorted epoch seconds): the
    pace once running, without the start's ramp (the plan, the first grant) and the end's tail (the last answers);
    first to last when the run is too short to trim."""
    if len(arrivals) < 2:
        return 0.0
    start, end = arrivals[0] + edge, arrivals[-1] - edge
    if end - start < 1.0:
        return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    return sum(1 for t in arrivals if start <= t < end) / (end - start)


def wait_done(ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while Broadcast.objects.filter(id__in=ids).exclude(status__in=["COMPLETED", "FAILED", "CANCELLED"]).exists():
        if time.monotonic() > deadline:
            pending = Send.objects.filter(broadcast_id__in=ids, status="PENDING").count()
            raise SystemExit(f"timed out: {pending} sends still pending")
        time.sleep(0.1)
