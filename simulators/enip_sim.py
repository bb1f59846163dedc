"""The simulated EtherNet/IP device: an Identity object answering over TCP (through TcpFront) and UDP unicast.

It owns the `enip:` plant section (parse_config), the classification of each request against the read-only
allowlist, the replies a real adapter gives (including its error replies), and the UDP ListIdentity endpoint on the
same address and port. Wire encoding lives in simulators.enip_wire. Written from the ODVA
layouts (docs/protocols.md#ethernetip); no cpppo code (GPLv3).

Supported, as on the allowlist: ListIdentity 0x63 (TCP and UDP), RegisterSession 0x65, UnRegisterSession 0x66,
SendRRData 0x6F carrying Get_Attributes_All 0x01 or Get_Attribute_Single 0x0E to Identity class 1 instance 1, directly
or wrapped in Unconnected_Send 0x52 to the Connection Manager routed to port 1 slot 0. Everything else is recorded as
a violation and answered with the encapsulation status (0x0001 invalid command, 0x0064 invalid session handle) or CIP
general status (0x05 path destination unknown, 0x08 service not supported, 0x14 attribute not supported) a device gives.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Any

from simulators import enip_wire as w
from simulators.faults import Fault
from simulators.front import HUGE_LENGTH, ConnState, Framing, TcpFront
from simulators.recorder import Recorder
from simulators.sections import known_keys
from simulators.udp_front import Address, DatagramCodec, Exchange, UdpFront

PROTOCOL = "enip"
DEFAULT_PORT = 44818
ALLOWED_SERVICES = (w.SERVICE_GET_ATTRIBUTES_ALL, w.SERVICE_GET_ATTRIBUTE_SINGLE)
BACKPLANE_SLOT_0 = (1, 0)  # Unconnected_Send route "port 1, link 0": this module itself
OVERSIZE = 60_000


# -- configuration ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnipConfig:
    port: int
    identity: w.IdentityValues


_KEYS = ("port", "vendor_id", "device_type", "product_code", "revision", "status", "serial", "product_name", "state")


def _int(section: dict[str, Any], key: str, bits: int, default: int | None = None) -> int:
    value = section.get(key, default)
    if value is None:
        raise ValueError(f"enip.{key}: required")
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise ValueError(f"enip.{key}: not an integer: {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"enip.{key}: must be an integer (got {value!r})")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"enip.{key}: {value} does not fit in {bits} bits")
    return value


def _revision(value: Any) -> tuple[int, int]:
    if isinstance(value, float):
        # YAML reads 4.10 as the float 4.1: the minor revision would silently change.
        raise ValueError(f"enip.revision: quote it as a string \"major.minor\" (got the number {value!r})")
    major, dot, minor = str(value).partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and int(major) < 256 and int(minor) < 256):
        raise ValueError(f"enip.revision: expected \"major.minor\" with two numbers 0-255 (got {value!r})")
    return int(major), int(minor)


def parse_config(section: dict[str, Any]) -> EnipConfig:
    """Validate an `enip:` plant section. Raises ValueError("enip.<key>: ...") naming the offending key."""
    known_keys(section, "enip", _KEYS)
    if "revision" not in section:
        raise ValueError("enip.revision: required")
    name = section.get("product_name")
    if not isinstance(name, str) or not name:
        raise ValueError("enip.product_name: required, a non-empty string")
    # one byte per character, as a CIP SHORT_STRING carries it: beyond ASCII, Latin-1 (C1 controls included)
    if any(ord(c) > 0xFF for c in name) or len(name) > 255:
        raise ValueError("enip.product_name: must be Latin-1 and at most 255 characters (a CIP SHORT_STRING)")
    port = _int(section, "port", 16, DEFAULT_PORT)
    if port == 0:
        raise ValueError("enip.port: must be 1-65535")
    state = None if section.get("state") is None else _int(section, "state", 8)
    identity = w.IdentityValues(
        vendor_id=_int(section, "vendor_id", 16),
        device_type=_int(section, "device_type", 16),
        product_code=_int(section, "product_code", 16),
        revision=_revision(section["revision"]),
        status=_int(section, "status", 16, 0),
        serial=_int(section, "serial", 32),
        product_name=name,
        state=state,
    )
    return EnipConfig(port, identity)


# -- classification --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Explicit:
    """The CIP request a SendRRData or SendUnitData frame carries, unwrapped from Unconnected_Send if routed."""

    request: w.CipRequest
    route: tuple[int, int] | None  # first hop (port, link) of an Unconnected_Send, None if sent directly
    connected: bool  # SendUnitData: meant for a CIP connection this device never opened

    @property
    def allowed(self) -> bool:
        r = self.request
        return (not self.connected and r.service in ALLOWED_SERVICES
                and r.class_id == w.CLASS_IDENTITY and r.instance == 1)

    @property
    def operation(self) -> str:
        r = self.request
        target = "none" if r.class_id is None else f"0x{r.class_id:02X}"
        return f"cip:0x{r.service:02X}/class:{target}"


def explicit_request(frame: bytes) -> Explicit:
    """Decode the CIP request in a SendRRData / SendUnitData frame; raises one of enip_wire.MALFORMED."""
    connected = w.Header.parse(frame).command == w.SEND_UNIT_DATA
    items = dict(w.parse_cpf(frame[w.HEADER_LEN + 6:]))  # after interface handle u32 and timeout u16
    if connected:
        request = w.parse_cip(items[w.ITEM_CONNECTED_DATA][2:])  # after the sequence count
    else:
        request = w.parse_cip(items[w.ITEM_UNCONNECTED_DATA])
    if (not connected and request.service == w.SERVICE_UNCONNECTED_SEND
            and request.class_id == w.CLASS_CONNECTION_MANAGER and request.instance == 1):
        routed = w.unwrap_unconnected_send(request)
        return Explicit(routed.request, (routed.port, routed.link), False)
    return Explicit(request, None, connected)


def classify(frame: bytes) -> tuple[str, bool, dict[str, Any]]:
    """(operation, allowed, detail) of one TCP request frame, with the operation names of the plant spec."""
    header = w.Header.parse(frame)
    command = header.command
    detail: dict[str, Any] = {"session": header.session}
    if command in (w.LIST_IDENTITY, w.REGISTER_SESSION, w.UNREGISTER_SESSION):
        return f"enip:0x{command:02X}", True, detail
    if command in (w.SEND_RR_DATA, w.SEND_UNIT_DATA):
        try:
            explicit = explicit_request(frame)
        except (*w.MALFORMED, KeyError):
            return f"enip:0x{command:02X}", False, detail
        r = explicit.request
        detail.update(instance=r.instance, attribute=r.attribute, route=explicit.route, connected=explicit.connected)
        return explicit.operation, explicit.allowed, detail
    return f"enip:0x{command:02X}", False, detail


class EnipFraming(Framing):
    """24-byte little-endian encapsulation header; the length of the data that follows is the u16 at offset 2."""

    protocol = PROTOCOL
    header_len = w.HEADER_LEN

    def frame_length(self, header: bytes) -> int:
        return w.HEADER_LEN + struct.unpack_from("<H", header, 2)[0]

    def classify(self, frame: bytes) -> tuple[str, bool, dict[str, Any]]:
        return classify(frame)

    def wrong_id(self, reply: bytes) -> bytes:
        """Someone else's reply: the sender context inverted, and the session handle too when there is one."""
        h = w.Header.parse(reply)
        context = bytes(b ^ 0xFF for b in h.context)
        session = h.session ^ 0x5A5A5A5A if h.session else 0
        return w.HEADER.pack(h.command, h.length, session, h.status, context, h.options) + reply[w.HEADER_LEN:]

    def oversized(self, reply: bytes) -> bytes:
        """A reply whose length field claims, and whose body carries, far more than any identity reply."""
        h = w.Header.parse(reply)
        body = reply[w.HEADER_LEN:] + bytes(OVERSIZE)
        return w.encap(h.command, body, h.session, h.status, h.context)

    def huge_length(self, reply: bytes) -> bytes:
        h = w.Header.parse(reply)
        return w.encap(h.command, reply[w.HEADER_LEN:].ljust(HUGE_LENGTH, b"\x00"), h.session, h.status, h.context)


