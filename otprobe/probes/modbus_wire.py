"""Modbus/TCP reply parsing for the identity probe: MBAP frames, FC 0x2B/0x0E pages, FC 0x11, exceptions.

Pure functions over untrusted bytes. Each raises only `ProtocolError` on bad input, and reads only what the
bytes carry: an object list is bounded by the frame, not by its count field (the Modbus spec's own
multi-transaction example declares 3 objects and carries 2). Layouts: docs/protocols.md#modbustcp.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from otprobe.errors import ProtocolError
from otprobe.model import Identity
from otprobe.probes import asset_type

MBAP_LEN = 7  # TID u16 | PID u16 = 0 | LEN u16 = 1 + len(PDU) | UNIT u8
MAX_PDU = 253
FC_DEVICE_ID = 0x2B
MEI_DEVICE_ID = 0x0E
FC_SERVER_ID = 0x11
EXCEPTION_BIT = 0x80
MORE_FOLLOWS = 0xFF
NO_MORE = 0x00

# Read Device ID codes (the probe never asks for 03, extended: private objects are not identity)
READ_BASIC, READ_REGULAR, READ_EXTENDED, READ_OBJECT = 1, 2, 3, 4

EXCEPTION_NAMES = {
    0x01: "illegal function",
    0x02: "illegal data address",
    0x03: "illegal data value",
    0x04: "server device failure",
    0x05: "acknowledge",
    0x06: "server device busy",
    0x08: "memory parity error",
    0x0A: "gateway path unavailable",
    0x0B: "gateway target device failed to respond",
}

_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{3,}")


@dataclass(frozen=True)
class Adu:
    """One MBAP frame: transaction id, unit id and the PDU it carries."""

    tid: int
    unit: int
    pdu: bytes


@dataclass(frozen=True)
class DeviceIdPage:
    """One FC 0x2B/0x0E reply. `objects` keeps the wire order; `declared_count` is what the header claimed."""

    read_code: int
    conformity: int
    more_follows: bool
    next_object_id: int
    declared_count: int
    objects: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class ServerIdReply:
    """One FC 0x11 reply: the device-specific bytes after the byte count (server id, run indicator, data)."""

    payload: bytes
    declared_count: int


@dataclass(frozen=True)
class ExceptionReply:
    function: int  # the request's function code (without the 0x80 bit)
    code: int

    @property
    def text(self) -> str:
        name = EXCEPTION_NAMES.get(self.code, "unknown exception")
        return f"exception 0x{self.code:02X} ({name}) to function 0x{self.function:02X}"


Reply = DeviceIdPage | ServerIdReply | ExceptionReply


def parse_adu(buffer: bytes) -> Adu | None:
    """The frame at the start of `buffer`, None while it is incomplete.

    With one request outstanding the buffer must hold exactly one reply: bytes beyond it are refused,
    as are a non-zero protocol id and a length outside 2..254 (checked from the first 7 bytes, so an
    oversized claim is rejected before its body arrives).
    """
    if len(buffer) < MBAP_LEN:
        return None
    tid, pid, length, unit = struct.unpack_from(">HHHB", buffer)
    if pid != 0:
        raise ProtocolError(f"MBAP protocol id {pid}, expected 0")
    if not 2 <= length <= MAX_PDU + 1:
        raise ProtocolError(f"MBAP length {length} outside 2..{MAX_PDU + 1}")
    end = 6 + length
    if len(buffer) < end:
        return None
    if len(buffer) > end:
        raise ProtocolError(f"{len(buffer) - end} unexpected bytes after a {end}-byte reply")
    return Adu(tid, unit, buffer[MBAP_LEN:end])


def parse_device_id(pdu: bytes) -> DeviceIdPage:
    """`2B 0E <code> <conformity> <more 00|FF> <next id> <count> {<id> <len> <value>}...`"""
    if len(pdu) < 7:
        raise ProtocolError(f"FC43 reply of {len(pdu)} bytes, shorter than its 7-byte header")
    function, mei, read_code, conformity, more, next_id, count = pdu[:7]
    if function != FC_DEVICE_ID or mei != MEI_DEVICE_ID:
        raise ProtocolError(f"not a Read Device Identification reply: function 0x{function:02X} MEI 0x{mei:02X}")
    if more not in (NO_MORE, MORE_FOLLOWS):
        raise ProtocolError(f"More Follows byte 0x{more:02X} is neither 0x00 nor 0xFF")
    objects: list[tuple[int, bytes]] = []
    offset = 7
    while offset < len(pdu):
        if offset + 2 > len(pdu):
            raise ProtocolError(f"object header cut off at byte {offset}")
        object_id, length = pdu[offset], pdu[offset + 1]
        offset += 2
        if offset + length > len(pdu):
            raise ProtocolError(
                f"object 0x{object_id:02X} claims {length} bytes, {len(pdu) - offset} left in the reply"
            )
        objects.append((object_id, pdu[offset : offset + length]))
        offset += length
    return DeviceIdPage(read_code, conformity, more == MORE_FOLLOWS, next_id, count, tuple(objects))


def parse_server_id(pdu: bytes) -> ServerIdReply:
    """`11 <byte count> <server id> <run 00|FF> <data>`; a short body is bounded by the bytes received."""
    if len(pdu) < 3:
        raise ProtocolError(f"FC17 reply of {len(pdu)} bytes carries no server id")
    if pdu[0] != FC_SERVER_ID:
        raise ProtocolError(f"not a Report Server ID reply: function 0x{pdu[0]:02X}")
    count = pdu[1]
    if count == 0:
        raise ProtocolError("FC17 reply declares 0 bytes")
    return ServerIdReply(pdu[2 : 2 + count], count)


def parse_exception(pdu: bytes) -> ExceptionReply:
    """`<function | 0x80> <exception code>`"""
    if len(pdu) != 2 or not pdu[0] & EXCEPTION_BIT:
        raise ProtocolError(f"not an exception reply: {pdu[:8].hex()} ({len(pdu)} bytes)")
    return ExceptionReply(pdu[0] & 0x7F, pdu[1])


def parse_reply(pdu: bytes, function: int) -> Reply:
    """The reply to a request with `function`: its own layout, or that function's exception."""
    if not pdu:
        raise ProtocolError("empty PDU")
    if pdu[0] == function | EXCEPTION_BIT:
        return parse_exception(pdu)
    if pdu[0] != function:
        raise ProtocolError(f"reply function 0x{pdu[0]:02X} to a 0x{function:02X} request")
    if function == FC_DEVICE_ID:
        return parse_device_id(pdu)
    if function == FC_SERVER_ID:
        return parse_server_id(pdu)
    raise ProtocolError(f"no parser for function 0x{function:02X}")


