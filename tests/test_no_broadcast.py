"""No broadcast, ever: proved on full EtherNet/IP probe runs, UDP path and TCP path.

The rule and its reasons: docs/safety.md#no-broadcast-no-multicast.

Every socket method that could broadcast is patched on the `socket.socket` class itself, so the guard sees sockets
made by otprobe, by asyncio (open_connection, datagram endpoints) and by pycomm3 (`socket.socket(...)` inside
pycomm3.socket_ and CIPDriver.discover) alike. SO_BROADCAST is recorded and refused; every connect and sendto
destination is recorded; pycomm3's CIPDriver.discover (which sets SO_BROADCAST and sends from every interface) is
replaced by a function that records the call and raises. Devices listen on 127.0.79.0/24.
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from pycomm3 import CIPDriver
from pycomm3.socket_ import Socket as Pycomm3Socket

from otprobe.contract import Timeouts
from otprobe.link import Link
from otprobe.model import Status, Target
from otprobe.probes.enip import EnipProbe
from simulators.enip_sim import EnipDevice, parse_config
from simulators.faults import Fault
from simulators.recorder import Recorder

PORT = 44818
_hosts = (f"127.0.79.{n}" for n in itertools.count(1))
IDENTITY = {"port": PORT, "vendor_id": 1, "device_type": 14, "product_code": 154, "revision": "21.11",
            "status": 0x0030, "serial": 0x6043BF65, "product_name": "1769-L18ER/A LOGIX5318ER", "state": 3}


@dataclass
class Guard:
    options: list[tuple[int, int]] = field(default_factory=list)
    broadcast_attempts: list[Any] = field(default_factory=list)
    destinations: list[tuple[Any, Any]] = field(default_factory=list)  # (local address, destination)
    discover_calls: int = 0

    def from_probe(self, device: tuple[str, int]) -> set[Any]:
        """Destinations of sockets other than the device's own (its replies go back to the probe's port)."""
        return {dest for local, dest in self.destinations if local != device}


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Guard:
    g = Guard()
    real_setsockopt, real_connect, real_sendto = socket.socket.setsockopt, socket.socket.connect, socket.socket.sendto

    def setsockopt(self: socket.socket, level: int, option: int, *value: Any) -> None:
        g.options.append((level, option))
        if level == socket.SOL_SOCKET and option == socket.SO_BROADCAST:
            g.broadcast_attempts.append(self.getsockname())
            raise PermissionError("SO_BROADCAST refused by the test guard")
        real_setsockopt(self, level, option, *value)

    def connect(self: socket.socket, address: Any) -> None:
        g.destinations.append((self.getsockname(), address))
        real_connect(self, address)

    def sendto(self: socket.socket, data: bytes, *args: Any) -> int:
        address = args[-1]
        g.destinations.append((self.getsockname(), address))
        if not str(address[0]).startswith("127."):
            raise PermissionError(f"sendto {address} refused by the test guard: loopback only")
        return real_sendto(self, data, *args)

    def discover(*_: Any, **__: Any) -> None:
        g.discover_calls += 1
        raise AssertionError("CIPDriver.discover broadcasts and must never be called")

    monkeypatch.setattr(socket.socket, "setsockopt", setsockopt)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "sendto", sendto)
    monkeypatch.setattr(CIPDriver, "discover", classmethod(discover))
    monkeypatch.setattr(CIPDriver, "_broadcast_discover", classmethod(discover))
    return g


def test_guard_sees_every_kind_of_socket(guard: Guard) -> None:
    """The patches are live for plain and pycomm3-made sockets (no traffic: nothing is sent or connected)."""
    Pycomm3Socket(timeout=0.1).close()  # sets SO_KEEPALIVE on its own socket.socket
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE) in guard.options
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(PermissionError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert len(guard.broadcast_attempts) == 1
    with pytest.raises(AssertionError, match="never be called"):
        CIPDriver.discover()
    assert guard.discover_calls == 1


@pytest.mark.parametrize(
    ("fault", "options", "path", "status"),
    [
        ("none", {}, ["udp:0x63"], Status.IDENTIFIED),
        ("none", {"udp": False}, ["enip:0x65", "cip:0x01/class:0x01", "enip:0x66"], Status.IDENTIFIED),
        # garbled over UDP and over TCP alike: the probe tries both, then reports the protocol error
        ("malformed", {}, ["udp:0x63", "enip:0x65", "cip:0x01/class:0x01", "enip:0x66"], Status.PROTOCOL_ERROR),
    ],
    ids=["udp-path", "tcp-path", "udp-then-tcp"],
)
async def test_probe_runs_never_broadcast(
    guard: Guard, fault: str, options: dict[str, Any], path: list[str], status: Status
) -> None:
    host = next(_hosts)
    recorder = Recorder(host)
    device = EnipDevice(host, parse_config(IDENTITY), Fault.from_spec(fault), recorder)
    await device.start()
    try:
        probe = EnipProbe({"port": PORT, **options})
        link = Link(probe, Target(host), timeouts=Timeouts(0.5, 0.5))
        obs = await probe.run(link, Target(host))
    finally:
        await device.stop()
    assert obs.status is status, obs
    assert recorder.operations() == path  # the run really took the path under test
    assert guard.broadcast_attempts == []
    assert (socket.SOL_SOCKET, socket.SO_BROADCAST) not in guard.options
    assert guard.discover_calls == 0
    assert guard.from_probe((host, PORT)) == {(host, PORT)}
