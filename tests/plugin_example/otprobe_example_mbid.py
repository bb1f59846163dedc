"""An example third-party probe: `example-mbid`, one Modbus Read Device Identification (FC43, basic stream) on a
port of its own, the whole exchange three packets (connect, one request, FIN).

Why this protocol for the example: a plugin may send only what the central allowlist (otprobe/safety.py) already
lists for the wire protocol it speaks, and the allowlist gains no code for a test. This probe speaks Modbus
(`wire_protocol` is "modbus"), so its three codes are ones Modbus is already allowed; a plugin with a new wire code
waits for the reviewed change to otprobe/safety.py that docs/design.md describes.

It depends on otprobe's public pieces only: the contract (otprobe.contract), the hardened Modbus parsers
(otprobe.probes.modbus_wire) and the shared FIN-then-drain close (otprobe.probes.tcp_close).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Annotated, ClassVar

from pydantic import Field

from otprobe.contract import Flag, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProtocolError
from otprobe.model import Observation, Status, Target
from otprobe.probes import tcp_close
from otprobe.probes.modbus_wire import (
    FC_DEVICE_ID,
    MBAP_LEN,
    MEI_DEVICE_ID,
    READ_BASIC,
    ExceptionReply,
    identity_from_objects,
    parse_adu,
    parse_reply,
)

FC43 = "fc:0x2B/mei:0x0E"


class ExampleMbidOptions(ProbeOptions):
    """`protocols.example-mbid:` in a profile."""

    # Off unless a profile or --protocol asks: a probe that arrives with `pip install` joins no scheduled scan
    # by itself.
    enabled: Flag = False
    port: Port = 502
    unit_id: Annotated[Int, Field(ge=1, le=247)] = 1


class ExampleMbidProbe(Probe):
    name: ClassVar[str] = "example-mbid"
    transports: ClassVar[tuple[str, ...]] = ("tcp",)
    default_port: ClassVar[int] = 502
    Options = ExampleMbidOptions
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("connect", "tcp:connect", Kind.CONNECT, description="TCP connect"),
        Operation("read_basic", FC43, description="FC43 basic stream (code 01) from object 0"),
        Operation("close", "tcp:close", Kind.CLOSE, description="FIN"),
    )
    options: ExampleMbidOptions

    @classmethod
    def wire_protocol(cls) -> str:
        return "modbus"

    def max_packets(self) -> int:
        return 3

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        started = time.monotonic()
        async with link.op("connect"), asyncio.timeout(link.timeouts.connect_s):
            reader, writer = await asyncio.open_connection(target.ip, self.port)
        device_ended = False
        try:
            request = struct.pack(">HHHB", 1, 0, 5, self.options.unit_id) + bytes(
                (FC_DEVICE_ID, MEI_DEVICE_ID, READ_BASIC, 0x00))
            async with link.op("read_basic"):
                writer.write(request)
                async with asyncio.timeout(link.timeouts.response_s):
                    header = await reader.readexactly(MBAP_LEN)
                    parse_adu(header)  # refuses a bad MBAP length before reading the body it claims
                    length = struct.unpack_from(">H", header, 4)[0]
                    adu = parse_adu(header + await reader.readexactly(length - 1))
        except (asyncio.IncompleteReadError, ConnectionError):
            device_ended = True
            raise ConnectionResetError("connection closed by the device") from None
        finally:
            await tcp_close.close(link, writer.transport, device_ended=device_ended)
        if adu is None or adu.tid != 1 or adu.unit != self.options.unit_id:
            raise ProtocolError("reply for another transaction or unit")
        reply = parse_reply(adu.pdu, FC_DEVICE_ID)
        latency = round(time.monotonic() - started, 6)
        if isinstance(reply, ExceptionReply):
            return Observation(target.ip, self.name, self.port, Status.NO_IDENTITY, error=reply.text,
                               latency_s=latency, device_class=target.device_class)
        identity = identity_from_objects(dict(reply.objects), reply.conformity, adu.unit, "stream")
        return Observation(target.ip, self.name, self.port, Status.IDENTIFIED, identity=identity,
                           latency_s=latency, device_class=target.device_class)
