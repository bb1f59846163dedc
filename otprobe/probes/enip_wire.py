"""EtherNet/IP and CIP bytes for the identity probe: the requests it sends and pure parsers for the replies.

Requests are built with pycomm3's own packet classes (otprobe's CIP library), with otprobe's sender context;
pycomm3 is imported where a request is built, not with this module, so that registering the probe, reading a
profile or planning a scan loads no protocol library. Replies are parsed here from raw bytes, never through
pycomm3's identity dicts (they replace vendor and device type ids with names and lose the numbers). Every parser
raises only `ProtocolError`; `DeviceRefusal` is the subclass for a well-formed reply that carries an error status
(the device speaks EtherNet/IP but will not give its identity that way).

Layouts (docs/protocols.md#ethernetip): a 24-byte little-endian encapsulation header, then Common Packet Format
items walked by their own lengths (never fixed offsets: nmap enip-info's bug). The one big-endian field is the
ListIdentity socket address, a raw `sockaddr_in`; read little-endian it gives icsnpp-enip's "164.1.1.10 port 4783".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from otprobe.errors import ProtocolError

HEADER = struct.Struct("<HHII8sI")  # command, length, session handle, status, sender context, options
HEADER_LEN = HEADER.size
# No identity reply comes near this (a ListIdentity reply with a 255-character name is 24 + 6 + 294 bytes);
# a length field above it is hostile or broken, and is refused before anything is read
# (docs/safety.md#hostile-replies-are-bounded).
MAX_REPLY = 4096

LIST_IDENTITY = 0x63
REGISTER_SESSION = 0x65
SEND_RR_DATA = 0x6F
GET_ATTRIBUTES_ALL = 0x01  # CIP service code

ITEM_IDENTITY = 0x000C
ITEM_UNCONNECTED_DATA = 0x00B2

SERVICE_REPLY = 0x80
TAG = b"otprob"  # context bytes 2-7: a constant, attributable tag (docs/safety.md); bytes 0-1 are the delay

ENCAP_STATUS = {
    0x0001: "invalid or unsupported command",
    0x0002: "insufficient memory",
    0x0003: "malformed data",
    0x0064: "invalid session handle",
    0x0065: "invalid length",
    0x0069: "unsupported protocol revision",
}
CIP_STATUS = {
    0x01: "connection failure",
    0x05: "path destination unknown",
    0x08: "service not supported",
    0x14: "attribute not supported",
    0x16: "object does not exist",
}
STATES = {
    0: "nonexistent",
    1: "self-test",
    2: "standby",
    3: "operational",
    4: "major recoverable fault",
    5: "major unrecoverable fault",
    255: "default",
}


class DeviceRefusal(ProtocolError):
    """A well-formed reply carrying an encapsulation or CIP error status."""


# -- requests ---------------------------------------------------------------------------------------------------------

def sender_context(max_response_delay_ms: int) -> bytes:
    """8 context bytes: the ListIdentity Max Response Delay (u16 LE, ms; never 0, which means 2000) and the tag."""
    if not 1 <= max_response_delay_ms <= 0xFFFF:
        raise ValueError(f"max response delay {max_response_delay_ms} ms is outside 1-65535")
    return struct.pack("<H", max_response_delay_ms) + TAG


def list_identity_request(context: bytes) -> bytes:
    """ListIdentity 0x63: a bare 24-byte header, session 0 (also the one UDP datagram)."""
    from pycomm3.packets import ListIdentityRequestPacket

    return ListIdentityRequestPacket().build_request(None, 0, context, 0)


def register_session_request(context: bytes) -> bytes:
    """RegisterSession 0x65, protocol version 1, options 0."""
    from pycomm3.packets import RegisterSessionRequestPacket

    return RegisterSessionRequestPacket(b"\x01\x00").build_request(None, 0, context, 0)


def get_attributes_all_request(session: int, context: bytes) -> bytes:
    """SendRRData 0x6F, unconnected, no route path: Get_Attributes_All 0x01 to class 0x01 instance 1."""
    from pycomm3 import ClassCode, Services
    from pycomm3.packets import GenericUnconnectedRequestPacket

    packet = GenericUnconnectedRequestPacket(
        service=Services.get_attributes_all, class_code=ClassCode.identity_object, instance=1
    )
    return packet.build_request(None, session, context, 0)


def unregister_session_request(session: int, context: bytes) -> bytes:
    """UnRegisterSession 0x66: header only; the device sends no reply."""
    from pycomm3.packets import UnRegisterSessionRequestPacket

    return UnRegisterSessionRequestPacket().build_request(None, session, context, 0)


# -- parsers ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    command: int
    length: int
    session: int
    status: int
    context: bytes
    options: int


@dataclass(frozen=True)
class CipIdentity:
    """Identity object attributes 1-7 (and 8, state, where sent), decoded from raw bytes."""

    vendor_id: int
    device_type: int
    product_code: int
    revision: tuple[int, int]
    status: int
    serial: int
    product_name_raw: str
    state: int | None = None
    sockaddr: tuple[str, int] | None = None  # ListIdentity only: the device's own configured address
    encapsulation_version: int | None = None

    @property
    def product_name(self) -> str:
        return self.product_name_raw.strip(" \x00")

    def raw_fields(self) -> dict[str, Any]:
        raw: dict[str, Any] = {
            "revision": list(self.revision),
            "status": self.status,
            "status_hex": f"0x{self.status:04X}",
            "serial": self.serial,
            "product_name_raw": self.product_name_raw,
            "state": self.state,
            "state_name": None if self.state is None else STATES.get(self.state),
        }
        if self.sockaddr is not None:
            raw["sockaddr"] = f"{self.sockaddr[0]}:{self.sockaddr[1]}"
            raw["encapsulation_version"] = self.encapsulation_version
        return raw


def _unpack(fmt: struct.Struct, data: bytes, offset: int, what: str) -> tuple[Any, ...]:
    if offset < 0 or offset + fmt.size > len(data):
        raise ProtocolError(f"{what}: needs {fmt.size} bytes at offset {offset}, reply has {len(data)}")
    return fmt.unpack_from(data, offset)


def parse_header(data: bytes) -> Header:
    """The 24-byte encapsulation header; the length must not exceed MAX_REPLY."""
    header = Header(*_unpack(HEADER, data, 0, "encapsulation header"))
    if header.length > MAX_REPLY - HEADER_LEN:
        raise ProtocolError(f"encapsulation length {header.length} exceeds the {MAX_REPLY}-byte reply cap")
    return header


def parse_encapsulation(frame: bytes, command: int, context: bytes, session: int | None = None) -> tuple[Header, bytes]:
    """Header and body of one whole reply frame, checked against what was asked.

    The length must match the bytes present, the command and sender context must echo the request's, and for
    session commands the handle must be ours (a reply meant for someone else is not our identity).
    A non-zero encapsulation status raises DeviceRefusal.
    """
    header = parse_header(frame)
    if len(frame) != HEADER_LEN + header.length:
        raise ProtocolError(f"encapsulation length {header.length} but {len(frame) - HEADER_LEN} bytes follow")
    if header.command != command:
        raise ProtocolError(f"reply command 0x{header.command:04X} to a request 0x{command:04X}")
    if header.context != context:
        raise ProtocolError("reply does not echo our sender context")
    if session is not None and header.session != session:
        raise ProtocolError(f"reply for session 0x{header.session:08X}, ours is 0x{session:08X}")
    if header.status:
        text = ENCAP_STATUS.get(header.status, "unknown status")
        raise DeviceRefusal(f"encapsulation status 0x{header.status:04X} ({text})")
    return header, frame[HEADER_LEN:]


_U16 = struct.Struct("<H")
_ITEM = struct.Struct("<HH")


def walk_cpf(data: bytes) -> list[tuple[int, bytes]]:
    """Common Packet Format: item count, then (type, length, data) per item, each walked by its own length.

    Bytes after the last item are tolerated (some devices miscount: docs/protocols.md, EtherNet/IP device
    quirks); an item running past the end is not.
    """
    (count,) = _unpack(_U16, data, 0, "CPF item count")
    items: list[tuple[int, bytes]] = []
    offset = _U16.size
    for index in range(count):
        kind, length = _unpack(_ITEM, data, offset, f"CPF item {index} header")
        offset += _ITEM.size
        if offset + length > len(data):
            left = len(data) - offset
            raise ProtocolError(f"CPF item {index} (type 0x{kind:04X}) claims {length} bytes, {left} left")
        items.append((kind, data[offset : offset + length]))
        offset += length
    return items


def _find_item(items: list[tuple[int, bytes]], kind: int) -> bytes:
    for item_kind, item in items:
        if item_kind == kind:
            return item
    raise ProtocolError(f"no CPF item of type 0x{kind:04X} in the reply")


_ATTRS = struct.Struct("<HHHBBHI")  # vendor, device type, product code, revision major, minor, status, serial


def parse_identity_attributes(data: bytes) -> tuple[CipIdentity, int]:
    """Attributes 1-7 (vendor, type, code, revision, status, serial, SHORT_STRING name) and an optional state byte.

    Returns the identity and the number of bytes read; bytes after the state (attributes 9-10) are left alone.
    """
    vendor, device_type, code, major, minor, status, serial = _unpack(_ATTRS, data, 0, "identity attributes")
    offset = _ATTRS.size
    if offset >= len(data):
        raise ProtocolError("identity attributes end before the product name")
    name_len = data[offset]
    offset += 1
    if offset + name_len > len(data):
        raise ProtocolError(f"product name claims {name_len} bytes, {len(data) - offset} left")
    name = data[offset : offset + name_len].decode("latin-1")
    offset += name_len
    state = data[offset] if offset < len(data) else None
    ident = CipIdentity(vendor, device_type, code, (major, minor), status, serial, name, state)
    return ident, offset + (state is not None)


_SOCKADDR = struct.Struct(">hH4s8s")  # sin_family, sin_port, sin_addr, sin_zero: network byte order


def parse_list_identity_item(item: bytes) -> CipIdentity:
    """CPF item 0x0C: encapsulation version (LE), sockaddr (BIG-endian), identity attributes, state."""
    (version,) = _unpack(_U16, item, 0, "identity item version")
    _family, port, addr, _zero = _unpack(_SOCKADDR, item, _U16.size, "identity item socket address")
    ident, _ = parse_identity_attributes(item[_U16.size + _SOCKADDR.size :])
    return CipIdentity(
        ident.vendor_id, ident.device_type, ident.product_code, ident.revision, ident.status, ident.serial,
        ident.product_name_raw, ident.state, (".".join(str(b) for b in addr), port), version,
    )


def parse_list_identity_reply(frame: bytes, context: bytes) -> CipIdentity:
    """A whole ListIdentity reply (UDP datagram or TCP frame): the first identity item of its CPF."""
    _, body = parse_encapsulation(frame, LIST_IDENTITY, context)
    items = walk_cpf(body)
    if not items:
        raise DeviceRefusal("ListIdentity reply lists no identity")
    return parse_list_identity_item(_find_item(items, ITEM_IDENTITY))


def parse_register_session_reply(frame: bytes, context: bytes) -> int:
    """The session handle the device assigned (non-zero)."""
    header, body = parse_encapsulation(frame, REGISTER_SESSION, context)
    if len(body) != 4:
        raise ProtocolError(f"RegisterSession reply carries {len(body)} bytes, not 4")
    if header.session == 0:
        raise ProtocolError("RegisterSession reply assigns session handle 0")
    return header.session


_CIP_REPLY = struct.Struct("<BBBB")  # reply service, reserved, general status, additional status size (words)


def parse_cip_reply(message: bytes, service: int) -> bytes:
    """Data of a Message Router reply to `service`; a non-zero general status raises DeviceRefusal."""
    reply_service, _reserved, general, ext_words = _unpack(_CIP_REPLY, message, 0, "CIP reply header")
    if reply_service != service | SERVICE_REPLY:
        raise ProtocolError(f"CIP reply service 0x{reply_service:02X} to a request 0x{service:02X}")
    offset = _CIP_REPLY.size + 2 * ext_words
    if offset > len(message):
        raise ProtocolError(f"CIP reply claims {ext_words} extended status words, has {len(message) - 4} bytes")
    if general:
        ext = message[_CIP_REPLY.size : offset].hex()
        text = CIP_STATUS.get(general, "error")
        raise DeviceRefusal(f"CIP general status 0x{general:02X} ({text})" + (f", extended {ext}" if ext else ""))
    return message[offset:]


_RR_PREFIX = struct.Struct("<IH")  # interface handle, timeout


def parse_get_attributes_all_reply(frame: bytes, session: int, context: bytes) -> CipIdentity:
    """A SendRRData reply carrying Get_Attributes_All data of the Identity object."""
    _, body = parse_encapsulation(frame, SEND_RR_DATA, context, session)
    _unpack(_RR_PREFIX, body, 0, "SendRRData interface handle and timeout")
    message = _find_item(walk_cpf(body[_RR_PREFIX.size :]), ITEM_UNCONNECTED_DATA)
    ident, _ = parse_identity_attributes(parse_cip_reply(message, GET_ATTRIBUTES_ALL))
    return ident