def split_server_id(payload: bytes) -> tuple[bytes, int | None, bytes]:
    """(server id, run indicator, additional data), best effort: the server id's length is device specific,
    so the first 0x00/0xFF byte after the first byte is taken as the run indicator (`FA FF "PM710..."`)."""
    for index in range(1, len(payload)):
        if payload[index] in (NO_MORE, MORE_FOLLOWS):
            return payload[:index], payload[index], payload[index + 1 :]
    return payload, None, b""


def longest_text(data: bytes) -> str | None:
    """The longest run of 3 or more printable ASCII characters, stripped; None when there is none."""
    runs = [run.strip() for run in _PRINTABLE_RUN.findall(data)]
    runs = [run for run in runs if run]
    return max(runs, key=len).decode("ascii") if runs else None


def text(value: bytes) -> str:
    """Device text as received (latin-1 never fails, and maps each byte to one character)."""
    return value.decode("latin-1")


# -- identity mapping ---------------------------------------------------------------------------

OBJECT_NAMES = {
    0x00: "vendor_name",
    0x01: "product_code",
    0x02: "revision",
    0x03: "vendor_url",
    0x04: "product_name",
    0x05: "model_name",
    0x06: "user_application_name",
}


def _clean(value: str | None) -> str | None:
    stripped = (value or "").strip(" \t\r\n\x00")
    return stripped or None


def identity_from_objects(objects: dict[int, bytes], conformity: int | None, unit: int, access: str) -> Identity:
    """Identity from FC43 objects (id -> value bytes); raw keeps each object exactly as received."""
    values = {oid: text(value) for oid, value in objects.items()}
    vendor, code, revision, name, model = (_clean(values.get(oid)) for oid in (0x00, 0x01, 0x02, 0x04, 0x05))
    raw: dict[str, Any] = {
        "unit_id": unit,
        "access": access,
        "conformity": None if conformity is None else f"0x{conformity:02X}",
        "objects": {OBJECT_NAMES.get(oid, f"0x{oid:02X}"): value for oid, value in sorted(values.items())},
    }
    return Identity(
        vendor=vendor, product_code=code, firmware=revision, product_name=name, model=model or name or code,
        asset_type=asset_type.modbus(vendor, model, name, code), raw=raw,
    )


def identity_from_server_id(reply: ServerIdReply, unit: int) -> Identity:
    """Identity from an FC17 reply: raw bytes in hex, a best-effort model from its printable text."""
    server_id, run, data = split_server_id(reply.payload)
    raw: dict[str, Any] = {
        "unit_id": unit,
        "access": "fc17",
        "fc17_payload": reply.payload.hex(),
        "server_id": server_id.hex(),
        "run_indicator": None if run is None else ("on" if run else "off"),
        "additional_data": data.hex(),
    }
    if reply.declared_count != len(reply.payload):
        raw["fc17_declared_count"] = reply.declared_count
    model = longest_text(reply.payload)
    # FC17's content is vendor-defined: only a model text that names its product line gives a type
    return Identity(model=model, asset_type=asset_type.modbus(None, model), raw=raw)
