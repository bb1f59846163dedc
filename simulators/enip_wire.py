"""EtherNet/IP and CIP wire encoding for the simulated device: encapsulation header, CPF items, EPATHs, replies.

Pure functions over bytes, no I/O, so that the golden vectors from captures test them directly. Everything is
little-endian except the ListIdentity socket address, which is big-endian as in a `sockaddr_in`.
Layouts follow docs/protocols.md#ethernetip (ODVA Vol 2 encapsulation, Vol 1 CIP), checked against captured replies.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

HEADER = struct.Struct("<HHII8sI")  # command, length, session handle, status, sender context, options
HEADER_LEN = HEADER.size

LIST_IDENTITY = 0x63
REGISTER_SESSION = 0x65
UNREGISTER_SESSION = 0x66
SEND_RR_DATA = 0x6F
SEND_UNIT_DATA = 0x70

STATUS_INVALID_COMMAND = 0x0001
STATUS_BAD_DATA = 0x0003
STATUS_INVALID_SESSION = 0x0064
STATUS_UNSUPPORTED_REVISION = 0x0069

ITEM_NULL_ADDRESS = 0x0000
ITEM_IDENTITY = 0x000C
ITEM_CONNECTED_DATA = 0x00B1
ITEM_UNCONNECTED_DATA = 0x00B2

CLASS_IDENTITY = 0x01
CLASS_CONNECTION_MANAGER = 0x06
SERVICE_GET_ATTRIBUTES_ALL = 0x01
SERVICE_GET_ATTRIBUTE_SINGLE = 0x0E
SERVICE_UNCONNECTED_SEND = 0x52

GS_SUCCESS = 0x00
GS_CONNECTION_FAILURE = 0x01
GS_PATH_SEGMENT_ERROR = 0x04
GS_PATH_DESTINATION_UNKNOWN = 0x05
GS_SERVICE_NOT_SUPPORTED = 0x08
GS_ATTRIBUTE_NOT_SUPPORTED = 0x14
EXT_INVALID_PORT = 0x0311  # Unconnected_Send route names a port the device does not have
EXT_INVALID_LINK = 0x0312  # ... or a slot that is not this module

# What the parsers below raise on bytes that do not decode (short buffers surface as struct.error or IndexError).
MALFORMED = (ValueError, IndexError, struct.error)


@dataclass(frozen=True)
class Header:
    command: int
    length: int
    session: int
    status: int
    context: bytes
    options: int

    @classmethod
    def parse(cls, frame: bytes) -> Header:
        return cls(*HEADER.unpack_from(frame))


def encap(command: int, body: bytes = b"", session: int = 0, status: int = 0, context: bytes = bytes(8)) -> bytes:
    return HEADER.pack(command, len(body), session, status, context, 0) + body


@dataclass(frozen=True)
class IdentityValues:
    """Identity object (class 1) instance 1 attributes 1-7, plus state (attribute 8) when the device has one."""

    vendor_id: int
    device_type: int
    product_code: int
    revision: tuple[int, int]
    status: int
    serial: int
    product_name: str
    state: int | None = None


def short_string(text: str) -> bytes:
    raw = text.encode("latin-1")
    return bytes([len(raw)]) + raw


def identity_attributes(ident: IdentityValues) -> dict[int, bytes]:
    """Attribute id -> encoded value, as Get_Attribute_Single returns each one."""
    attrs = {
        1: struct.pack("<H", ident.vendor_id),
        2: struct.pack("<H", ident.device_type),
        3: struct.pack("<H", ident.product_code),
        4: bytes(ident.revision),
        5: struct.pack("<H", ident.status),
        6: struct.pack("<I", ident.serial),
        7: short_string(ident.product_name),
    }
    if ident.state is not None:
        attrs[8] = bytes([ident.state])
    return attrs


def identity_attributes_all(ident: IdentityValues) -> bytes:
    """Get_Attributes_All data: attributes 1-7 in order, then the state byte if configured."""
    return b"".join(identity_attributes(ident).values())


def list_identity_data(ident: IdentityValues, host: str, port: int) -> bytes:
    """ListIdentity reply data: one CPF item 0x0C with version 1, the device's own sockaddr (big-endian), identity
    attributes 1-7 and the state byte."""
    sockaddr = struct.pack(">hH4s8x", socket.AF_INET, port, socket.inet_aton(host))
    attrs = identity_attributes(ident)
    # ListIdentity always ends with a state byte; 0xFF ("default") when the device has none configured.
    state = attrs.pop(8, b"\xff")
    return cpf([(ITEM_IDENTITY, struct.pack("<H", 1) + sockaddr + b"".join(attrs.values()) + state)])


def cpf(items: list[tuple[int, bytes]]) -> bytes:
    """Common Packet Format: item count, then type/length/data per item."""
    return struct.pack("<H", len(items)) + b"".join(struct.pack("<HH", t, len(d)) + d for t, d in items)


def parse_cpf(data: bytes) -> list[tuple[int, bytes]]:
    """Items of a CPF block; ValueError if a length runs past the data."""
    (count,) = struct.unpack_from("<H", data)
    items, offset = [], 2
    for _ in range(count):
        kind, length = struct.unpack_from("<HH", data, offset)
        offset += 4
        if offset + length > len(data):
            raise ValueError("CPF item runs past the end of the data")
        items.append((kind, data[offset: offset + length]))
        offset += length
    return items


def rr_data(cip_reply: bytes) -> bytes:
    """SendRRData reply body: interface handle 0, timeout 0, null address item, unconnected data item."""
    return struct.pack("<IH", 0, 0) + cpf([(ITEM_NULL_ADDRESS, b""), (ITEM_UNCONNECTED_DATA, cip_reply)])


@dataclass(frozen=True)
class CipRequest:
    """A Message Router request with its logical path decoded (None where the path has no such segment)."""

    service: int
    class_id: int | None
    instance: int | None
    attribute: int | None
    data: bytes


def parse_cip(message: bytes) -> CipRequest:
    """Service, logical EPATH (8- and 16-bit class/instance/attribute segments) and request data.

    ValueError for a truncated message or a segment type this device does not understand.
    """
    service, words = message[0], message[1]
    end = 2 + 2 * words
    if len(message) < end:
        raise ValueError("path runs past the end of the message")
    found: dict[int, int] = {}
    offset = 2
    while offset < end:
        segment = message[offset]
        kind, size = segment & 0xFC, segment & 0x03
        if kind not in (0x20, 0x24, 0x30) or size > 1:
            raise ValueError(f"unsupported path segment 0x{segment:02X}")
        if size == 0:
            found[kind], offset = message[offset + 1], offset + 2
        else:  # 16-bit form: segment type, pad byte, UINT
            found[kind], offset = struct.unpack_from("<H", message, offset + 2)[0], offset + 4
    return CipRequest(service, found.get(0x20), found.get(0x24), found.get(0x30), message[end:])


@dataclass(frozen=True)
class Routed:
    """An Unconnected_Send unwrapped: the embedded request and the first route hop (port segment byte, link)."""

    request: CipRequest
    port: int
    link: int


def unwrap_unconnected_send(outer: CipRequest) -> Routed:
    """Embedded request of Unconnected_Send (priority, ticks, size, message, pad, route size, reserved, route)."""
    data = outer.data
    (size,) = struct.unpack_from("<H", data, 2)
    message = data[4: 4 + size]
    route_at = 4 + size + (size & 1)
    if len(message) != size or len(data) < route_at + 4:
        raise ValueError("Unconnected_Send shorter than its sizes say")
    port, link = data[route_at + 2], data[route_at + 3]
    if port & 0xE0:
        raise ValueError(f"route segment 0x{port:02X} is not a port segment")
    return Routed(parse_cip(message), port, link)


def cip_reply(service: int, general_status: int = GS_SUCCESS, data: bytes = b"", extended: tuple[int, ...] = ()
              ) -> bytes:
    """Message Router reply: reply service (request | 0x80), reserved, general status, extended status words, data."""
    ext = b"".join(struct.pack("<H", e) for e in extended)
    return bytes([service | 0x80, 0, general_status, len(extended)]) + ext + data
