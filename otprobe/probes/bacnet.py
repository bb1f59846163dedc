"""BACnet/IP identity probe: one unicast ReadPropertyMultiple of the Device object, single ReadProperty requests
where a device rejects or aborts it.

Probe card
  Port      47808 (UDP); options: `port`, `source_port` (default 47808, 0 = any free port).
  Every datagram goes to ip:port from a socket connect()ed to that unicast address; no Who-Is, no broadcast, ever.
  Sends, in order, stopping at the first answer that settles it:
    1. read_property_multiple (bacnet:confirmed:14): the Device object's object-identifier, object-name,
       vendor-name, vendor-identifier, model-name, firmware-revision, application-software-version and
       serial-number, addressed to the wildcard instance 4194303 (the receiver's own Device object), no
       segmentation accepted (SA 0, max-segments 0, max-APDU 1476)                                    (1 packet)
       ACK: identified; a property the device lacks (unknown-property) is left out. Error: no_identity (an
       unknown-object means the device does not honour the wildcard). Reject or Abort (segmentation-not-supported
       included): step 2.
    2. read_property (bacnet:confirmed:12), one per property in the same order: object-identifier on the wildcard
       first, then the real instance its answer names. unknown-property: that field is left out; an Error on the
       object, or a Reject/Abort of the first one: stop                                             (<= 8)
  Each request waits for its reply (same invoke id) for timeouts.response_s; no retry. A timeout, an ICMP refusal
  or an unparseable reply ends the run.
  Cost: 1 usually; 9 where ReadPropertyMultiple is rejected. max_packets = 9.
  Example: TAC bCX1-CR, vendor 10 "TAC", firmware "Bootloader 4.500065", raw instance 10401, object name
  "bCX1-PLANT-ROOM", application software "4.500065".

Decisions
  * Source port 47808: some controllers answer only datagrams from 47808, so the probe binds it (on the local
    address the kernel would send from) when free. SO_REUSEADDR lets the probes of one scan share it: each socket is
    connect()ed to its own device and the kernel hands a datagram to the socket connected to its sender. Where
    another program holds the port without sharing it, the probe sends from a free port and says so in
    raw["notes"].
  * bacpypes3 is only the codec (otprobe.probes.bacnet_wire). Its Application would retry each request 3 times,
    3 s apart, unseen by the pacer, and keep 127.* datagrams to its own port local; this module owns the socket.
  * BACnet has no device-type field: vendor-identifier plus model-name is what the device says it is, kept in
    raw["device_type"]. asset_type is building_controller unless that maker and model name another product line
    (otprobe.probes.asset_type).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from otprobe.contract import Category, Int, Kind, Operation, Port, Probe, ProbeLink, ProbeOptions
from otprobe.errors import ProtocolError
from otprobe.model import Identity, Observation, Status, Target
from otprobe.probes import asset_type
from otprobe.probes import bacnet_wire as wire

STANDARD_PORT = 47808  # 0xBAC0


class BacnetOptions(ProbeOptions):
    """`protocols.bacnet:` in a profile."""

    port: Port = STANDARD_PORT
    # the port datagrams leave from; 47808 by default because some devices answer no other. 0: any free port.
    source_port: Int = Field(STANDARD_PORT, ge=0, le=65_535)


class _NoIdentity(Exception):
    """The device answered in BACnet but gave no identity."""


@dataclass
class _Session:
    """One run's socket and what it has learnt so far."""

    link: ProbeLink
    sock: socket.socket | None = None  # set once bound and connected
    source_port: int | None = None
    invoke_id: int = 0
    rtt_s: float | None = None
    notes: list[str] = field(default_factory=list)

    async def ask(self, op: str, build: Callable[[int], bytes], service: int) -> wire.Reply:
        """Send one announced request, wait for the reply with its invoke id, parse it."""
        invoke_id, self.invoke_id = self.invoke_id, (self.invoke_id + 1) % 256
        request = build(invoke_id)
        if self.sock is None:
            raise RuntimeError("no socket: ask() runs inside BacnetProbe._socket")
        loop = asyncio.get_running_loop()
        # The reply wait is inside the announced operation: the link times it for adaptive slowdown.
        async with self.link.op(op):
            await loop.sock_sendall(self.sock, request)
            sent = time.monotonic()
            async with asyncio.timeout(self.link.timeouts.response_s):  # not wait_for: no task per reply (3.11)
                reply = await loop.sock_recv(self.sock, wire.MAX_REPLY + 1)
            self.rtt_s = time.monotonic() - sent
        return wire.parse_reply(reply, invoke_id, service)