# -- the device ------------------------------------------------------------------------------------------------------

class EnipDevice:
    def __init__(self, host: str, config: EnipConfig, fault: Fault, recorder: Recorder) -> None:
        self.host, self.config, self.fault, self.recorder = host, config, fault, recorder
        self.framing = EnipFraming()
        # A session lives in its connection's state and dies with it: a client that drops the connection without
        # UnRegisterSession shows as registered > unregistered in the recorder.
        self._front = TcpFront(host, config.port, self.framing, self._handle, recorder, fault)
        # ListIdentity over UDP on the same address and port; one processor, so one slow-fault load for both
        self._udp = UdpFront(host, config.port, EnipUdpCodec(self), recorder, fault, self._front.load)
        # Handles are device-wide and unpredictable, as on real adapters; never 0 (0 means "no session").
        self._next_handle = secrets.randbelow(0x7FFF_0000) + 1

    async def start(self) -> None:
        await self._front.start()
        try:
            await self._udp.start()
        except OSError:
            await self._front.stop()
            raise

    async def stop(self) -> None:
        await self._udp.stop()
        await self._front.stop()

    def summary(self) -> str:
        i = self.config.identity
        state = "" if i.state is None else f" state {i.state}"
        return (f"enip tcp+udp/{self.config.port}: {i.product_name!r} vendor {i.vendor_id} type {i.device_type} "
                f"code {i.product_code} rev {i.revision[0]}.{i.revision[1]} serial 0x{i.serial:08X}"
                f" status 0x{i.status:04X}{state}")

    # -- TCP ---------------------------------------------------------------------------------------------------------

    def _list_identity(self, header: w.Header) -> bytes:
        data = w.list_identity_data(self.config.identity, self.host, self.config.port)
        return w.encap(w.LIST_IDENTITY, data, header.session, context=header.context)

    async def _handle(self, frame: bytes, state: ConnState) -> list[bytes]:
        header = w.Header.parse(frame)
        session = state.data.get("session", 0)

        def status(code: int) -> list[bytes]:
            return [w.encap(header.command, b"", header.session, code, header.context)]

        match header.command:
            case w.LIST_IDENTITY:
                return [self._list_identity(header)]
            case w.REGISTER_SESSION:
                return self._register(frame, header, state)
            case w.UNREGISTER_SESSION:
                if not session or header.session != session:
                    return status(w.STATUS_INVALID_SESSION)
                state.data["session"] = 0
                self.recorder.session(False)
                return []  # no reply; the client closes the connection
            case w.SEND_RR_DATA | w.SEND_UNIT_DATA:
                if not session or header.session != session:
                    return status(w.STATUS_INVALID_SESSION)
                try:
                    explicit = explicit_request(frame)
                except (*w.MALFORMED, KeyError):
                    return status(w.STATUS_BAD_DATA)
                if explicit.connected:
                    return []  # data for a connection id this device never issued: adapters drop it
                reply = self._cip(explicit)
                return [w.encap(w.SEND_RR_DATA, w.rr_data(reply), session, context=header.context)]
        return status(w.STATUS_INVALID_COMMAND)

    def _register(self, frame: bytes, header: w.Header, state: ConnState) -> list[bytes]:
        body = frame[w.HEADER_LEN:]
        if len(body) != 4 or body[:2] != b"\x01\x00":
            # Reply with the version this device supports, as the spec asks.
            return [w.encap(w.REGISTER_SESSION, b"\x01\x00\x00\x00", 0, w.STATUS_UNSUPPORTED_REVISION, header.context)]
        handle = self._next_handle
        self._next_handle = self._next_handle % 0xFFFF_FFFF + 1
        state.data["session"] = handle
        self.recorder.session(True)
        return [w.encap(w.REGISTER_SESSION, body, handle, context=header.context)]

    def _cip(self, explicit: Explicit) -> bytes:
        """The Message Router reply a single-module adapter gives."""
        r = explicit.request
        if explicit.route is not None and explicit.route != BACKPLANE_SLOT_0:
            port, _ = explicit.route
            ext = w.EXT_INVALID_PORT if port != BACKPLANE_SLOT_0[0] else w.EXT_INVALID_LINK
            return w.cip_reply(w.SERVICE_UNCONNECTED_SEND, w.GS_CONNECTION_FAILURE, extended=(ext,))
        if r.class_id == w.CLASS_CONNECTION_MANAGER and r.instance == 1:
            # Forward_Open and friends: this simulated adapter does no connected messaging.
            return w.cip_reply(r.service, w.GS_SERVICE_NOT_SUPPORTED)
        if r.class_id != w.CLASS_IDENTITY or r.instance != 1:
            return w.cip_reply(r.service, w.GS_PATH_DESTINATION_UNKNOWN)
        ident = self.config.identity
        if r.service == w.SERVICE_GET_ATTRIBUTES_ALL:
            return w.cip_reply(r.service, data=w.identity_attributes_all(ident))
        if r.service == w.SERVICE_GET_ATTRIBUTE_SINGLE:
            value = w.identity_attributes(ident).get(r.attribute) if r.attribute is not None else None
            if value is None:
                return w.cip_reply(r.service, w.GS_ATTRIBUTE_NOT_SUPPORTED)
            return w.cip_reply(r.service, data=value)
        return w.cip_reply(r.service, w.GS_SERVICE_NOT_SUPPORTED)


