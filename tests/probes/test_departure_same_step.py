"""The link stamps a packet's departure, and the probe sends it in that same event-loop step.

The caps hold over departure stamps (tests/pacing/test_departure.py); they hold at the device only if the packet really
leaves when it is stamped. A probe that awaited anything between the link's stamp and the system call (a library
that sends from a task of its own, a `wait_for` around a connect) would let other tasks run in between, and on a
busy machine that is where a packet granted on time leaves late. Here a pacer opens a "departure window" at each
stamp that closes at the start of the next loop turn, and the socket calls that put a probe's packets on the wire
(connect, send, sendto, shutdown) are watched: every one must happen inside an open window.

Addresses 127.0.131.x (this file's own).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
from test_fin_not_rst import OPTIONS, PROBES, SECTIONS, TIMEOUTS

from otprobe.contract import Kind
from otprobe.link import Link
from otprobe.model import Status, Target
from otprobe.probes.bacnet import BacnetProbe
from otprobe.probes.snmp import SnmpProbe

# Datagram probes have no FIN to check there, but their packets must leave in the step too. The BACnet device
# rejects ReadPropertyMultiple, so that the probe sends nine datagrams (the fallback), not one.
PROBES = {**PROBES, "bacnet": BacnetProbe}
SECTIONS = {**SECTIONS, "bacnet": {"device_instance": 10401, "object_name": "bCX1-PLANT-ROOM", "vendor_id": 10,
                                   "vendor_name": "TAC", "model_name": "bCX1-CR", "rpm": False,
                                   "firmware_revision": "Bootloader 4.500065", "application_software_version": "4.5"}}
OPTIONS = {**OPTIONS, "bacnet": {}}
# SNMP: the v3 discovery, the user's GetRequest and a GetNext walk of the two entity rows (five datagrams)
PROBES["snmp"] = SnmpProbe
SECTIONS["snmp"] = {"sys_descr": "Hirschmann Railswitch", "sys_object_id": "1.3.6.1.4.1.248.14", "sys_name": "rs20",
                    "v3_users": ["otprobe"], "entities": [{"index": 1, "class": "chassis", "model_name": "RS20"},
                                                          {"index": 2, "class": "module", "contained_in": 1}]}
OPTIONS["snmp"] = {"v3_users": [{"user": "otprobe"}], "walk": "getnext"}

PORT = 15031


class Windows:
    """A pacer that grants at once and opens a departure window at each stamp, closed at the next loop turn."""

    def __init__(self) -> None:
        self.open = False
        self.departures = 0
        self.outside: list[str] = []  # socket calls to the device made with no departure window open
        self.inside = 0

    async def acquire(self, kind: Kind, packets: int) -> None:
        await asyncio.sleep(0.01)  # a grant that takes a while, as a real one does

    async def depart(self, kind: Kind, packets: int) -> None:
        self.departures += 1
        self.open = True
        asyncio.get_running_loop().call_soon(self._close)

    def _close(self) -> None:
        self.open = False

    def sent(self, what: str) -> None:
        if self.open:
            self.inside += 1
        else:
            self.outside.append(what)


def _watch(monkeypatch: pytest.MonkeyPatch, device: tuple[str, int], windows: Windows) -> None:
    def wrap(name: str, peer_of: Callable[..., Any]) -> None:
        original = getattr(socket.socket, name)

        def watched(self: socket.socket, *args: Any) -> Any:
            try:
                peer = peer_of(self, *args)
            except OSError:
                peer = None
            if peer == device:
                windows.sent(name)
            return original(self, *args)

        monkeypatch.setattr(socket.socket, name, watched)

    # a connect() on a datagram socket only fixes its peer and sends nothing: not a packet
    wrap("connect", lambda sock, address: tuple(address) if sock.type == socket.SOCK_STREAM else None)
    wrap("send", lambda sock, *_: sock.getpeername())
    wrap("sendto", lambda sock, *args: tuple(args[-1]))
    wrap("shutdown", lambda sock, *_: sock.getpeername())


@pytest.mark.parametrize("protocol", sorted(PROBES))
async def test_every_packet_leaves_in_the_loop_step_its_departure_was_stamped(
    start_plant, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    address = f"127.0.131.{10 + sorted(PROBES).index(protocol)}"
    await start_plant({"name": f"same-step-{protocol}", "address": address, "class": "plc",
                       protocol: {**SECTIONS[protocol], "port": PORT}})
    windows = Windows()
    _watch(monkeypatch, (address, PORT), windows)
    probe = PROBES[protocol]({**OPTIONS[protocol], "port": PORT})
    link = Link(probe, Target(address), pacer=windows, timeouts=TIMEOUTS)
    observation = await probe.run(link, Target(address))
    monkeypatch.undo()
    assert observation.status is Status.IDENTIFIED, observation
    assert windows.outside == []
    # connect, the requests and the FIN: at least one socket call per departure, all of them in its step
    assert windows.inside >= windows.departures >= 3
