"""Every probe ends its connection with FIN, never RST, even against a device that keeps sending; and the TCP
probes report a connection the device accepted and then reset with one status.

A socket closed with bytes still unread in its receive queue makes the kernel send RST instead of FIN. The hostile
senders of the simulator (`stream`, `huge_length`, `trickle`) keep bytes coming after the probe has stopped
listening; the device's recorder shows how each connection really ended, an RST after the FIN included.

Addresses 127.0.130.1-127.0.130.250 only (this file's range); every device gets its own address.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import identities
import pytest

from otprobe.contract import Kind, Probe, Timeouts
from otprobe.link import Link
from otprobe.model import Observation, Status, Target
from otprobe.probes.enip import EnipProbe
from otprobe.probes.modbus import ModbusProbe
from otprobe.probes.opcua import OpcuaProbe
from otprobe.probes.s7 import S7Probe
from simulators.recorder import Recorder

PORT = 15030
TIMEOUTS = Timeouts(connect_s=0.5, response_s=0.5)
_addresses = (f"127.0.130.{n}" for n in itertools.count(1))

SECTIONS: dict[str, dict[str, Any]] = {
    "modbus": dict(identities.M340_OBJECTS),
    "s7": {"order_code": "6ES7 315-2EH14-0AB0", "hardware_version": 3, "firmware": "V3.2.7", "slot": 2},
    "enip": {"vendor_id": 1, "device_type": 14, "product_code": 154, "revision": "21.11", "serial": 0x6043BF65,
             "product_name": "1769-L18ER/A LOGIX5318ER"},
    "opcua": {"application_uri": "urn:SIMATIC.S7-1500.OPC-UA.Application:PLC_1", "application_name": "PLC_1",
              "product_uri": "https://www.siemens.com/s7-1500", "manufacturer_name": "Siemens AG",
              "product_name": "SIMATIC S7-1500", "software_version": "V2.9.2", "build_number": "2.9.2.4"},
}
PROBES: dict[str, type[Probe]] = {"modbus": ModbusProbe, "s7": S7Probe, "enip": EnipProbe, "opcua": OpcuaProbe}
# UDP ListIdentity would identify the EtherNet/IP device without any TCP connection: TCP is what is under test.
OPTIONS: dict[str, dict[str, Any]] = {"modbus": {}, "s7": {"rack_slots": [[0, 2]]}, "enip": {"udp": False},
                                     "opcua": {}}

# A reply that never ends, or whose header claims 65,535 bytes, is refused as a protocol error; a reply trickling
# one byte every 0.25 s does not arrive within the response timeout.
HOSTILE = {"stream": Status.PROTOCOL_ERROR, "huge_length": Status.PROTOCOL_ERROR, "trickle": Status.TIMEOUT}


class PacedClose:
    """A scan's pacer as far as the close is concerned: its token comes a while after the last reply, and meanwhile
    a hostile device goes on sending."""

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s

    async def acquire(self, kind: Kind, packets: int) -> None:
        if kind is Kind.CLOSE:
            await asyncio.sleep(self.wait_s)

    async def depart(self, kind: Kind, packets: int) -> None:
        return None


async def scan(
    start_plant: Any, eventually: Any, protocol: str, fault: str, close_wait_s: float = 0.3
) -> tuple[Observation, Link, Recorder]:
    host = next(_addresses)
    plant = await start_plant(
        {"name": "dev", "address": host, "class": "plc", "fault": fault, protocol: {"port": PORT, **SECTIONS[protocol]}}
    )
    recorder = plant["dev"].recorder
    probe = PROBES[protocol]({"port": PORT, **OPTIONS[protocol]})
    link = Link(probe, Target(host, "plc"), timeouts=TIMEOUTS, pacer=PacedClose(close_wait_s))
    observation = await probe.run(link, Target(host, "plc"))
    # the device has let go of every connection: an RST after the FIN would have been recorded by then
    await eventually(lambda: recorder.held_connections == 0, timeout=3.0)
    return observation, link, recorder


@pytest.mark.parametrize("protocol", list(PROBES))
@pytest.mark.parametrize("fault", list(HOSTILE))
async def test_a_hostile_sender_gets_fin_and_no_rst(
    start_plant: Any, eventually: Any, caplog: pytest.LogCaptureFixture, protocol: str, fault: str
) -> None:
    caplog.set_level(logging.DEBUG)
    observation, link, recorder = await scan(start_plant, eventually, protocol, fault)
    assert observation.status is HOSTILE[fault], observation.error
    assert observation.error and "Traceback" not in observation.error
    assert recorder.connections, "the probe never connected"
    assert [c.close_kind for c in recorder.connections] == ["fin"] * len(recorder.connections)
    assert recorder.resets() == []
    # the FIN is the one close packet counted: draining what the device still sent put nothing on the wire
    assert link.packets_sent == recorder.packet_count() <= link.probe.max_packets()
    assert recorder.violations() == []
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_long_paced_close_after_a_stream_drains_what_piled_up_and_ends_with_fin(
    start_plant: Any, eventually: Any
) -> None:
    # the stream reader stops reading when its buffer is full: the kernel queues about 1 MB behind it meanwhile
    observation, link, recorder = await scan(start_plant, eventually, "s7", "stream", close_wait_s=1.5)
    assert observation.status is Status.PROTOCOL_ERROR
    assert [c.close_kind for c in recorder.connections] == ["fin"] and recorder.resets() == []
    assert link.packets_sent == recorder.packet_count()


@pytest.mark.parametrize("protocol", list(PROBES))
async def test_accepted_then_reset_is_reset_and_a_refused_connect_is_refused(
    start_plant: Any, eventually: Any, protocol: str
) -> None:
    reset, _, recorder = await scan(start_plant, eventually, protocol, "reset")
    assert reset.status is Status.RESET, reset.error
    assert recorder.connections and [c.close_kind for c in recorder.connections] == ["server"] * len(
        recorder.connections
    )
    refused, _, recorder = await scan(start_plant, eventually, protocol, "refused")
    assert refused.status is Status.REFUSED, refused.error
    assert recorder.connections == []