class EnipUdpCodec(DatagramCodec):
    """ListIdentity over UDP unicast; any other command gets the encapsulation status "invalid command"."""

    protocol = PROTOCOL
    header_len = w.HEADER_LEN

    def __init__(self, device: EnipDevice) -> None:
        self.device = device

    def exchange(self, data: bytes, peer: Address) -> Exchange:
        try:
            header = w.Header.parse(data)
        except w.MALFORMED:
            return Exchange("udp:bad-frame", False)
        # The first two context bytes of a ListIdentity are the Max Response Delay (ms). A real device waits a random
        # time up to it so that broadcast replies do not collide; unicast replies here go out at once (plus any
        # `slow` latency), so tests never wait the up-to-2 s a delay of 0 would mean.
        max_delay_ms = struct.unpack_from("<H", header.context)[0]
        allowed = header.command == w.LIST_IDENTITY
        if allowed:
            reply = self.device._list_identity(header)
        else:
            reply = w.encap(header.command, b"", header.session, w.STATUS_INVALID_COMMAND, header.context)
        return Exchange(f"udp:0x{header.command:02X}", allowed, [reply], {"max_delay_ms": max_delay_ms})

    def malformed(self, reply: bytes) -> bytes:
        return self.device.framing.malformed(reply)

    def oversized(self, reply: bytes) -> bytes:
        return self.device.framing.oversized(reply)

    def wrong_id(self, reply: bytes) -> bytes:
        return self.device.framing.wrong_id(reply)