class BacnetProbe(Probe):
    name: ClassVar[str] = "bacnet"
    transports: ClassVar[tuple[str, ...]] = ("udp",)
    default_port: ClassVar[int] = STANDARD_PORT
    Options = BacnetOptions
    # The Device object's strings are the controller's own, but a model name is often a product family ("Siemens
    # BACnet Field Panel") where a PLC protocol gives an order code: trusted like Modbus' identification objects.
    merge_rank = 1
    operations: ClassVar[tuple[Operation, ...]] = (
        Operation("read_property_multiple", "bacnet:confirmed:14", Kind.DATAGRAM, 1, Category.SAFE,
                  "ReadPropertyMultiple, Device object identity properties, unicast"),
        Operation("read_property", "bacnet:confirmed:12", Kind.DATAGRAM, 1, Category.SAFE,
                  "ReadProperty, one Device object property, unicast (where ReadPropertyMultiple is refused)"),
    )

    options: BacnetOptions

    def max_packets(self) -> int:
        return 1 + len(wire.IDENTITY_PROPERTIES)

    def typical_packets(self) -> int:
        return 1  # ReadPropertyMultiple answered; the ReadProperty fallback is for devices that refuse it

    async def run(self, link: ProbeLink, target: Target) -> Observation:
        """latency_s is the round trip of the last request answered (pacing waits excluded)."""
        status, identity, error = Status.IDENTIFIED, None, None
        session = _Session(link)
        try:
            with self._socket(target.ip, session) as sock:
                session.sock = sock
                identity = await self._identify(session)
        except _NoIdentity as exc:
            status, error = Status.NO_IDENTITY, str(exc)
        except ProtocolError as exc:
            status, error = Status.PROTOCOL_ERROR, str(exc)
        except TimeoutError:
            status, error = Status.TIMEOUT, f"no reply within {link.timeouts.response_s} s"
        except ConnectionRefusedError:
            status, error = Status.REFUSED, "ICMP port unreachable (nothing listening)"
        except OSError as exc:
            status, error = Status.REFUSED, f"no datagram exchange possible: {exc}"
        if error and session.notes:
            error = f"{error} ({'; '.join(session.notes)})"
        return Observation(
            target=target.ip, protocol=self.name, port=self.port, status=status, identity=identity,
            latency_s=None if session.rtt_s is None else round(session.rtt_s, 6), packets_sent=link.packets_sent,
            error=error, device_class=target.device_class,
        )

    @contextlib.contextmanager
    def _socket(self, ip: str, session: _Session) -> Iterator[socket.socket]:
        """A UDP socket connect()ed to the device, from `source_port` when it can be had (else a note says so)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            wanted = self.options.source_port
            if wanted:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((_source_address(ip, self.port), wanted))
                except OSError as exc:
                    session.notes.append(f"source port {wanted} unavailable ({exc.strerror or exc}): sent from a "
                                         "free port; a device that answers only that port stays silent")
            # connect() on UDP sends nothing: it fixes the one destination and drops datagrams from anyone else.
            sock.connect((ip, self.port))
            session.source_port = sock.getsockname()[1]
            yield sock

    async def _identify(self, session: _Session) -> Identity:
        reply = await session.ask(
            "read_property_multiple",
            functools.partial(wire.read_property_multiple_request, instance=wire.WILDCARD_INSTANCE,
                              properties=wire.IDENTITY_PROPERTIES),
            wire.SERVICE_READ_PROPERTY_MULTIPLE)
        if isinstance(reply, wire.Properties):
            return _identity(reply.instance, reply.values, reply.errors, "read_property_multiple", session)
        if reply.kind == "error":
            raise _NoIdentity(_refused("ReadPropertyMultiple", reply))
        session.notes.append(f"ReadPropertyMultiple refused ({reply}): one ReadProperty per property")
        return await self._one_by_one(session)

    async def _one_by_one(self, session: _Session) -> Identity:
        instance = wire.WILDCARD_INSTANCE
        values: dict[int, str | int] = {}
        errors: dict[int, str] = {}
        for pid in wire.IDENTITY_PROPERTIES:
            reply = await session.ask(
                "read_property", functools.partial(wire.read_property_request, instance=instance, pid=pid),
                wire.SERVICE_READ_PROPERTY)
            if isinstance(reply, wire.Properties):
                values.update(reply.values)
                if pid == wire.OBJECT_IDENTIFIER:
                    instance = reply.instance  # the rest are asked of the instance the device named
                continue
            if reply.unknown_property or (values and reply.kind == "abort"):
                errors[pid] = str(reply)  # one property the device lacks or cannot send unsegmented
                continue
            if not values:
                raise _NoIdentity(_refused("ReadProperty", reply))
            session.notes.append(f"ReadProperty stopped at property {pid}: {reply}")
            break
        return _identity(instance, values, errors, "read_property", session)


def _refused(service: str, refusal: wire.Refusal) -> str:
    if refusal.object_refused:
        return f"{service} refused ({refusal}): the device does not answer for the wildcard Device instance"
    return f"{service} refused ({refusal})"


def _source_address(ip: str, port: int) -> str:
    """The local address the kernel sends to `ip` from: a UDP connect() picks it and sends nothing. Binding it, not
    0.0.0.0, leaves 47808 on other local addresses alone (and a simulated device on one of them)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((ip, port))
        return str(probe.getsockname()[0])


def _identity(instance: int, values: dict[int, str | int], errors: dict[int, str], source: str,
              session: _Session) -> Identity:
    if not values:
        raise _NoIdentity(f"the Device object gave no identity property ({'; '.join(errors.values())})")

    def text(pid: int) -> str | None:
        value = values.get(pid)
        return value.strip() if isinstance(value, str) else None

    vendor_id = values.get(wire.VENDOR_IDENTIFIER)
    vendor_id = vendor_id if isinstance(vendor_id, int) else None
    model = text(wire.MODEL_NAME)
    raw: dict[str, Any] = {
        "source": source,
        "instance": values.get(wire.OBJECT_IDENTIFIER, instance),
        "properties": {wire.PROPERTY_NAMES[pid]: value for pid, value in values.items()},
        # BACnet's Device object has no device-type field: the vendor's id and its model name are what it says it is
        "device_type": {"vendor_identifier": vendor_id, "model_name": model},
        "object_name": text(wire.OBJECT_NAME),
        "application_software_version": text(wire.APPLICATION_SOFTWARE_VERSION),
        "source_port": session.source_port,
        "notes": list(session.notes),
    }
    if errors:
        raw["missing"] = {wire.PROPERTY_NAMES[pid]: reason for pid, reason in errors.items()}
    vendor = text(wire.VENDOR_NAME)
    return Identity(vendor=vendor, vendor_id=vendor_id, product_name=model, model=model,
                    asset_type=asset_type.bacnet(vendor, model), serial=text(wire.SERIAL_NUMBER),
                    firmware=text(wire.FIRMWARE_REVISION), raw=raw)
