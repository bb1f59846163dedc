"""The probe contract: what a probe declares, and the shape every probe module follows.

A probe is a class with class-level facts (name, transport, default port, operations) and one coroutine,
`run(link, target)`. It never opens sockets on its own authority: every packet is announced to the
`Link` the core hands it, which checks the allowlist, the declaration and the budget, waits for pacing
tokens and writes the audit record before the library call that sends it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from otprobe.link import Link
    from otprobe.model import Observation, Target


class Category(StrEnum):
    """nmap's contract, enforced: safe runs by default; intrusive only when a profile enables it with a reason."""

    SAFE = "safe"
    INTRUSIVE = "intrusive"


class Kind(StrEnum):
    """What an operation does to the device's resources; the scheduler treats connects and closes specially."""

    CONNECT = "connect"  # opens a TCP connection (takes a connection slot on the device)
    REQUEST = "request"  # one request segment on an open connection
    CLOSE = "close"  # ends a connection; always allowed, even after the deadline
    DATAGRAM = "datagram"  # one UDP datagram


@dataclass(frozen=True)
class Operation:
    """One thing a probe may put on the wire."""

    name: str  # probe-local name, e.g. "read_device_id"
    code: str  # wire code, the key into otprobe.safety, e.g. "fc:0x2B/mei:0x0E"
    kind: Kind = Kind.REQUEST
    packets: int = 1  # packets the device must handle each time it is sent
    category: Category = Category.SAFE
    description: str = ""


class Probe(ABC):
    """Base of every protocol probe. Subclasses fill in the class variables and `run`."""

    name: ClassVar[str]
    transport: ClassVar[str]  # "tcp", "udp" or "tcp+udp"
    default_port: ClassVar[int]
    operations: ClassVar[tuple[Operation, ...]]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        # options: this protocol's section of the profile (port, unit_ids, rack_slots, enabled intrusive ops...)
        self.options: dict[str, Any] = dict(options or {})

    @property
    def port(self) -> int:
        return int(self.options.get("port", self.default_port))

    @classmethod
    def operation(cls, name: str) -> Operation:
        for op in cls.operations:
            if op.name == name:
                return op
        raise KeyError(name)

    @abstractmethod
    def max_packets(self) -> int:
        """Worst-case packets one run of this probe sends to one device with these options (the budget)."""

    @abstractmethod
    async def run(self, link: Link, target: Target) -> Observation:
        """Identify one device. Must close every connection it opened, on every path."""
