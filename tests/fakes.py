"""A scripted fake probe for pacing tests: connect, one read, close in `finally`, like the real probes; and a
pacer that only logs what probes tell their link.

Each attempt against a device takes the next step of that device's script: a reply delay in seconds (the read
answers after that long), or a Status to end with (TIMEOUT hangs until cancelled, like a silent device). It logs
every packet the Link let through, with its virtual time, so tests can check what the device would have seen.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from otprobe.contract import Kind, Operation, Probe
from otprobe.link import Link
from otprobe.model import Observation, Status, Target

Step = float | Status


@dataclass
class Wire:
    """What devices received: (time, ip, kind) per packet, and the connections open per device."""

    packets: list[tuple[float, str, Kind]] = field(default_factory=list)
    open_now: dict[str, int] = field(default_factory=dict)
    most_open: dict[str, int] = field(default_factory=dict)

    def record(self, ip: str, kind: Kind) -> None:
        self.packets.append((asyncio.get_running_loop().time(), ip, kind))
        if kind is Kind.CONNECT:
            self.open_now[ip] = self.open_now.get(ip, 0) + 1
            self.most_open[ip] = max(self.most_open.get(ip, 0), self.open_now[ip])
        elif kind is Kind.CLOSE:
            self.open_now[ip] -= 1

    def times(self, ip: str | None = None) -> list[float]:
        return [t for t, device, _ in self.packets if ip is None or device == ip]


class ScriptedProbe(Probe):
    name = "modbus"  # the allowlist is keyed by protocol; these are Modbus's transport and FC43 codes
    transports = ("tcp",)
    default_port = 1502
    operations = (
        Operation("connect", "tcp:connect", Kind.CONNECT),
        Operation("read", "fc:0x2B/mei:0x0E"),
        Operation("close", "tcp:close", Kind.CLOSE),
    )

    def __init__(self, wire: Wire, scripts: dict[str, list[Step]] | None = None, default: Step = 0.01) -> None:
        super().__init__()
        self.wire = wire
        self.scripts = scripts or {}
        self.default = default
        self.attempts: dict[str, int] = {}

    def max_packets(self) -> int:
        return 3

    async def run(self, link: Link, target: Target) -> Observation:
        self.attempts[target.ip] = self.attempts.get(target.ip, 0) + 1
        script = self.scripts.get(target.ip, [])
        step = script.pop(0) if script else self.default
        if step is Status.REFUSED:
            return Observation(target.ip, self.name, self.port, Status.REFUSED)
        async with link.op("connect"):
            self.wire.record(target.ip, Kind.CONNECT)
        try:
            async with link.op("read"):
                self.wire.record(target.ip, Kind.REQUEST)
                if step is Status.TIMEOUT:
                    await asyncio.Event().wait()  # a silent device: only the session timeout ends this
                if isinstance(step, Status):
                    return Observation(target.ip, self.name, self.port, step)
                await asyncio.sleep(step)
            return Observation(target.ip, self.name, self.port, Status.IDENTIFIED)
        finally:
            async with link.op("close"):
                self.wire.record(target.ip, Kind.CLOSE)


class PacerLog:
    """A pacer that grants at once and logs what the link told it: each granted kind, "ended" when the device closed."""

    def __init__(self) -> None:
        self.events: list[Kind | str] = []

    async def acquire(self, kind: Kind, packets: int) -> None:
        self.events.append(kind)

    async def depart(self, kind: Kind, packets: int) -> None:
        return None

    def note_closed(self) -> None:
        self.events.append("ended")
